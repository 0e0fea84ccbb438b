"""High availability in the chart: pods spread over nodes and zones, priority classes, the API's HPA.

Rendered by the real helm binary and validated against Kubernetes' schemas.
"""

from __future__ import annotations

from helm_helpers import (
    CHART,
    RELEASE,
    by_kind,
    component_name,
    helm_args,
    pod_labels,
    pod_specs,
    run_helm,
    selects,
    template,
    validate_manifest,
)

DEFAULT = CHART / "ci" / "default-values.yaml"
SPREAD = ("api", "events", "relay", "email-worker", "invoice-worker", "audit-worker")


def deployments(docs: list[dict]) -> dict[str, dict]:
    return by_kind(docs, "Deployment")


def spread_of(docs: list[dict], component: str) -> list[dict]:
    return deployments(docs)[component_name(component)]["spec"]["template"]["spec"].get(
        "topologySpreadConstraints", [])


def test_by_default_each_component_spreads_softly_over_nodes_and_zones(helm):
    docs = template(helm, *helm_args([DEFAULT]))
    for component in SPREAD:
        constraints = spread_of(docs, component)
        assert {(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in constraints} == {
            ("kubernetes.io/hostname", "ScheduleAnyway", 1), ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)}
        deployment = deployments(docs)[component_name(component)]
        for c in constraints:
            # Counted over this component's pods only, and per rollout (a new ReplicaSet spreads by itself).
            assert selects(c["labelSelector"], pod_labels(deployment))
            assert not any(selects(c["labelSelector"], pod_labels(other))
                           for name, other in deployments(docs).items() if name != component_name(component))
            assert c["matchLabelKeys"] == ["pod-template-hash"]
        validate_manifest(deployment)
    # A single pod replaced with Recreate has nothing to spread.
    assert not spread_of(docs, "operator")


def test_the_spread_can_be_hard_off_or_your_own(helm):
    hard = template(helm, *helm_args([DEFAULT], {"spreadPreset": "hard"}))
    assert {(c["topologyKey"], c["whenUnsatisfiable"]) for c in spread_of(hard, "api")} == {
        ("kubernetes.io/hostname", "DoNotSchedule"), ("topology.kubernetes.io/zone", "ScheduleAnyway")}
    none = template(helm, *helm_args([DEFAULT], {"spreadPreset": "none"}))
    assert all(not spread_of(none, c) for c in SPREAD)
    own = template(helm, *helm_args([DEFAULT], {"topologySpreadConstraints[0].maxSkew": 2,
                                                "topologySpreadConstraints[0].topologyKey": "rack",
                                                "topologySpreadConstraints[0].whenUnsatisfiable": "DoNotSchedule"}))
    [c] = spread_of(own, "invoice-worker")
    assert (c["topologyKey"], c["maxSkew"]) == ("rack", 2)
    assert selects(c["labelSelector"], pod_labels(deployments(own)[component_name("invoice-worker")]))
    validate_manifest(deployments(own)[component_name("invoice-worker")])


def test_priority_classes_chart_wide_with_the_api_and_each_worker_on_their_own(helm):
    docs = template(helm, *helm_args([DEFAULT], set_strings={
        "priorityClassName": "bookings", "api.priorityClassName": "bookings-accept-path",
        "workers.invoice.priorityClassName": "bookings-batch"}))
    classes = {owner["metadata"]["name"]: spec.get("priorityClassName") for owner, spec in pod_specs(docs)}
    assert classes.pop(component_name("api")) == "bookings-accept-path"
    assert classes.pop(component_name("invoice-worker")) == "bookings-batch"
    assert set(classes.values()) == {"bookings"}, classes  # every other pod, hooks and the test included
    plain = template(helm, *helm_args([DEFAULT]))
    assert not any("priorityClassName" in spec for _, spec in pod_specs(plain))


def test_the_api_can_be_autoscaled_by_an_hpa(helm):
    docs = template(helm, *helm_args([DEFAULT], {"api.autoscaling.enabled": "true", "api.autoscaling.maxReplicas": 8}))
    [hpa] = by_kind(docs, "HorizontalPodAutoscaler").values()
    validate_manifest(hpa)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": component_name("api")}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert "replicas" not in deployments(docs)[component_name("api")]["spec"]  # helm upgrade leaves it to the HPA
    assert component_name("api") in by_kind(docs, "PodDisruptionBudget")
    # No QueueScaler ever targets the API, so the operator's HPA conflict check never trips on it.
    assert all(qs["spec"]["scaleTargetRef"]["name"] != component_name("api")
               for qs in by_kind(docs, "QueueScaler").values())
    assert not by_kind(template(helm, *helm_args([DEFAULT])), "HorizontalPodAutoscaler")
    bad = run_helm(helm, "template", RELEASE, str(CHART), *helm_args([DEFAULT], {
        "api.autoscaling.enabled": "true", "api.autoscaling.minReplicas": 5, "api.autoscaling.maxReplicas": 3}))
    assert bad.returncode != 0 and "api.autoscaling: minReplicas (5) exceeds maxReplicas (3)" in bad.stderr
