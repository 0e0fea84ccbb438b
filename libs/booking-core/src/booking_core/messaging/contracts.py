"""Message contracts: which queue and actor name each kind of work uses.

Producers (the outbox relay) enqueue by name from these contracts, so the API
never imports worker code, and a worker declares its actor with the same names.
Payloads carry ids only, never the booking itself: workers read the current
row from Postgres, so a message cannot leak or carry stale customer data.
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_STATES = ("pending", "running", "retrying", "done", "dead")


@dataclass(frozen=True)
class Contract:
    """One kind of work: the queue it travels on and the actor that does it."""

    task: str
    queue: str
    actor: str


EMAIL = Contract(task="email", queue="email", actor="send_confirmation_email")
INVOICE = Contract(task="invoice", queue="invoice", actor="issue_invoice")
AUDIT = Contract(task="audit", queue="audit", actor="record_audit_event")

CONTRACTS = {c.task: c for c in (EMAIL, INVOICE, AUDIT)}
#: Signed deliveries to tenants' endpoints: not a booking task (no `booking_tasks` row), so apart from
#: CONTRACTS.  Its messages are written by migration 0013's triggers with these names, and carry
#: `{"delivery_id", "tenant_id"}`.
WEBHOOK = Contract(task="webhook", queue="webhook", actor="deliver_webhook")
#: On the same queue: write a new booking's event's deliveries (`{"event_id", "tenant_id"}`).
WEBHOOK_FAN_OUT = Contract(task="webhook-fan-out", queue="webhook", actor="fan_out_webhook_event")
#: The queues of a booking's tasks (each has a retry policy of its own, BOOKING_RETRY_<QUEUE>_*).
TASK_QUEUES = tuple(c.queue for c in CONTRACTS.values())
#: Every queue of the platform: each can be paused, its dead letters filtered, its workers autoscaled,
#: and the relay orders its messages fairly by tenant.  The webhook worker's retries follow its own
#: schedule (booking_core.webhooks.schedule), not a BOOKING_RETRY_* policy.
QUEUES = (*TASK_QUEUES, WEBHOOK.queue)
TASKS = tuple(CONTRACTS)

#: Audit event kinds.  `booking.created` is the booking's own "audit" task.
AUDIT_KINDS = (
    "booking.created",
    "email.sent",
    "invoice.issued",
    "deadletter.requeued",
    "deadletter.discarded",
    "queue.paused",
    "queue.resumed",
    "plan.changed",
    "plan.reset",
    "webhook.replayed",
    "webhook.replayed_since",
)


def task_payload(task: str, *, booking_id: str, tenant_id: str) -> dict:
    """Payload of an email or invoice message: which booking, whose tenant."""
    return {"task": task, "booking_id": booking_id, "tenant_id": tenant_id}


def audit_payload(
    *,
    event_id: str,
    kind: str,
    tenant_id: str,
    booking_id: str | None,
    actor: str,
    occurred_at: str,
    details: dict | None = None,
) -> dict:
    """Payload of an audit message; `task` is set only for the booking's own audit task."""
    if kind not in AUDIT_KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    payload = {
        "event_id": event_id,
        "kind": kind,
        "tenant_id": tenant_id,
        "booking_id": booking_id,
        "actor": actor,
        "occurred_at": occurred_at,
        "details": details or {},
    }
    if kind == "booking.created":
        payload["task"] = "audit"
    return payload
