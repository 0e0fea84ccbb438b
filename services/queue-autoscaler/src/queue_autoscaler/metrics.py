"""The operator's own Prometheus metrics and the /metrics endpoint that serves them.

Kept apart from the kopf handlers: those are re-imported by every KopfRunner
in the tests, while metrics may be registered only once per process.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

from booking_scaling.depth import QueueDepth

#: QueueDepth fields exported as `component`; delayed_due is read with the policy's delayedLeadSeconds.
COMPONENTS = ("ready", "in_flight", "delayed", "delayed_due", "dead")
SCALER = ("namespace", "scaler")

BACKLOG = Gauge("queue_autoscaler_backlog_messages", "Messages by queue and component at the last reading.",
                [*SCALER, "queue", "component"])
DESIRED = Gauge("queue_autoscaler_desired_replicas", "Replicas the last decision asked for.", SCALER)
CURRENT = Gauge("queue_autoscaler_current_replicas", "Replicas of the target after the last poll.", SCALER)
DECISIONS = Counter("queue_autoscaler_decisions_total", "Decisions taken, by action.", [*SCALER, "action"])
READ_ERRORS = Counter("queue_autoscaler_read_errors_total", "Backlog readings that failed.", SCALER)
#: `reason` takes only HELD_REASONS' values: the words of a hold go to status and Events, not to labels.
HELD_REASONS = ("accept_path_latency",)
SCALE_UP_HELD = Gauge("queue_autoscaler_scale_up_held",
                      "1 while the last decision held a scale-up, by reason (0 otherwise).", [*SCALER, "reason"])
SCALE_ERRORS = Counter("queue_autoscaler_scale_errors_total", "Kubernetes calls that failed during a poll.",
                       SCALER)
DELETION_COST_PATCHES = Counter("queue_autoscaler_deletion_cost_patches_total",
                                "Pods whose pod-deletion-cost was set or cleared before a scale-down.", SCALER)
DELETION_COST_ERRORS = Counter("queue_autoscaler_deletion_cost_errors_total",
                               "Scale-downs whose pod-deletion-cost marking failed, in part or whole "
                               "(the scale-down went ahead).", SCALER)
#: The Ready and Fallback conditions as numbers, so that alerts need no reader of the objects' status.
READY = Gauge("queue_autoscaler_ready", "1 while the QueueScaler can act (its Ready condition), else 0.", SCALER)
FALLBACK = Gauge("queue_autoscaler_fallback",
                 "1 while the backlog cannot be read and replicas are held or set to fallbackReplicas, else 0.",
                 SCALER)
LAST_POLL = Gauge("queue_autoscaler_last_poll_timestamp_seconds",
                  "Unix time of the QueueScaler's last poll (the status is written only when it changes).", SCALER)


_series: dict[tuple[str, str], set[tuple[object, tuple[str, ...]]]] = {}


def _child(metric: Gauge | Counter, namespace: str, scaler: str, *more: str):
    """metric.labels(...), remembering the series so forget() can remove it."""
    values = (namespace, scaler, *more)
    _series.setdefault((namespace, scaler), set()).add((metric, values))
    return metric.labels(*values)


def observe_depths(namespace: str, scaler: str, depths: list[QueueDepth]) -> None:
    """Record one reading's per-queue depths."""
    for depth in depths:
        for component in COMPONENTS:
            value = getattr(depth, component)
            if component == "delayed_due" and value is None:
                value = depth.delayed  # not read with a lead time: every delayed message is due
            _child(BACKLOG, namespace, scaler, depth.queue, component).set(value)


def observe_decision(namespace: str, scaler: str, action: str, desired: int, current: int) -> None:
    """Record one decision and the replica counts after it."""
    _child(DECISIONS, namespace, scaler, action).inc()
    _child(DESIRED, namespace, scaler).set(desired)
    _child(CURRENT, namespace, scaler).set(current)


def observe_held(namespace: str, scaler: str, held: bool) -> None:
    """Record whether this poll held a scale-up because the accept path was over its budget."""
    _child(SCALE_UP_HELD, namespace, scaler, HELD_REASONS[0]).set(1 if held else 0)


def observe_poll(namespace: str, scaler: str, ready: bool, fallback: bool, now: float) -> None:
    """Record one poll's Ready and Fallback conditions and its time."""
    _child(READY, namespace, scaler).set(1 if ready else 0)
    _child(FALLBACK, namespace, scaler).set(1 if fallback else 0)
    _child(LAST_POLL, namespace, scaler).set(now)


def observe_read_error(namespace: str, scaler: str) -> None:
    _child(READ_ERRORS, namespace, scaler).inc()


def observe_scale_error(namespace: str, scaler: str) -> None:
    _child(SCALE_ERRORS, namespace, scaler).inc()


def observe_deletion_costs(namespace: str, scaler: str, patched: int, failed: bool) -> None:
    """Record one scale-down's marking of the idle pods: pods patched, and whether any step failed."""
    _child(DELETION_COST_PATCHES, namespace, scaler).inc(patched)
    _child(DELETION_COST_ERRORS, namespace, scaler).inc(1 if failed else 0)


def forget(namespace: str, scaler: str) -> None:
    """Drop every series of a deleted QueueScaler, so no stale gauge outlives it."""
    for metric, values in _series.pop((namespace, scaler), set()):
        try:
            metric.remove(*values)
        except KeyError:
            pass


async def _serve(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_server(host: str, port: int) -> web.AppRunner:
    """Serve GET /metrics on host:port inside kopf's event loop."""
    app = web.Application()
    app.router.add_get("/metrics", _serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
