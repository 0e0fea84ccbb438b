"""The operator's pure helpers: spec parsing, HPA conflicts, conditions, Events; and its readers."""

from __future__ import annotations

import asyncio

import pytest

from booking_scaling.backlog import Backlog
from booking_scaling.decision import ScalerState, decide
from booking_scaling.policy import Policy
from booking_scaling.pressure import AcceptPath, LatencyBudget
from queue_autoscaler.reading import BacklogSource
from queue_autoscaler.settings import OperatorSettings
from queue_autoscaler.spec import (
    READY,
    Readiness,
    SpecError,
    conditions,
    hpa_conflicts,
    iso,
    merge_conditions,
    parse_iso,
    parse_spec,
    scale_event,
    warnings_to_post,
)

SPEC = {"scaleTargetRef": {"name": "invoice-worker"}, "queues": ["invoice", "invoice"],
        "redis": {"urlSecretRef": {"name": "r", "key": "url"}}, "maxReplicaCount": 3}


def test_parse_spec_reads_target_queues_redis_and_policy():
    parsed = parse_spec(SPEC)
    assert (parsed.target, parsed.queues, parsed.secret_name, parsed.secret_key) == (
        "invoice-worker", ("invoice",), "r", "url")
    assert parsed.redis_namespace == "dramatiq"
    assert parsed.policy == Policy(max_replica_count=3)


@pytest.mark.parametrize(("broken", "message"), [
    ({"scaleTargetRef": {}}, "scaleTargetRef.name"),
    ({"queues": []}, "queues"),
    ({"redis": {"urlSecretRef": {"name": "r"}}}, "urlSecretRef"),
    ({"maxReplicaCount": 0}, "maxReplicaCount"),
    ({"acceptPath": {"metricsUrl": "file:///etc/passwd"}}, "acceptPath.metricsUrl"),
    ({"protectAcceptPath": "no"}, "protectAcceptPath"),
])
def test_parse_spec_names_what_is_wrong(broken, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**SPEC, **broken})


def test_hpa_conflicts_match_deployments_of_that_name_only():
    def hpa(name, kind="Deployment", target="invoice-worker", api="apps/v1"):
        return {"metadata": {"name": name},
                "spec": {"scaleTargetRef": {"apiVersion": api, "kind": kind, "name": target}}}

    hpas = [hpa("keda-hpa-invoice"), hpa("other", target="email-worker"), hpa("sts", kind="StatefulSet"),
            hpa("custom", api="example.com/v1")]
    assert hpa_conflicts(hpas, "invoice-worker") == ["keda-hpa-invoice"]


def test_conditions_of_a_read_error():
    backlog = Backlog.unreadable("ConnectionError: refused")
    decision = decide(backlog, 2, Policy(), ScalerState(), 0)
    conds = {c["type"]: c for c in conditions(READY, backlog, Policy(), decision, paused=False)}
    assert {k: c["status"] for k, c in conds.items()} == {
        "Ready": "True", "Active": "Unknown", "Fallback": "True", "Paused": "False", "ScaleUpHeld": "False",
        "PromiseKept": "Unknown"}
    assert conds["Fallback"]["message"] == "backlog unreadable (ConnectionError: refused); holding 2"


def test_active_follows_the_activation_backlog():
    policy = Policy(activation_backlog=5)
    assert conditions(READY, Backlog(ready=5), policy, None, False)[1]["status"] == "False"
    assert conditions(READY, Backlog(ready=6), policy, None, False)[1]["status"] == "True"


def test_transition_times_change_only_with_the_status():
    first = merge_conditions(None, conditions(READY, Backlog(ready=1), Policy(), None, False), now=100)
    again = merge_conditions(first, conditions(READY, Backlog(ready=0), Policy(), None, False), now=200)
    times = {c["type"]: c["lastTransitionTime"] for c in again}
    assert times["Ready"] == iso(100)  # still True
    assert times["Active"] == iso(200)  # True -> False


def test_warnings_are_posted_once_per_problem():
    hpa = Readiness(False, "HPAConflict", "HorizontalPodAutoscaler cpu already scales it")
    before = conditions(READY, Backlog(), Policy(), None, False)
    during = conditions(hpa, None, None, None, False)
    assert warnings_to_post(before, during) == [("HPAConflict", "HorizontalPodAutoscaler cpu already scales it")]
    assert warnings_to_post(during, during) == []


SLOW = AcceptPath(True, "/api/v1/bookings p99 180 ms over 5s (900 requests), budget 100 ms")


def held(backlog, current, policy, signal):
    decision = decide(backlog, current, policy, ScalerState(), 0, accept_path=signal)
    return {c["type"]: c for c in conditions(READY, backlog, policy, decision, False, signal)}["ScaleUpHeld"]


def test_scale_up_held_says_why_and_warns_once_when_it_begins():
    cond = held(Backlog(ready=50), 1, Policy(), SLOW)
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", "AcceptPathOverBudget", SLOW.reason)
    quiet = conditions(READY, Backlog(), Policy(), None, False)
    during = conditions(READY, Backlog(ready=50), Policy(), decide(Backlog(ready=50), 1, Policy(), ScalerState(), 0,
                                                                   accept_path=SLOW), False, SLOW)
    assert warnings_to_post(quiet, during) == [("AcceptPathOverBudget", SLOW.reason)]
    assert warnings_to_post(during, during) == []


@pytest.mark.parametrize(("backlog", "policy", "signal", "reason"), [
    (Backlog(ready=50), Policy(), None, "NoLatencySignal"),
    (Backlog(ready=50), Policy(), AcceptPath(False, "p99 4 ms"), "AcceptPathWithinBudget"),
    (Backlog(ready=50), Policy(protect_accept_path=False), SLOW, "ProtectionOff"),
    (Backlog(ready=10), Policy(), SLOW, "NothingToHold"),  # one replica is what it needs
])
def test_scale_up_not_held_names_why(backlog, policy, signal, reason):
    cond = held(backlog, 1, policy, signal)
    assert (cond["status"], cond["reason"]) == ("False", reason)


def test_parse_spec_reads_the_latency_budget():
    parsed = parse_spec({**SPEC, "acceptPath": {"metricsUrl": "http://booking-api:8000/metrics", "minRequests": 5}})
    assert parsed.budget == LatencyBudget(metrics_url="http://booking-api:8000/metrics", min_requests=5)


def test_scale_event_names_the_backlog():
    decision = decide(Backlog(ready=30), 1, Policy(), ScalerState(), 0)
    reason, message = scale_event("invoice-worker", decision)
    assert reason == "ScaledUp"
    assert message.startswith("Deployment invoice-worker 1→3: backlog 30 (ready 30")


def test_times_round_trip():
    assert parse_iso(iso(1_700_000_000)) == 1_700_000_000
    assert parse_iso(None) is None and parse_iso("yesterday") is None


def test_config_from_env():
    config = OperatorSettings.from_env({"QUEUE_AUTOSCALER_TICK_SECONDS": "0.5", "QUEUE_AUTOSCALER_METRICS_PORT": "0"})
    assert (config.tick_seconds, config.metrics_port) == (0.5, 0)
    with pytest.raises(ValueError, match="QUEUE_AUTOSCALER_TICK_SECONDS"):
        OperatorSettings.from_env({"QUEUE_AUTOSCALER_TICK_SECONDS": "fast"})


def test_backlog_source_reads_dramatiq_queues_in_real_redis(work, redis_url):
    work.send(4)
    work.take(1)
    work.send(2, delay_ms=60_000)
    source = BacklogSource(timeout=1)
    backlog, depths = asyncio.run(source.read(redis_url, work.namespace, (work.queue,)))
    source.close()
    assert (backlog.ready, backlog.in_flight, backlog.delayed, backlog.error) == (3, 1, 2, None)
    assert [d.queue for d in depths] == [work.queue]


def test_backlog_source_turns_an_unreachable_redis_into_an_unreadable_backlog():
    source = BacklogSource(timeout=0.5)
    backlog, depths = asyncio.run(source.read("redis://127.0.0.1:9/0", "dramatiq", ("invoice",)))
    assert backlog.error and "ConnectionError" in backlog.error
    assert depths == []
