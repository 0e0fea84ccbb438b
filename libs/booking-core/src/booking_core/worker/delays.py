"""A worker's retries wait out their backoff in the outbox, so they queue behind other tenants' work fairly.

Dramatiq's Retries middleware decides whether a failed message is retried and
after what backoff, then calls `broker.enqueue(message, delay=backoff)`, which
puts it in Redis's delayed queue; when due, a worker moves it to the tail of
the ready list, past the relay's fair ordering.  A tenant whose tasks keep
failing would then take the workers with its retries however fair the relay
is.  This broker keeps every decision Dramatiq's and changes only where a
delayed platform message waits: an outbox row with `available_at` = now +
backoff, the same message id and options (retry count, trace context).  The
relay publishes it when due, in fair order with everyone else's.

If Postgres cannot take the row (an outage, a full pool), the message goes to
Redis's delayed queue as before: a retry is never lost for want of the fair
path.  Messages of queues the platform does not own, and undelayed sends, are
Dramatiq's as ever.  Used only with the fair ordering (`BOOKING_RELAY_ORDER=fair`).
"""

from __future__ import annotations

import logging

import dramatiq
import psycopg
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name
from psycopg_pool import PoolTimeout

from booking_core import db
from booking_core.messaging import outbox
from booking_core.messaging.contracts import QUEUES

log = logging.getLogger(__name__)

#: Options Dramatiq's Redis broker sets per enqueue; a new enqueue sets them afresh.
_PER_ENQUEUE = ("redis_message_id", "eta")


class OutboxDelayBroker(RedisBroker):
    """A RedisBroker whose delayed platform messages wait in the outbox (see the module docstring)."""

    def __init__(self, *, database_url: str, pool_max: int = 10, acquire_timeout: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self._database_url = database_url
        self._pool_max = pool_max
        self._acquire_timeout = acquire_timeout

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        """Send `message`; a delayed one of a platform queue goes to the outbox (Redis if Postgres fails)."""
        queue = q_name(message.queue_name)
        if delay is None or queue not in QUEUES:
            return super().enqueue(message, delay=delay)
        options = {k: v for k, v in message.options.items() if k not in _PER_ENQUEUE}
        waiting = outbox.OutboxMessage(queue, message.actor_name, dict(message.kwargs), options,
                                       message_id=message.message_id)
        try:
            pool = db.pool(self._database_url, max_size=self._pool_max)
            with pool.connection(timeout=self._acquire_timeout) as conn:
                outbox.add_delayed(conn, waiting, delay)
        except (psycopg.Error, PoolTimeout) as e:
            log.warning("message %s: retry in %d ms kept in Redis, not the outbox (%s: %s)",
                        message.message_id, delay, type(e).__name__, e)
            return super().enqueue(message, delay=delay)
        log.info("message %s (%s): retry in %d ms waits in the outbox", message.message_id, queue, delay)
        return message.copy(queue_name=queue, options=options)
