"""The `issue_invoice` actor: one invoice, number and PDF per booking, however often redelivered.

Settings come from `invoice_worker.broker` (read once, at start-up).  The render
(seconds, CPU) runs with no connection held; the task is marked done in the
transaction that stores the PDF.
"""

from __future__ import annotations

import logging

import dramatiq

from booking_core import db
from booking_core.messaging import ids
from booking_core.messaging.contracts import INVOICE
from booking_core.messaging.errors import PermanentTaskError, UnknownBooking
from booking_core.tasks import taskstate
from booking_core.worker.broker import actor_options
from invoice_worker import render, store
from invoice_worker.broker import broker, settings

log = logging.getLogger(__name__)


@dramatiq.actor(
    actor_name=INVOICE.actor,
    queue_name=INVOICE.queue,
    broker=broker,
    throws=(PermanentTaskError,),
    **actor_options(settings, INVOICE.queue),
)
def issue_invoice(*, task: str, booking_id: str, tenant_id: str) -> None:
    """Number the booking's invoice, render it outside any transaction, store it once."""
    booking_id, tenant_id = ids.task_ids(INVOICE, task=task, booking_id=booking_id,
                                         tenant_id=tenant_id)
    # One transaction (one commit) numbers the invoice and reads what it shows.
    with db.pooled(settings) as conn, conn.transaction():
        number, has_pdf = store.allocate_number(conn, booking_id, tenant_id=tenant_id)
        if has_pdf:
            log.info("invoice %s of booking %s already issued", number, booking_id)
            taskstate.mark_done(conn, booking_id, INVOICE.task)
            return
        data = store.load_invoice_data(conn, booking_id)
    if data is None:  # deleted between the two reads
        raise UnknownBooking(f"no booking {booking_id!r}")
    pdf = render.render_pdf(render.invoice_html(data))
    with db.pooled(settings) as conn:
        stored = store.save_pdf(conn, booking_id, pdf)
    log.info("invoice %s of booking %s %s", number, booking_id,
             "issued" if stored else "was issued by another attempt")
