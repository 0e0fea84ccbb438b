"""kopf handlers of the queue autoscaler: `kopf run -m queue_autoscaler.operator`.

One timer per QueueScaler wakes every tick (QUEUE_AUTOSCALER_TICK_SECONDS) and
polls at the object's own pollingInterval: kopf fixes a timer's interval when
the module is imported, and each QueueScaler may choose another one.  A poll
reads the target's scale subresource, refuses a target an HPA already scales,
reads the backlog and, with spec.acceptPath, the API's latency, asks
booking_scaling.decision.decide() and patches the scale subresource only, posting
an Event on each change of replicas (before a scale-down, the idlest pods get a low
pod-deletion-cost, so the ReplicaSet deletes them rather than busy ones) (and a Warning when a scale-up is first
held because the accept path is over its latency budget).  The decision
state lives in the object's kopf memo; lastActiveTime is restored from status
after a restart, and a restarted scaler never scales down before one window.
The status is patched only where it changed, and every handler takes the
release's label filter (QUEUE_AUTOSCALER_LABEL_SELECTOR), so another release's
QueueScalers in the namespace get no finalizer, no poll and no write.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
import redis

from booking_scaling.backlog import Backlog
from booking_scaling.decision import Decision, ScalerState, decide
from booking_scaling.podload import PodLoad
from booking_scaling.pressure import LatencyWatch
from booking_scaling.promise import Observed
from booking_settings.boot import boot
from queue_autoscaler import deletion_cost, metrics
from queue_autoscaler import spec as qs
from queue_autoscaler.kube import KubeClient, KubeError, TargetScale
from queue_autoscaler.pod_start import StartLatencies
from queue_autoscaler.reading import BacklogSource, LatencySource
from queue_autoscaler.settings import LEGACY_FINALIZER, OperatorSettings
from queue_autoscaler.spec import GROUP, PLURAL, READY, VERSION, Readiness, ScalerSpec, SpecError

#: Read once, as kopf imports this module (its entry point): a bad variable stops the operator
#: here, with exit status 2 and the variable's name, before kopf starts.
CONFIG = boot(lambda: OperatorSettings.from_env(os.environ), "queue-autoscaler")
TIMER_ID = "autoscale"


@dataclass
class Runtime:
    """Per-QueueScaler memory between ticks (kept in kopf's per-object memo)."""

    next_poll: float = 0.0
    #: The spec last polled with: a changed spec (paused, bounds) is acted on at the next tick.
    spec_seen: dict | None = None
    state: ScalerState | None = None
    conditions: list[dict] | None = None
    redis_url: str | None = None
    redis_url_for: tuple[str, str] | None = None
    redis_url_read_at: float = 0.0
    last_scale_time: str | None = None
    #: The API's latency between polls; a new watch when spec.acceptPath changes.
    latency: LatencyWatch | None = None
    #: The status as last written (at the first poll: as found), so that an unchanged one is not written again.
    written: dict | None = None
    #: The target's pods' measured start latencies (with spec.maxAge), for the promise's prediction.
    starts: StartLatencies = field(default_factory=StartLatencies)


class _QuietTimer(logging.Filter):
    """Drop kopf's "Timer 'autoscale' succeeded." logged every tick; decisions are logged instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Timer {TIMER_ID!r} succeeded."


# -- the poll, in steps ---------------------------------------------------------------
async def _redis_url(rt: Runtime, kube: KubeClient, namespace: str, s: ScalerSpec, now: float) -> str:
    """The Redis URL from the spec's Secret, re-read at most every QUEUE_AUTOSCALER_SECRET_TTL_SECONDS."""
    ref = (s.secret_name, s.secret_key)
    if rt.redis_url is None or rt.redis_url_for != ref or now - rt.redis_url_read_at > CONFIG.secret_ttl_seconds:
        rt.redis_url = await kube.read_secret_key(namespace, *ref)
        rt.redis_url_for, rt.redis_url_read_at = ref, now
    return rt.redis_url


async def _read_backlog(rt: Runtime, memo: kopf.Memo, namespace: str, s: ScalerSpec, scale: TargetScale,
                        now: float):
    """(Backlog, depths, every queue paused, Observed, pod loads); any failure, the Secret's included, is an
    unreadable Backlog.  The pods' loads are read here only with spec.maxAge (None otherwise, or unreadable);
    a scale-down in the same poll marks the pods with them rather than reading them again.

    Observed carries the oldest waiting task's age (Redis or the outbox's copy, same reading) and the workers'
    completion count, which the promise (spec.maxAge) is kept with.

    "Paused" is the workers' copy of the pauses in Redis (booking_scaling.pausemirror): the pool's
    queues are all paused by a human, so more workers would only idle.
    """
    try:
        url = await _redis_url(rt, memo.kube, namespace, s, now)
    except KubeError as e:
        return (Backlog.unreadable(f"Redis URL from secret {s.secret_name}/{s.secret_key}: {e}"), [], False, None,
                None)
    backlog, depths = await memo.backlog.read(url, s.redis_namespace, s.queues,
                                              delayed_lead_seconds=s.policy.delayed_lead_seconds)
    if backlog.error is not None:
        rt.redis_url = None  # the Secret may have been rotated: read it again next time
        return backlog, depths, False, None, None
    paused = await memo.backlog.paused(url, s.redis_namespace, s.queues)
    observed = loads = None
    if s.policy.max_age is not None:
        done = await memo.backlog.completed(url, s.redis_namespace, s.queues)
        loads = await _measure_pod_starts(rt, memo, namespace, s, scale, url)
        observed = Observed(oldest_age=backlog.oldest_age_seconds(depths, int(time.time() * 1000)), completed=done,
                            start_latency=rt.starts.estimate())
    return backlog, depths, bool(s.queues) and paused >= set(s.queues), observed, loads


async def _measure_pod_starts(rt: Runtime, memo: kopf.Memo, namespace: str, s: ScalerSpec, scale: TargetScale,
                              url: str) -> dict[str, PodLoad] | None:
    """Measure the start latency of pods that stamped for the first time (queue_autoscaler.pod_start); the
    pods' loads as read (None when unreadable).

    The pods are listed only when a pod not seen before has stamped; any failure leaves the
    estimate as it was (podStartSeconds until one is measured) and never stops the poll.
    """
    loads = None
    try:
        loads = await memo.backlog.pod_loads(url, s.redis_namespace, s.queues)
        if rt.starts.unseen(loads):
            pods = await memo.kube.list_pods(namespace, scale.pod_selector())
            rt.starts.observe({p.name: p.created for p in pods if p.created is not None}, loads)
    except (KubeError, redis.RedisError, OSError, ValueError) as e:
        logging.getLogger(__name__).debug("pod start latency not measured: %s", e)
    return loads


def _write_status(rt: Runtime, patch: kopf.Patch, meta: Any, now: float, conds: list[dict], *,
                  active_refresh: float = 0.0, **fields: Any) -> None:
    """Patch this poll's status fields and conditions, only those that changed since the last write.

    A poll that finds what the last one found writes nothing: with many QueueScalers
    polling every few seconds, a write per poll would be constant load on the API
    server. Condition times are kept where a condition's status did not change. The
    poll's time goes to a metric instead (queue_autoscaler_last_poll_timestamp_seconds).
    """
    merged = qs.merge_conditions(rt.conditions, conds, now)
    rt.conditions = merged
    status = {"observedGeneration": meta.get("generation"), "conditions": merged, **fields}
    held = {c["type"]: c["status"] == "True" for c in conds}
    metrics.observe_poll(meta.get("namespace"), meta.get("name"), held["Ready"], held["Fallback"], now)
    written = rt.written if rt.written is not None else {}
    changed = {k: v for k, v in status.items() if written.get(k) != v}
    if set(changed) == {"lastActiveTime"} and written.get("lastActiveTime"):
        # While a backlog lasts, lastActiveTime moves at every poll; it is only read back after
        # a restart (for the cooldown), so alone it is refreshed every `active_refresh` seconds.
        advanced = (qs.parse_iso(changed["lastActiveTime"]) or 0) - (qs.parse_iso(written["lastActiveTime"]) or 0)
        if advanced < active_refresh:
            changed = {}
    if written.get("lastPollTime") is not None:
        changed["lastPollTime"] = None  # written at every poll by earlier versions: removed once
    if changed:
        patch.status.update(changed)
        rt.written = {**written, **changed}
        rt.written.pop("lastPollTime", None)


def _refuse(rt: Runtime, patch: kopf.Patch, body: Any, now: float, why: Readiness, paused: bool, **fields) -> None:
    """Report a scaler that cannot act (Ready=False), with one Warning Event when the problem starts."""
    conds = qs.conditions(why, None, None, None, paused)
    for reason, message in qs.warnings_to_post(rt.conditions, conds):
        kopf.warn(body, reason=reason, message=message)
    _write_status(rt, patch, body.meta, now, conds, reason=why.message, **fields)


async def _mark_idle_pods(rt: Runtime, memo: kopf.Memo, namespace: str, name: str, s: ScalerSpec,
                          scale: TargetScale, loads: dict[str, PodLoad] | None, remove: int,
                          logger: logging.Logger) -> None:
    """Before removing `remove` replicas: the idlest pods get a low pod-deletion-cost (queue_autoscaler.deletion_cost).

    `scale` is the poll's reading of the target's scale subresource (its pods' selector) and
    `loads` the pods' loads when the poll read them already (spec.maxAge): neither is read twice.

    Best effort: a failure (no pods RBAC, Redis unreadable, a pod gone) is logged and counted
    (queue_autoscaler_deletion_cost_errors_total) and the scale-down goes ahead, as it would have
    without the marks: holding it would keep replicas nobody needs on a problem of ordering only.
    """
    kube: KubeClient = memo.kube
    patched, failures = 0, []
    try:
        if rt.redis_url is None:
            raise KubeError(0, "the Redis URL is not known (the backlog was not read)")
        pods = await kube.list_pods(namespace, scale.pod_selector())
        if loads is None:
            loads = await memo.backlog.pod_loads(rt.redis_url, s.redis_namespace, s.queues)
        for pod, cost in deletion_cost.plan(pods, loads, remove).items():
            try:
                await kube.set_deletion_cost(namespace, pod, cost)
                patched += 1
            except KubeError as e:  # one pod gone or refused: still mark the others
                failures.append(str(e))
    except (KubeError, redis.RedisError, OSError, ValueError) as e:
        failures.append(str(e))
    metrics.observe_deletion_costs(namespace, name, patched, bool(failures))
    if failures:
        logger.warning("pod-deletion-cost not set before scaling %s down (scaling anyway): %s",
                       s.target, "; ".join(failures))


async def _scale(rt: Runtime, memo: kopf.Memo, body: Any, namespace: str, name: str, s: ScalerSpec,
                 scale: TargetScale, loads: dict[str, PodLoad] | None, decision: Decision, logger: logging.Logger,
                 now: float) -> tuple[Readiness, int]:
    """Apply a changed decision to the scale subresource, with its Event; (readiness, replicas after)."""
    if not decision.changed:
        return READY, decision.current
    kube: KubeClient = memo.kube
    target = s.target
    if decision.desired < decision.current:
        await _mark_idle_pods(rt, memo, namespace, name, s, scale, loads, decision.current - decision.desired, logger)
    try:
        await kube.set_replicas(namespace, target, decision.desired)
    except KubeError as e:
        metrics.observe_scale_error(namespace, name)
        return Readiness(False, "ScaleFailed", str(e)), decision.current
    rt.last_scale_time = qs.iso(now)
    reason, message = qs.scale_event(target, decision)
    kopf.info(body, reason=reason, message=message)
    logger.info(message)
    return READY, decision.desired


async def _poll(rt: Runtime, spec: Any, name: str, namespace: str, body: Any, memo: kopf.Memo,
                patch: kopf.Patch, logger: logging.Logger, now: float) -> None:
    """One poll: validate, check the target, read, decide, scale, report."""
    try:
        s = qs.parse_spec(spec)
    except SpecError as e:
        rt.next_poll = now + 30
        return _refuse(rt, patch, body, now, Readiness(False, "InvalidSpec", str(e)), bool(spec.get("paused")))
    rt.next_poll = now + s.policy.polling_interval
    kube: KubeClient = memo.kube
    try:
        scale = await kube.get_scale(namespace, s.target)
        current = scale.replicas
        competing = qs.hpa_conflicts(await kube.list_hpas(namespace), s.target)
    except KubeError as e:
        metrics.observe_scale_error(namespace, name)
        why = Readiness(False, "TargetNotFound" if e.status == 404 else "KubernetesError", str(e))
        return _refuse(rt, patch, body, now, why, s.policy.paused)
    if competing:
        why = Readiness(False, "HPAConflict", f"HorizontalPodAutoscaler {', '.join(competing)} already scales "
                                              f"Deployment {s.target}; this QueueScaler will not scale it too")
        return _refuse(rt, patch, body, now, why, s.policy.paused, currentReplicas=current)

    backlog, depths, queue_paused, observed, loads = await _read_backlog(rt, memo, namespace, s, scale, now)
    if rt.latency is None or rt.latency.budget != s.budget:
        rt.latency = LatencyWatch(s.budget)
    signal = await memo.latency.judge(rt.latency, now)
    decision = decide(backlog, current, s.policy, rt.state, now, accept_path=signal, queue_paused=queue_paused,
                      observed=observed)
    rt.state = decision.new_state
    readiness, after = await _scale(rt, memo, body, namespace, name, s, scale, loads, decision, logger, now)
    if backlog.error is not None:
        metrics.observe_read_error(namespace, name)
        logger.warning(decision.reason)
    metrics.observe_depths(namespace, name, depths)
    metrics.observe_decision(namespace, name, decision.action, decision.desired, after)
    if signal is not None:
        metrics.observe_held(namespace, name, decision.held is not None)
    conds = qs.conditions(readiness, backlog, s.policy, decision, s.policy.paused, signal)
    for reason, message in qs.warnings_to_post(rt.conditions, conds):
        kopf.warn(body, reason=reason, message=message)
    fields: dict[str, Any] = {"currentReplicas": after, "desiredReplicas": decision.desired, "reason": decision.reason}
    if backlog.error is None:
        fields.update(qs.backlog_status(backlog, depths))
    promise = qs.promise_status(decision)
    if promise is not None:
        promise["podStartMeasured"] = observed is not None and observed.start_latency is not None
        fields["promise"] = promise
    if rt.state.last_active is not None:
        fields["lastActiveTime"] = qs.iso(rt.state.last_active)
    if rt.last_scale_time:
        fields["lastScaleTime"] = rt.last_scale_time
    _write_status(rt, patch, body.meta, now, conds, active_refresh=s.policy.cooldown_period / 10, **fields)


def _drop_legacy_finalizer(body: dict) -> None:
    """A kopf patch transformation: remove kopf's shared finalizer, which no operator removes any more."""
    finalizers = body.get("metadata", {}).get("finalizers", [])
    while LEGACY_FINALIZER in finalizers:
        finalizers.remove(LEGACY_FINALIZER)


# -- kopf handlers ----------------------------------------------------------------
@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Shared clients and the /metrics server; no cluster-wide CRD scan (a namespaced Role suffices)."""
    settings.scanning.disabled = True
    settings.persistence.finalizer = CONFIG.finalizer
    settings.posting.reporting_component = "queue-autoscaler"
    logging.getLogger("kopf.objects").addFilter(_QuietTimer())
    memo.kube = KubeClient()
    memo.backlog = BacklogSource(timeout=CONFIG.redis_timeout_seconds)
    memo.latency = LatencySource(timeout=CONFIG.redis_timeout_seconds)
    memo.polls = {}  # (namespace, name) -> last tick of its timer; shared by every object's memo
    memo.metrics_server = None
    if CONFIG.metrics_port:
        memo.metrics_server = await metrics.start_server(CONFIG.metrics_host, CONFIG.metrics_port)
        logger.info("metrics on http://%s:%d/metrics", CONFIG.metrics_host, CONFIG.metrics_port)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in in the order lightkube's KubeConfig.from_env() does: service account, else KUBECONFIG.

    kopf's default would also try the pykube and kubernetes clients when installed; one
    explicit order keeps kopf and the operator's own calls on the same server and user.
    """
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig: cannot reach Kubernetes")
    return info


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close what startup opened."""
    await memo.kube.close()
    memo.backlog.close()
    await memo.latency.close()
    if memo.metrics_server is not None:
        await memo.metrics_server.cleanup()


@kopf.on.event(GROUP, VERSION, PLURAL, labels=CONFIG.labels or None, when=lambda type, **_: type == "DELETED")
def forget(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """A deleted QueueScaler leaves no stale metric series and no liveness entry behind.

    A watch-event handler, not @kopf.on.delete: change handlers would make kopf
    keep a last-handled-configuration annotation on every object for nothing.
    """
    metrics.forget(namespace, name)
    memo.polls.pop((namespace, name), None)


@kopf.on.probe(id="polls")
def polls(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Liveness (kopf's --liveness endpoint): fails when a QueueScaler's timer has stopped ticking."""
    now = time.time()
    ages = {f"{ns}/{name}": round(now - at, 1) for (ns, name), at in memo.polls.items()}
    stale = [key for key, age in ages.items() if age > CONFIG.stale_poll_seconds]
    if stale:
        raise RuntimeError(f"no timer tick for over {CONFIG.stale_poll_seconds:g}s: {', '.join(sorted(stale))}")
    return {"scalers": len(ages), "oldest_tick_age_seconds": max(ages.values(), default=0)}


@kopf.timer(GROUP, VERSION, PLURAL, id=TIMER_ID, interval=CONFIG.tick_seconds, labels=CONFIG.labels or None)
async def autoscale(spec: Any, status: Any, name: str, namespace: str, body: Any, memo: kopf.Memo,
                    patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    """Every tick: poll this QueueScaler if its pollingInterval has passed."""
    rt: Runtime = memo.setdefault("scaler", Runtime())
    if CONFIG.finalizer != LEGACY_FINALIZER and LEGACY_FINALIZER in (body.meta.get("finalizers") or []):
        patch.fns.append(_drop_legacy_finalizer)  # put by an earlier version, before finalizers were per release
    now = time.time()
    memo.polls[namespace, name] = now  # for the liveness probe: this timer still ticks
    seen = copy.deepcopy(dict(spec))
    if now < rt.next_poll and seen == rt.spec_seen:
        return
    rt.spec_seen = seen
    if rt.state is None:  # first poll of this process: resume from the status
        rt.state = ScalerState(last_active=qs.parse_iso(status.get("lastActiveTime")))
        rt.conditions = list(status.get("conditions") or [])
        rt.last_scale_time = status.get("lastScaleTime")
        rt.written = copy.deepcopy(dict(status))
    await _poll(rt, spec, name, namespace, body, memo, patch, logger, now)
