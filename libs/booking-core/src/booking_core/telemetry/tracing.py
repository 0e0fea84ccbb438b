"""Trace context across the queue: a Dramatiq middleware and the outbox's carrier.

The API stores the request span's context in each outbox row's message
options (`trace_context`, W3C `traceparent`/`tracestate`).  When the relay
enqueues, this middleware starts a PRODUCER span `send <queue>` under that
context and re-injects its own context; a worker continues it with a CONSUMER
span `process <queue>`, made current so the worker's SQL and SMTP spans nest
under it.  A retry keeps its message's producer context, so every attempt is a
new consumer span whose parent is the same producer span; a requeued dead
letter keeps its options and therefore its trace.  Names and attributes follow
the OpenTelemetry messaging semantic conventions.
"""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.middleware import Middleware
from opentelemetry import context, propagate, trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode

OPTION = "trace_context"
SYSTEM = "dramatiq"
_tracer = trace.get_tracer("booking_core.tracing")


def current_carrier() -> dict[str, str]:
    """The current span's context as a W3C carrier, for an outbox row's options."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a (sampled or not) trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _nothing_to_trace(carrier: dict | None) -> bool:
    """True when a span here would record nothing and carry nothing on: no SDK installed, no context given.

    Then the span is a no-op and injecting it writes an empty carrier, so the
    hooks skip both.  Why: the relay enqueues three messages per booking, and
    the no-op span's start, inject and end were a sixth of its CPU with
    tracing off (py-spy under load).  A message that carries a context is
    still passed through (a no-op span keeps its parent's ids), so a relay
    without tracing does not cut a trace the API started.
    """
    return not carrier and isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def _attributes(message: dramatiq.Message, operation: str) -> dict:
    queue = message.queue_name.removesuffix(".DQ")
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.message.id": message.message_id,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.dramatiq.actor": message.actor_name,
        "messaging.dramatiq.retries": int(message.options.get("retries", 0)),
    }


class TracingMiddleware(Middleware):
    """Producer spans on enqueue, consumer spans around processing."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _stack(self) -> dict:
        if not hasattr(self._local, "spans"):
            self._local.spans = {}
        return self._local.spans

    # -- producer --------------------------------------------------------
    def before_enqueue(self, broker, message, delay):
        # Dramatiq calls no hook when an enqueue raises: end such a span here, as failed.
        for key in [k for k in self._stack() if k[0] == "send"]:
            stale = self._stack().pop(key)
            stale.set_status(Status(StatusCode.ERROR, "enqueue failed"))
            stale.set_attribute("error.type", "EnqueueFailed")
            stale.end()
        if message.options.get("retries"):
            return  # a retry: keep the original producer's context
        carrier = message.options.get(OPTION)
        if _nothing_to_trace(carrier):
            return
        parent = propagate.extract(carrier or {})
        queue = message.queue_name.removesuffix(".DQ")
        span = _tracer.start_span(f"send {queue}", context=parent, kind=SpanKind.PRODUCER,
                                  attributes=_attributes(message, "send"))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            message.options[OPTION] = carrier
        self._stack()[("send", message.message_id)] = span

    def after_enqueue(self, broker, message, delay):
        span = self._stack().pop(("send", message.message_id), None)
        if span is not None:
            span.end()

    # -- consumer --------------------------------------------------------
    def before_process_message(self, broker, message):
        carrier = message.options.get(OPTION)
        if _nothing_to_trace(carrier):
            return
        parent = propagate.extract(carrier or {})
        queue = message.queue_name.removesuffix(".DQ")
        span = _tracer.start_span(f"process {queue}", context=parent, kind=SpanKind.CONSUMER,
                                  attributes=_attributes(message, "process"))
        token = context.attach(trace.set_span_in_context(span))
        self._stack()[("process", message.message_id)] = (span, token)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        entry = self._stack().pop(("process", message.message_id), None)
        if entry is None:
            return
        span, token = entry
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, str(exception)[:200]))
            span.set_attribute("error.type", type(exception).__qualname__)
        span.end()
        context.detach(token)

    def after_skip_message(self, broker, message):
        self.after_process_message(broker, message, exception=None)
