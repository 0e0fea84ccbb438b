"""The `email` queue's actor: send each booking's confirmation once, however often it is delivered.

Settings, the SMTP URL and the retry policy are read at import, so a
misconfigured worker fails at start-up rather than on every message.
"""

from __future__ import annotations

import logging
import uuid

import dramatiq

from booking_core import db
from booking_core.broker import actor_options
from booking_core.config import Settings
from booking_core.contracts import EMAIL
from email_worker import store
from email_worker.broker import broker
from email_worker.compose import confirmation_message, sender
from email_worker.send import PermanentEmailError, send
from email_worker.smtp_url import parse_smtp_url

log = logging.getLogger(__name__)

settings = Settings.from_env()
smtp_url = parse_smtp_url(settings.smtp_url)
sender(settings.mail_from)  # a bad BOOKING_MAIL_FROM stops the worker here


@dramatiq.actor(
    broker=broker,
    actor_name=EMAIL.actor,
    queue_name=EMAIL.queue,
    throws=(PermanentEmailError,),
    **actor_options(settings, EMAIL.queue),
)
def send_confirmation_email(*, task: str, booking_id: str, tenant_id: str) -> None:
    """Send the confirmation of `booking_id` unless it was already sent, then record it."""
    if task != EMAIL.task:
        raise PermanentEmailError(f"message for task {task!r} sent to the {EMAIL.task!r} actor")
    try:
        booking_id, tenant_id = str(uuid.UUID(str(booking_id))), str(uuid.UUID(str(tenant_id)))
    except ValueError:
        raise PermanentEmailError(
            f"booking {booking_id!r} / tenant {tenant_id!r}: not UUIDs"
        ) from None
    pool = db.pool(settings.database_url, max_size=settings.db_pool_max)
    # One transaction around the send: the advisory lock keeps a concurrent
    # duplicate of this message waiting until the row below is committed.
    with pool.connection() as conn:
        store.lock_booking(conn, booking_id)
        if store.already_sent(conn, booking_id):
            log.info("confirmation of booking %s already sent; nothing to do", booking_id)
            return
        booking = store.load_booking(conn, booking_id, tenant_id=tenant_id)
        if booking is None:
            raise PermanentEmailError(f"booking {booking_id} of tenant {tenant_id} not found")
        try:
            message = confirmation_message(booking, mail_from=settings.mail_from)
        except ValueError as exc:
            raise PermanentEmailError(f"cannot address booking {booking_id}: {exc}") from exc
        send(message, smtp_url)
        # From here on the mail is out: a failure below means a redelivery resends it,
        # with the same Message-ID (see README, "at least once").
        recipient = message["To"].addresses[0].addr_spec
        store.record_sent(conn, booking_id, message["Message-ID"], recipient)
    log.info("sent confirmation of booking %s as %s", booking_id, message["Message-ID"])
