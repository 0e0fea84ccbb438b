"""Policy validation and the camelCase spec form shared by the operator and bookingctl."""

from __future__ import annotations

import pytest

from booking_scaling.policy import Policy, PolicyError


def test_defaults_are_valid_and_allow_scale_to_zero():
    policy = Policy()
    assert policy.min_replica_count == 0
    assert policy.protect_accept_path is True
    assert policy.fallback_replicas is None


def test_from_spec_reads_keda_words_and_nested_steps():
    policy = Policy.from_spec({
        "minReplicaCount": 1, "maxReplicaCount": 6, "targetBacklogPerReplica": 25,
        "activationBacklog": 3, "pollingInterval": 2, "cooldownPeriod": 30,
        "stabilizationWindowSeconds": 45, "scaleUp": {"maxStep": 2}, "scaleDown": {"maxStep": 1, "periodSeconds": 90},
        "tolerance": 0.2, "fallbackReplicas": 2, "delayedLeadSeconds": 10, "paused": True,
        "protectAcceptPath": False, "queues": ["invoice"],  # not a policy field: ignored here
    })
    assert policy == Policy(
        min_replica_count=1, max_replica_count=6, target_backlog_per_replica=25, activation_backlog=3,
        polling_interval=2, cooldown_period=30, stabilization_window_seconds=45, scale_up_max_step=2,
        scale_down_max_step=1, scale_down_period_seconds=90, tolerance=0.2, fallback_replicas=2,
        delayed_lead_seconds=10, paused=True,
        protect_accept_path=False,
    )


def test_spec_round_trips():
    policy = Policy(min_replica_count=1, max_replica_count=3, scale_up_max_step=2, fallback_replicas=1,
                    scale_down_period_seconds=120)
    assert Policy.from_spec(policy.to_spec()) == policy
    assert policy.to_spec()["scaleDown"] == {"maxStep": None, "periodSeconds": 120}


def test_absent_fields_take_the_given_defaults():
    base = Policy(max_replica_count=2, target_backlog_per_replica=5)
    assert Policy.from_spec({"minReplicaCount": 1}, defaults=base) == Policy(
        min_replica_count=1, max_replica_count=2, target_backlog_per_replica=5)


@pytest.mark.parametrize(("spec", "field"), [
    ({"minReplicaCount": 3, "maxReplicaCount": 2}, "minReplicaCount"),
    ({"maxReplicaCount": 0}, "maxReplicaCount"),
    ({"minReplicaCount": -1}, "minReplicaCount"),
    ({"minReplicaCount": True}, "minReplicaCount"),
    ({"maxReplicaCount": 2.5}, "maxReplicaCount"),
    ({"targetBacklogPerReplica": 0}, "targetBacklogPerReplica"),
    ({"activationBacklog": -1}, "activationBacklog"),
    ({"pollingInterval": 0}, "pollingInterval"),
    ({"cooldownPeriod": -5}, "cooldownPeriod"),
    ({"stabilizationWindowSeconds": float("nan")}, "stabilizationWindowSeconds"),
    ({"scaleUp": {"maxStep": 0}}, "scaleUp.maxStep"),
    ({"scaleDown": 3}, "scaleDown"),
    ({"scaleDown": {"periodSeconds": -1}}, "scaleDown.periodSeconds"),
    ({"scaleDown": {"periodSeconds": "5m"}}, "scaleDown.periodSeconds"),
    ({"tolerance": 1.0}, "tolerance"),
    ({"fallbackReplicas": 0}, "fallbackReplicas"),
    ({"maxReplicaCount": 2, "fallbackReplicas": 3}, "fallbackReplicas"),
    ({"paused": "yes"}, "paused"),
    ({"protectAcceptPath": 1}, "protectAcceptPath"),
])
def test_invalid_values_are_refused_naming_the_field(spec, field):
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        Policy.from_spec(spec)


def test_clamp_keeps_within_bounds():
    policy = Policy(min_replica_count=1, max_replica_count=3)
    assert [policy.clamp(n) for n in (0, 1, 2, 3, 9)] == [1, 1, 2, 3, 3]


def test_a_null_unsets_a_default_promise_fallback_or_concurrency_and_leaves_the_rest():
    base = Policy(polling_interval=2, max_age=20, fallback_replicas=2, replica_concurrency=4,
                  target_backlog_per_replica=7)
    assert Policy.from_spec({"maxAge": None, "fallbackReplicas": None, "replicaConcurrency": None,
                             "targetBacklogPerReplica": None}, defaults=base) == Policy(
        polling_interval=2, target_backlog_per_replica=7)
    assert Policy.from_spec({}, defaults=base) == base
