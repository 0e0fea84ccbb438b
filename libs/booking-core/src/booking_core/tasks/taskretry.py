"""Retry one booking task by name: `tasks retry BOOKING TASK` and the ops endpoint.

A dead task must stay recoverable even when both copies of its message are
gone (Redis lost the `.XQ` entry, and the dead-letter record is missing, e.g.
the task died before records existed).  So a retry uses the dead-letter
record when there is one (resolving it), and otherwise rebuilds the message
from the booking (`republish.task_message`).  Either way the message goes
through the outbox with fresh retries and its trace kept, the task goes back
to `pending`, and the action is audited with who did it, all in one
transaction.  Lock order (docs/lock-order.md): the dead letter first, then the
task row; a bulk requeue holding the letter and waiting for the row would
otherwise deadlock with this retry holding the row and waiting for the letter.
"""

from __future__ import annotations

import psycopg
import redis

from booking_core.messaging import outbox
from booking_core.tasks import deadletters
from booking_core.tasks.republish import task_message


class TaskNotDead(RuntimeError):
    """Only a dead task can be retried (a live one is still being worked on)."""

    def __init__(self, state: str):
        super().__init__(f"the task is {state}, not dead; only a dead task can be retried")
        self.state = state


def retry_task(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, booking_id: str, task: str,
               *, actor: str, tenant_id: str | None = None) -> str:
    """Re-publish dead `task` of `booking_id` (of `tenant_id`, when given); return the message id sent.

    Raises LookupError when there is no such booking task, TaskNotDead when it is not dead.
    """
    letter = None
    with conn.transaction():
        letter = deadletters.find_for_task(conn, booking_id, task, lock=True)
        row = conn.execute(
            "SELECT t.state, b.tenant_id::text AS tenant_id FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
            " WHERE t.booking_id = %s AND t.task = %s AND (%s::uuid IS NULL OR b.tenant_id = %s::uuid)"
            " FOR UPDATE OF t", (booking_id, task, tenant_id, tenant_id)).fetchone()
        if row is None:
            raise LookupError(f"booking {booking_id} has no task {task!r}")
        if row["state"] != "dead":
            raise TaskNotDead(row["state"])
        if letter is not None:
            deadletters.requeue_in(conn, letter, actor)
            sent = letter.message_id
        else:
            message = task_message(conn, booking_id, task, actor=actor)
            event = deadletters.audit_event(
                kind="deadletter.requeued", tenant_id=row["tenant_id"], booking_id=booking_id, actor=actor,
                details={"queue": message.queue, "task": task, "message_id": message.message_id,
                         "actor_name": message.actor, "dead_letter_id": None})
            outbox.add(conn, [message, *([event] if event else [])])
            conn.execute("UPDATE booking_tasks SET state = 'pending', last_error = NULL,"
                         " updated_at = clock_timestamp() WHERE booking_id = %s AND task = %s",
                         (booking_id, task))
            sent = message.message_id
    if letter is not None:
        deadletters.forget_in_redis(client, namespace, letter.queue, deadletters.redis_ids(letter))
    return sent
