"""Dead letters: list, requeue and discard messages in Dramatiq's `.XQ` sets.

Requeue and discard are human decisions, so each is audited.  A requeue is
written to the outbox (the message itself, with its retries reset and its
trace context kept) together with the audit event, in one transaction; only
then is the dead letter removed from Redis.  A crash in between leaves the
letter visible and the requeue already on its way: duplicated, never lost.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import redis
from dramatiq import Message

from booking_core import outbox
from booking_core.contracts import AUDIT, QUEUES, audit_payload

#: Options Dramatiq adds while processing; a requeued message starts afresh.
_RUN_OPTIONS = ("retries", "redis_message_id", "eta", "traceback", "dead_letter_reason")


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as shown to a human."""

    id: str
    queue: str
    actor: str
    message_id: str
    dead_since: datetime
    retries: int
    last_error: str | None
    booking_id: str | None
    tenant_id: str | None
    kwargs: dict
    options: dict

    def as_dict(self) -> dict:
        return {
            "id": self.id, "queue": self.queue, "actor": self.actor,
            "message_id": self.message_id, "dead_since": self.dead_since.isoformat(),
            "retries": self.retries, "last_error": self.last_error,
            "booking_id": self.booking_id,
        }


class DeadLetterError(LookupError):
    """No dead letter with that id in that queue."""


def _keys(namespace: str, queue: str) -> tuple[str, str]:
    return f"{namespace}:{queue}.XQ", f"{namespace}:{queue}.XQ.msgs"


def list_dead(client: redis.Redis, namespace: str, queue: str | None = None) -> list[DeadLetter]:
    """Dead letters of one queue or of all, oldest first."""
    found: list[DeadLetter] = []
    for q in [queue] if queue else QUEUES:
        zkey, hkey = _keys(namespace, q)
        entries = client.zrange(zkey, 0, -1, withscores=True)
        if not entries:
            continue
        bodies = client.hmget(hkey, [e[0] for e in entries])
        for (rid, score), body in zip(entries, bodies, strict=True):
            if body is None:
                continue
            found.append(_decode(q, rid.decode(), score, body))
    return found


def _decode(queue: str, rid: str, score: float, body: bytes) -> DeadLetter:
    msg = Message.decode(body)
    options = dict(msg.options)
    tb = options.get("traceback") or ""
    last = tb.strip().splitlines()[-1] if tb.strip() else None
    kwargs = dict(msg.kwargs or {})
    return DeadLetter(
        id=rid, queue=queue, actor=msg.actor_name, message_id=msg.message_id,
        # Dramatiq scores a dead letter with its time of death in milliseconds.
        dead_since=datetime.fromtimestamp(score / 1000, tz=UTC),
        retries=int(options.get("retries", 0)), last_error=last,
        booking_id=kwargs.get("booking_id"), tenant_id=kwargs.get("tenant_id"),
        kwargs=kwargs, options=options,
    )


def find(client: redis.Redis, namespace: str, dead_id: str, queue: str | None = None) -> DeadLetter:
    """The dead letter `dead_id`, searched in `queue` or every queue."""
    for q in [queue] if queue else QUEUES:
        zkey, hkey = _keys(namespace, q)
        body = client.hget(hkey, dead_id)
        score = client.zscore(zkey, dead_id)
        if body is not None and score is not None:
            return _decode(q, dead_id, score, body)
    raise DeadLetterError(f"no dead letter {dead_id!r}" + (f" in queue {queue!r}" if queue else ""))


def _audit(letter: DeadLetter, kind: str, actor: str) -> outbox.OutboxMessage | None:
    if not letter.tenant_id:
        return None
    event_id = str(uuid.uuid4())
    payload = audit_payload(
        event_id=event_id, kind=kind, tenant_id=letter.tenant_id, booking_id=letter.booking_id,
        actor=actor, occurred_at=datetime.now(UTC).isoformat(),
        details={"queue": letter.queue, "dead_letter_id": letter.id,
                 "message_id": letter.message_id, "actor_name": letter.actor},
    )
    return outbox.OutboxMessage(AUDIT.queue, AUDIT.actor, payload, message_id=event_id)


def _remove(client: redis.Redis, namespace: str, letter: DeadLetter) -> None:
    zkey, hkey = _keys(namespace, letter.queue)
    pipe = client.pipeline(transaction=True)
    pipe.zrem(zkey, letter.id)
    pipe.hdel(hkey, letter.id)
    pipe.execute()


def requeue(conn: psycopg.Connection, client: redis.Redis, namespace: str, letter: DeadLetter,
            *, actor: str) -> None:
    """Send `letter` back to its queue with fresh retries, audited as done by `actor`."""
    options = {k: v for k, v in letter.options.items() if k not in _RUN_OPTIONS}
    messages = [outbox.OutboxMessage(letter.queue, letter.actor, letter.kwargs, options,
                                     message_id=letter.message_id)]
    event = _audit(letter, "deadletter.requeued", actor)
    if event:
        messages.append(event)
    with conn.transaction():
        outbox.add(conn, messages)
        task = letter.kwargs.get("task")
        if task and letter.booking_id:
            conn.execute(
                "UPDATE booking_tasks SET state = 'pending', updated_at = clock_timestamp()"
                " WHERE booking_id = %s AND task = %s AND state = 'dead'",
                (letter.booking_id, task),
            )
    _remove(client, namespace, letter)


def discard(conn: psycopg.Connection, client: redis.Redis, namespace: str, letter: DeadLetter,
            *, actor: str) -> None:
    """Drop `letter` for good, audited as done by `actor`; its task stays `dead`."""
    event = _audit(letter, "deadletter.discarded", actor)
    with conn.transaction():
        if event:
            outbox.add(conn, [event])
        task = letter.kwargs.get("task")
        if task and letter.booking_id:
            conn.execute(
                "UPDATE booking_tasks SET last_error = %s, updated_at = clock_timestamp()"
                " WHERE booking_id = %s AND task = %s AND state = 'dead'",
                (f"discarded by {actor}"[:500], letter.booking_id, task),
            )
    _remove(client, namespace, letter)


def to_json(letters: list[DeadLetter]) -> str:
    return json.dumps([d.as_dict() for d in letters], indent=2)
