"""The `email` queue's actor: send each booking's confirmation once, however often it is delivered.

The SMTP URL and the sender are checked at import (settings come from
`email_worker.broker`), so a misconfigured worker fails at start-up rather than
on every message.  The task is marked done in the transaction that records the send.
"""

from __future__ import annotations

import logging

import dramatiq

from booking_core import db
from booking_core.messaging import ids
from booking_core.messaging.contracts import EMAIL
from booking_core.messaging.errors import PermanentTaskError, UnknownBooking
from booking_core.tasks import taskstate
from booking_core.worker.broker import actor_options
from email_worker import store
from email_worker.broker import broker, settings
from email_worker.compose import confirmation, sender
from email_worker.send import PermanentEmailError, SessionsClosedAtShutdown, send
from email_worker.smtp_url import parse_smtp_url

log = logging.getLogger(__name__)

smtp_url = parse_smtp_url(settings.smtp_url)
sender(settings.mail_from)  # a bad BOOKING_MAIL_FROM stops the worker here
broker.add_middleware(SessionsClosedAtShutdown())


@dramatiq.actor(
    broker=broker,
    actor_name=EMAIL.actor,
    queue_name=EMAIL.queue,
    throws=(PermanentTaskError,),
    **actor_options(settings, EMAIL.queue),
)
def send_confirmation_email(*, task: str, booking_id: str, tenant_id: str) -> None:
    """Send the confirmation of `booking_id` unless it was already sent, then record it."""
    booking_id, tenant_id = ids.task_ids(EMAIL, task=task, booking_id=booking_id,
                                         tenant_id=tenant_id)
    # One transaction around the send: the advisory lock keeps a concurrent
    # duplicate of this message waiting until the row below is committed.
    with db.pooled(settings) as conn:
        store.lock_booking(conn, booking_id)
        if store.already_sent(conn, booking_id):
            log.info("confirmation of booking %s already sent; nothing to do", booking_id)
            taskstate.mark_done(conn, booking_id, EMAIL.task)  # commits as the block ends
            return
        booking = store.load_booking(conn, booking_id, tenant_id=tenant_id)
        if booking is None:
            raise UnknownBooking(f"booking {booking_id} of tenant {tenant_id} not found")
        try:
            mail = confirmation(booking, mail_from=settings.mail_from)
        except ValueError as exc:
            raise PermanentEmailError(f"cannot address booking {booking_id}: {exc}") from exc
        send(mail.envelope, smtp_url)
        # From here on the mail is out: a failure below means a redelivery resends it,
        # with the same Message-ID (see README, "at least once").
        store.record_sent(conn, booking_id, mail.message_id, mail.recipient)
    log.info("sent confirmation of booking %s as %s", booking_id, mail.message_id)
