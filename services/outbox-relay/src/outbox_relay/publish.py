"""One outbox batch in FIFO order: claim, publish to Dramatiq (one Redis round trip), delete, in one transaction.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays share the
work without publishing a row twice at the same time; a crash after publish
and before delete republishes it with the same message id, which consumers
treat as a duplicate.  While Redis is down the enqueue raises, the transaction
rolls back and the rows wait.  Rows whose `available_at` is still ahead (a
retry waiting out its backoff) are left for later.

This is the `BOOKING_RELAY_ORDER=fifo` ordering: every row at once, oldest
first, whoever's it is.  The default, fair ordering is `fair.py`; both send
through `send` below.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import dramatiq
import psycopg

from outbox_relay.metrics import BATCH_SECONDS, PUBLISHED
from outbox_relay.pipelined import pipelined

#: The columns `send` needs, for every claim query.
COLUMNS = ("id, message_id::text, queue, actor, payload, options,"
           " (extract(epoch FROM created_at) * 1000)::bigint AS created_ms")


def send(conn: psycopg.Connection, broker: dramatiq.Broker, rows: Sequence[dict]) -> None:
    """Enqueue `rows` in this order (one Redis round trip) and delete them, in the caller's transaction.

    Each message is stamped with its row's creation time, so the queue's oldest-message
    age (`booking_scaling.depth`) counts the time it waited in the outbox.
    """
    with pipelined(broker):
        for r in rows:
            broker.enqueue(dramatiq.Message(
                queue_name=r["queue"], actor_name=r["actor"], args=(), kwargs=r["payload"],
                options=r["options"], message_id=r["message_id"], message_timestamp=r["created_ms"],
            ))
    if rows:
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))


def counted(rows: Sequence[dict], start: float) -> int:
    """Count `rows` in the metrics once their transaction committed; return how many."""
    for r in rows:
        PUBLISHED.labels(r["queue"]).inc()
    if rows:
        BATCH_SECONDS.observe(time.perf_counter() - start)
    return len(rows)


def publish_batch(conn: psycopg.Connection, broker: dramatiq.Broker, limit: int) -> int:
    """Publish and delete up to `limit` due outbox rows, oldest first, in one transaction; return how many."""
    start = time.perf_counter()
    with conn.transaction():
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM outbox WHERE available_at <= clock_timestamp()"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
        send(conn, broker, rows)
    return counted(rows, start)
