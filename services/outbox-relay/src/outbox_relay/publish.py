"""One outbox batch: claim, publish to Dramatiq (one Redis round trip), delete, in one transaction.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays share the
work without publishing a row twice at the same time; a crash after publish
and before delete republishes it with the same message id, which consumers
treat as a duplicate.  While Redis is down the enqueue raises, the transaction
rolls back and the rows wait.
"""

from __future__ import annotations

import time

import dramatiq
import psycopg

from outbox_relay.metrics import BATCH_SECONDS, PUBLISHED
from outbox_relay.pipelined import pipelined


def publish_batch(conn: psycopg.Connection, broker: dramatiq.Broker, limit: int) -> int:
    """Publish and delete up to `limit` outbox rows in one transaction; return how many."""
    start = time.perf_counter()
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, message_id::text, queue, actor, payload, options FROM outbox"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
        with pipelined(broker):
            for r in rows:
                broker.enqueue(dramatiq.Message(
                    queue_name=r["queue"], actor_name=r["actor"], args=(), kwargs=r["payload"],
                    options=r["options"], message_id=r["message_id"],
                ))
        if rows:
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))
    for r in rows:
        PUBLISHED.labels(r["queue"]).inc()
    if rows:
        BATCH_SECONDS.observe(time.perf_counter() - start)
    return len(rows)
