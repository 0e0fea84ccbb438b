"""The `webhook` queue's actor: one signed attempt of one delivery, recorded, retried by Dramatiq.

Each message names a delivery (`webhook_deliveries`, written by migration 0013's
triggers with its event).  The actor reads it, sends one attempt outside any
transaction, records the attempt, and then either ends (delivered, or dead once
the schedule is spent or the answer is final) or raises Dramatiq's `Retry` with
the schedule's delay: Dramatiq's Retries middleware re-enqueues the same
message, so the `webhook-id` (the event's) and the body stay the same.  A
duplicate or stale message finds its delivery closed and does nothing.
"""

from __future__ import annotations

import logging
import random
import time

import dramatiq
from dramatiq.errors import Retry
from opentelemetry import propagate

from booking_core import db
from booking_core.messaging.contracts import WEBHOOK, WEBHOOK_FAN_OUT
from booking_core.webhooks import deliveries, endpoints, payload, schedule, signing
from booking_core.webhooks.sealing import Sealer
from webhook_worker import metrics
from webhook_worker.broker import broker, settings
from webhook_worker.limits import CircuitBreaker, Slots, put_back_ms
from webhook_worker.send import Sender

log = logging.getLogger(__name__)

SCHEDULE = schedule.Schedule(first_ms=settings.webhooks_retry_first_ms, cap_ms=settings.webhooks_retry_cap_ms,
                             max_attempts=settings.webhooks_max_attempts)
sealer = Sealer(list(settings.webhooks_keys))
sender = Sender(connect_timeout=settings.webhooks_connect_timeout, timeout=settings.webhooks_timeout,
                allowed=settings.webhooks_allowed_networks)
#: Threads one endpoint may hold: the setting, at most a quarter of the process's (EndpointShare).
slots = Slots(settings.webhooks_endpoint_concurrency, setting="BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY")
#: Threads one tenant's deliveries may hold, all its endpoints together: half the process's, set at
#: boot (EndpointShare).  Four black holes of one tenant would otherwise hold all sixteen threads for a
#: deadline each, and every other tenant's deliveries would wait.
TENANT_SHARE = 2
tenant_slots = Slots(1 << 30)  # unbounded until the worker's boot gives its thread count
#: An endpoint holds at most 1/ENDPOINT_SHARE of the threads, whatever its setting says.
ENDPOINT_SHARE = 4
#: A trial attempt reports by its deadline (plus the time to record it).
breaker = CircuitBreaker(trial_timeout=settings.webhooks_timeout + 5)
#: A delivery whose endpoint has no free slot comes back after at least this long (jittered).
BUSY_DELAY_S = 1.0


class EndpointShare(dramatiq.Middleware):
    """At boot, cap an endpoint's slots at a quarter of this process's threads, whatever the setting says,
    and a tenant's at half."""

    def before_worker_boot(self, broker, worker) -> None:
        tenant_slots.limit_to_share_of(worker.worker_threads, TENANT_SHARE)
        cap = slots.limit_to_share_of(worker.worker_threads, ENDPOINT_SHARE)
        if cap < settings.webhooks_endpoint_concurrency:
            log.warning("BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY=%d is over a quarter of the %d worker threads:"
                        " an endpoint holds at most %d", settings.webhooks_endpoint_concurrency,
                        worker.worker_threads, cap)


broker.add_middleware(EndpointShare())


def busy_delay_ms(held_seconds: float) -> int:
    """When a delivery turned away (its endpoint's or its tenant's slots full) comes back.

    Not before its endpoint's running attempts have run as long again as the
    youngest of them has (`Slots.held_seconds`; at least a second, at most an
    attempt's deadline): a slow endpoint frees its slots slowly, and its
    turned-away deliveries should not take the queue's and the relay's turns
    each second while it does.  Its own endpoint's attempts, not its tenant's:
    a tenant's slots held by a black hole beside a healthy endpoint free as soon
    as one of the healthy attempts ends, and a healthy delivery put back for the
    black hole's age would wait up to a whole deadline behind it.
    """
    held = min(max(BUSY_DELAY_S, held_seconds), settings.webhooks_timeout)
    return put_back_ms(held, held, random.random())


def fallback_traceparent(trace_id: str, delivery_id: str) -> str | None:
    """A W3C traceparent in the booking's trace, its parent id derived from the delivery (as the outbox row's)."""
    trace_id = trace_id.lower()
    if len(trace_id) != 32 or not all(c in "0123456789abcdef" for c in trace_id) or set(trace_id) == {"0"}:
        return None
    return f"00-{trace_id}-{delivery_id.replace('-', '')[:16]}-01"


def decide(outcome: deliveries.Outcome, attempt: int) -> tuple[str, int | None]:
    """(state, delay before the next attempt) after `attempt` ended with `outcome`."""
    if schedule.delivered(outcome.status):
        return "delivered", None
    if outcome.permanent or not schedule.retried(outcome.status):
        return "dead", None
    delay = SCHEDULE.delay_ms(attempt, retry_after_ms=outcome.retry_after_ms)
    return ("dead", None) if delay is None else ("retrying", delay)


@dramatiq.actor(
    broker=broker,
    actor_name=WEBHOOK.actor,
    queue_name=WEBHOOK.queue,
    # The schedule above decides when a delivery is dead; Dramatiq only carries out its delays.
    max_retries=None,
    min_backoff=1_000,
    max_backoff=settings.webhooks_retry_cap_ms,
    time_limit=int((settings.webhooks_timeout + settings.webhooks_connect_timeout + 30) * 1000),
)
def deliver_webhook(*, delivery_id: str, tenant_id: str) -> None:
    """Send the delivery once and record how it went."""
    with db.pooled(settings) as conn:
        d = deliveries.for_sending(conn, delivery_id, tenant_id)
        if d is None:
            log.warning("webhook delivery %s of tenant %s not found; dropped", str(delivery_id)[:40],
                        str(tenant_id)[:40])
            return
        if d["state"] not in deliveries.OPEN_STATES:
            metrics.attempt("skipped")
            return  # a duplicate message, or one that outlived a replay: the delivery is closed
        if d["deleted"] or not d["enabled"]:
            deliveries.give_up(conn, d["id"], "endpoint deleted" if d["deleted"] else "endpoint disabled")
            metrics.attempt("skipped")
            return
    attempt = d["attempts"] + 1
    wait = breaker.wait_seconds(d["endpoint_id"])
    if wait > 0:
        # Back after the cool-off, spread over one more: the deliveries a dead endpoint has piled up
        # come back a few at a time, and each trip through the queue is one fewer for everyone else.
        metrics.attempt("breaker_open")
        raise Retry("endpoint's circuit breaker is open",
                    delay=put_back_ms(wait, breaker.cooloff_seconds(d["endpoint_id"]) or wait, random.random()))
    held = slots.held_seconds(d["endpoint_id"])  # its endpoint's attempts, before this one takes a slot
    with tenant_slots.slot(d["tenant_id"]) as tenant_free, slots.slot(d["endpoint_id"]) as free:
        if not tenant_free:
            metrics.attempt("tenant_busy")
            raise Retry("tenant busy", delay=busy_delay_ms(held))
        if not free:
            metrics.attempt("busy")
            raise Retry("endpoint busy", delay=busy_delay_ms(held))
        secrets = endpoints.live_secrets(sealer, d["secret"], d["previous_secret"], d["previous_secret_until"])
        try:
            body = payload.body(d["payload"])
        except ValueError as exc:
            outcome = deliveries.Outcome(status=None, latency_ms=0, error=str(exc), permanent=True)
        else:
            headers = signing.headers(secrets, payload.message_id(d["event_id"]), int(time.time()), body)
            propagate.inject(headers)  # traceparent: the delivery joins the booking's trace
            if "traceparent" not in headers and d["trace_id"]:
                # No span here (tracing off in this worker): still name the booking's trace.
                parent = fallback_traceparent(d["trace_id"], d["id"])
                if parent:
                    headers["traceparent"] = parent
            outcome = sender.post(d["url"], body, headers)
    state, delay = decide(outcome, attempt)
    if not outcome.permanent:
        breaker.record(d["endpoint_id"], ok=state == "delivered", timed_out=outcome.timed_out)
    with db.pooled(settings) as conn:
        result = deliveries.record(conn, d, outcome, state=state, attempt=attempt, next_delay_ms=delay,
                                   disable_after_seconds=settings.webhooks_disable_after_seconds)
    metrics.attempt(state, outcome.latency_ms / 1000)
    if result["disabled"]:
        log.warning("webhook endpoint %s disabled: failing for longer than %d s", d["endpoint_id"],
                    settings.webhooks_disable_after_seconds)
    log.info("webhook delivery %s attempt %d: %s (%s) in %d ms", d["id"], attempt, state,
             outcome.status if outcome.status is not None else outcome.error, outcome.latency_ms)
    if state == "retrying" and result["recorded"]:
        raise Retry(f"attempt {attempt} failed", delay=delay)


@dramatiq.actor(broker=broker, actor_name=WEBHOOK_FAN_OUT.actor, queue_name=WEBHOOK_FAN_OUT.queue,
                max_retries=20, min_backoff=1_000, max_backoff=60_000)
def fan_out_webhook_event(*, event_id: str, tenant_id: str) -> None:
    """Write a new booking's event's deliveries, one per live endpoint that wants it (idempotent).

    The confirm writes only the event and this message, so a tenant's endpoints cost its
    accept path two rows, not two per endpoint.
    """
    with db.pooled(settings) as conn:
        n = deliveries.fan_out(conn, event_id, tenant_id)
    log.info("webhook event %s fanned out to %d endpoint(s)", str(event_id)[:40], n)
