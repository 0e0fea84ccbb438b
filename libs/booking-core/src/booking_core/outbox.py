"""The transactional outbox: messages written with the data they belong to.

Rows are inserted in the caller's transaction and a NOTIFY wakes the relay at
commit; the relay publishes them to Redis and deletes them.  Each row keeps a
stable Dramatiq message id, so a republish after a relay crash carries the
same id and consumers can recognise the duplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

CHANNEL = "booking_outbox"


@dataclass(frozen=True)
class OutboxMessage:
    """A Dramatiq message waiting to be published."""

    queue: str
    actor: str
    payload: dict
    options: dict = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def add(conn: psycopg.Connection, messages: list[OutboxMessage]) -> None:
    """Insert `messages` in the current transaction and wake the relay at commit."""
    if not messages:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (message_id, queue, actor, payload, options)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(m.message_id, m.queue, m.actor, Jsonb(m.payload), Jsonb(m.options)) for m in messages],
        )
        cur.execute(f"NOTIFY {CHANNEL}")
