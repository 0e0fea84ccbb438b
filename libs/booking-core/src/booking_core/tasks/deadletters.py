"""Dead letters: recorded in Postgres, listed, requeued and discarded from there.

Dramatiq keeps a dead letter in its Redis `.XQ` set, which expires and dies
with Redis' data; a task shown `dead` with no letter anywhere could never be
sent again (issue 10, defect 1).  So `record` writes each dead message (actor,
args, options with the trace context, final error, attempts) to
`dead_letters` in the transaction that marks its task `dead`, and every
operation below reads that record.  Redis' `.XQ` entry is a cache: removed
when present, never needed.

Requeue and discard are human decisions, so each is audited with who did it.
Lock order (docs/lock-order.md): a letter's row before its task's row, and a
batch's task rows all locked, in (booking, task) order, before the first is
written: the task rows' UPDATE trigger takes each booking's event numbering
lock, which must come after every task row lock of the transaction.
A requeue writes the message to the outbox (fresh retries, trace kept), the
task back to `pending`, the record as resolved and the audit event in one
transaction; the `.XQ` entry is removed after the commit, best effort.  A crash
in between leaves a stale cache entry, never a lost or doubled record.

Retention: an unresolved record never expires.  A resolved one (requeued or
discarded) is kept `retention_days` and then purged by the relay.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import dramatiq
import psycopg
import redis
from psycopg.types.json import Jsonb

from booking_core.messaging import outbox
from booking_core.messaging.contracts import QUEUES, TASKS
from booking_core.tasks.republish import fresh_options
from booking_scaling.layout import Layout

log = logging.getLogger(__name__)

#: Options not worth keeping in the record (the traceback is summed up in `error`).
_UNRECORDED = ("traceback",)
#: Bulk actions work in transactions of this many letters.
BATCH_SIZE = 100


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as recorded in Postgres."""

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

    @property
    def task(self) -> str | None:
        """The booking task this message does, if any."""
        task = self.kwargs.get("task")
        return task if task in TASKS else None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "queue": self.queue, "actor": self.actor,
            "message_id": self.message_id, "dead_since": self.dead_since.isoformat(),
            "retries": self.retries, "last_error": self.last_error,
            "booking_id": self.booking_id,
        }


class DeadLetterError(LookupError):
    """No open dead letter with that id (in that queue)."""


#: The time filter's one rule, for the API, the console and the CLI alike: `dead_before` must be
#: later than `dead_since`.  An empty or inverted range selects nothing by construction, so it is
#: a mistake to report (naming `dead_before`), not "0 letters" to a bulk action that then did nothing.
RANGE_RULE = "must be later than dead_since"


def empty_range(dead_since: datetime | None, dead_before: datetime | None) -> bool:
    """True when both ends are given and `dead_before` is not later than `dead_since`."""
    return dead_since is not None and dead_before is not None and dead_before <= dead_since


@dataclass(frozen=True)
class Filter:
    """Which open dead letters to list or act on; every field narrows, None means any.

    `error` is matched as a case-insensitive substring of the final error (its
    LIKE wildcards are escaped: it is client text).
    """

    queue: str | None = None
    tenant_id: str | None = None
    error: str | None = None
    dead_since: datetime | None = None
    dead_before: datetime | None = None
    booking_id: str | None = None

    def __post_init__(self) -> None:
        if self.queue is not None and self.queue not in QUEUES:
            raise ValueError(f"queue must be one of {', '.join(QUEUES)}")
        if empty_range(self.dead_since, self.dead_before):
            raise ValueError(f"dead_before {RANGE_RULE}")


def like_pattern(text: str) -> str:
    """`text` as an ILIKE pattern matching it anywhere, its own `%`, `_` and `\\` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where(f: Filter) -> tuple[str, list]:
    """The SQL condition (with placeholders) and parameters that select open letters matching `f`."""
    clauses, params = ["resolved_at IS NULL"], []
    for column, op, value in (("queue", "=", f.queue), ("tenant_id", "=", f.tenant_id),
                              ("booking_id", "=", f.booking_id), ("dead_at", ">=", f.dead_since),
                              ("dead_at", "<", f.dead_before)):
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if f.error:
        clauses.append("error ILIKE %s ESCAPE '\\'")
        params.append(like_pattern(f.error))
    return " AND ".join(clauses), params


_COLUMNS = ("id::text, queue, actor, message_id::text, dead_at, attempts, error, booking_id::text,"
            " tenant_id::text, kwargs, options")


def _letter(row: dict) -> DeadLetter:
    return DeadLetter(
        id=row["id"], queue=row["queue"], actor=row["actor"], message_id=row["message_id"],
        dead_since=row["dead_at"].astimezone(UTC), retries=max(0, row["attempts"] - 1), last_error=row["error"],
        booking_id=row["booking_id"], tenant_id=row["tenant_id"], kwargs=row["kwargs"], options=row["options"],
    )


def _uuid_or_none(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value is not None else None
    except ValueError:
        return None


def record(conn: psycopg.Connection, message: dramatiq.Message, *, error: str | None,
           attempts: int | None = None) -> None:
    """Record `message` as dead, in the caller's transaction (the one that marks its task dead).

    `attempts` defaults to Dramatiq's retry count plus one.  A message already
    recorded and still open is updated rather than recorded twice.
    """
    kwargs = dict(message.kwargs or {})
    options = {k: v for k, v in message.options.items() if k not in _UNRECORDED}
    if attempts is None:
        attempts = int(message.options.get("retries", 0)) + 1
    task = kwargs.get("task") if kwargs.get("task") in TASKS else None
    conn.execute(
        "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, args, kwargs,"
        " options, error, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (message_id) WHERE resolved_at IS NULL DO UPDATE SET options = EXCLUDED.options,"
        " error = EXCLUDED.error, attempts = EXCLUDED.attempts, dead_at = clock_timestamp()",
        (message.message_id, message.queue_name, message.actor_name, task,
         _uuid_or_none(kwargs.get("tenant_id")), _uuid_or_none(kwargs.get("booking_id")),
         Jsonb(list(message.args or ())), Jsonb(kwargs), Jsonb(options), error, attempts),
    )


def list_dead(conn: psycopg.Connection, f: Filter = Filter(), *, limit: int | None = None,
              offset: int = 0, after: tuple[datetime, str] | None = None) -> list[DeadLetter]:
    """Open dead letters matching `f`, oldest first.

    `after` (the dead_since and id of the last letter shown) pages by keyset,
    as the API does; `offset` skips that many, as the console's numbered pages do.
    """
    cond, params = where(f)
    if after is not None:
        cond += " AND (dead_at, id) > (%s, %s::uuid)"
        params += [after[0], after[1]]
    sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE {cond} ORDER BY dead_at, id"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    if offset:
        sql += " OFFSET %s"
        params.append(offset)
    return [_letter(r) for r in conn.execute(sql, params).fetchall()]


def count(conn: psycopg.Connection, f: Filter = Filter()) -> int:
    """How many open dead letters match `f` (a bulk action's dry run)."""
    cond, params = where(f)
    return conn.execute(f"SELECT count(*) AS n FROM dead_letters WHERE {cond}", params).fetchone()["n"]


def open_by_queue(conn: psycopg.Connection) -> dict[str, int]:
    """Open dead letters per queue of the platform (0 where none): the metric and its alert."""
    rows = conn.execute("SELECT queue, count(*) AS n FROM dead_letters WHERE resolved_at IS NULL"
                        " GROUP BY queue").fetchall()
    found = {r["queue"]: r["n"] for r in rows}
    return {q: int(found.get(q, 0)) for q in QUEUES}


def find(conn: psycopg.Connection, dead_id: str, queue: str | None = None) -> DeadLetter:
    """The open dead letter `dead_id` (in `queue`, when given)."""
    try:
        uuid.UUID(dead_id)
    except ValueError:
        raise DeadLetterError(f"no dead letter {dead_id!r}") from None
    cond, params = where(Filter(queue=queue))
    row = conn.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = %s AND {cond}",
                       [dead_id, *params]).fetchone()
    if row is None:
        raise DeadLetterError(f"no dead letter {dead_id!r}" + (f" in queue {queue!r}" if queue else ""))
    return _letter(row)


def find_for_task(conn: psycopg.Connection, booking_id: str, task: str, *, lock: bool = False) -> DeadLetter | None:
    """The newest open dead letter of a booking's task, if one was recorded; with `lock`, locked until commit."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE booking_id = %s AND task = %s"
                       " AND resolved_at IS NULL ORDER BY dead_at DESC, id DESC LIMIT 1"
                       + (" FOR UPDATE" if lock else ""), (booking_id, task)).fetchone()
    return _letter(row) if row else None


def audit_event(*, kind: str, tenant_id: str | None, booking_id: str | None, actor: str,
                details: dict) -> outbox.OutboxMessage | None:
    """The audit message for a human's action on a dead letter or task (None without a tenant)."""
    if not tenant_id:
        return None
    return outbox.action_event(kind, tenant_id=tenant_id, booking_id=booking_id, actor=actor, details=details)


def _audit(letter: DeadLetter, kind: str, actor: str) -> outbox.OutboxMessage | None:
    return audit_event(kind=kind, tenant_id=letter.tenant_id, booking_id=letter.booking_id, actor=actor,
                       details={"queue": letter.queue, "dead_letter_id": letter.id,
                                "message_id": letter.message_id, "actor_name": letter.actor})


def _resolve(conn: psycopg.Connection, letter: DeadLetter, resolution: str, actor: str) -> None:
    """Mark the record resolved; DeadLetterError when someone else resolved it first."""
    done = conn.execute(
        "UPDATE dead_letters SET resolved_at = clock_timestamp(), resolution = %s, resolved_by = %s"
        " WHERE id = %s AND resolved_at IS NULL RETURNING id", (resolution, actor[:500], letter.id)).fetchone()
    if done is None:
        raise DeadLetterError(f"dead letter {letter.id} was already resolved")


def forget_in_redis(client: redis.Redis | None, namespace: str, queue: str, ids: list[str]) -> None:
    """Remove these messages from the `.XQ` cache, if Redis answers; the record is what counts."""
    ids = [i for i in ids if i]
    if client is None or not ids:
        return
    layout = Layout(namespace)
    zkey = layout.dead(queue)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.zrem(zkey, *ids)
        pipe.hdel(layout.dead_messages(queue), *ids)
        pipe.execute()
    except redis.RedisError as e:
        log.warning("could not remove dead letter(s) %s from %s (%s); the entries are only a cache",
                    ", ".join(ids), zkey, e)


def redis_ids(letter: DeadLetter) -> list[str]:
    return [letter.options.get("redis_message_id") or letter.message_id]


def requeue_in(conn: psycopg.Connection, letter: DeadLetter, actor: str) -> None:
    _resolve(conn, letter, "requeued", actor)
    messages = [outbox.OutboxMessage(letter.queue, letter.actor, letter.kwargs, fresh_options(letter.options),
                                     message_id=letter.message_id)]
    if event := _audit(letter, "deadletter.requeued", actor):
        messages.append(event)
    outbox.add(conn, messages)
    if letter.task and letter.booking_id:
        conn.execute(
            "UPDATE booking_tasks SET state = 'pending', last_error = NULL, updated_at = clock_timestamp()"
            " WHERE booking_id = %s AND task = %s AND state = 'dead'", (letter.booking_id, letter.task))


def discard_in(conn: psycopg.Connection, letter: DeadLetter, actor: str) -> None:
    _resolve(conn, letter, "discarded", actor)
    if event := _audit(letter, "deadletter.discarded", actor):
        outbox.add(conn, [event])
    if letter.task and letter.booking_id:
        conn.execute(
            "UPDATE booking_tasks SET last_error = %s, updated_at = clock_timestamp()"
            " WHERE booking_id = %s AND task = %s AND state = 'dead'",
            (f"discarded by {actor}"[:500], letter.booking_id, letter.task))


_ACTIONS = {"requeue": requeue_in, "discard": discard_in}


def requeue(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, letter: DeadLetter,
            *, actor: str) -> None:
    """Send `letter` back through the outbox with fresh retries, audited as done by `actor`."""
    with conn.transaction():
        requeue_in(conn, letter, actor)
    forget_in_redis(client, namespace, letter.queue, redis_ids(letter))


def discard(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, letter: DeadLetter,
            *, actor: str) -> None:
    """Close `letter` for good, audited as done by `actor`; its task stays `dead`."""
    with conn.transaction():
        discard_in(conn, letter, actor)
    forget_in_redis(client, namespace, letter.queue, redis_ids(letter))


def apply_all(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, f: Filter, action: str,
              *, actor: str, batch_size: int = BATCH_SIZE,
              on_batch: Callable[[psycopg.Connection, list[DeadLetter]], None] | None = None) -> Iterator[DeadLetter]:
    """Requeue or discard every open letter matching `f`, `batch_size` per transaction; yield each one done.

    Rows are claimed with SKIP LOCKED, so two operators running the same bulk
    action split the letters instead of acting twice on one.  `on_batch` runs
    last in each batch's transaction (a bulk job records its progress there, so
    the count it shows is exactly what committed); if it raises, that batch is
    rolled back and the error propagates.
    """
    act = _ACTIONS[action]
    cond, params = where(f)
    while True:
        with conn.transaction():
            rows = conn.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE {cond} ORDER BY dead_at, id"
                                " LIMIT %s FOR UPDATE SKIP LOCKED", [*params, batch_size]).fetchall()
            letters = sorted((_letter(r) for r in rows), key=lambda d: (d.booking_id or "", d.task or "", d.id))
            _lock_tasks(conn, letters)
            for letter in letters:
                act(conn, letter, actor)
            if on_batch is not None and letters:
                on_batch(conn, letters)
        for letter in letters:
            forget_in_redis(client, namespace, letter.queue, redis_ids(letter))
            yield letter
        if len(letters) < batch_size:
            return


def _lock_tasks(conn: psycopg.Connection, letters: list[DeadLetter]) -> None:
    """Lock the task rows of `letters` in (booking_id, task) order, before any of them is written."""
    keys = [(d.booking_id, d.task) for d in letters if d.booking_id and d.task]
    if keys:
        conn.execute("SELECT 1 FROM booking_tasks WHERE (booking_id, task) IN"
                     " (SELECT * FROM unnest(%s::uuid[], %s::text[])) ORDER BY booking_id, task FOR NO KEY UPDATE",
                     ([k[0] for k in keys], [k[1] for k in keys]))


def purge_resolved(conn: psycopg.Connection, retention_days: int) -> int:
    """Delete records resolved more than `retention_days` ago; open records are never purged."""
    cur = conn.execute("DELETE FROM dead_letters WHERE resolved_at < clock_timestamp() - make_interval(days => %s)",
                       (retention_days,))
    return cur.rowcount


def to_json(letters: list[DeadLetter]) -> str:
    return json.dumps([d.as_dict() | {"tenant_id": d.tenant_id} for d in letters], indent=2)
