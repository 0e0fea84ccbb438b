"""The operator as the chart runs it: scraped, scoped to its release, peered, cleaned up, or left out.

Rendered by the real helm binary and validated against Kubernetes' schemas; the
operator's own behaviour under those settings (its label selector, its status writes,
its cleanup command) runs on KMock in services/queue-autoscaler/tests.
"""

from __future__ import annotations

import yaml

from helm_helpers import (
    CHART,
    NAMESPACE,
    by_kind,
    component_name,
    helm_args,
    pod_labels,
    run_helm,
    selects,
    template,
    validate_manifest,
)

DEFAULT = CHART / "ci" / "default-values.yaml"
PRODUCTION = CHART / "ci" / "production-values.yaml"
QUEUES = ("email", "invoice", "audit", "webhook")
OBSERVED = {"metrics.serviceMonitor.enabled": "true", "metrics.prometheusRule.enabled": "true"}


def operator_container(docs: list[dict]) -> dict:
    """The operator's container, whatever the release is called."""
    [op] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")]
    return op["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def ingress_rules_for(docs: list[dict], labels: dict) -> list[dict]:
    return [rule for p in by_kind(docs, "NetworkPolicy").values() if selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("ingress", [])]


# --- metrics ------------------------------------------------------------------------------------

def test_the_operators_metrics_port_is_declared_allowed_and_scraped(helm):
    docs = template(helm, *helm_args([DEFAULT], OBSERVED))
    op = by_kind(docs, "Deployment")[component_name("operator")]
    c = operator_container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == 9102 == int(env_of(c)["QUEUE_AUTOSCALER_METRICS_PORT"])
    # The default-deny policy lets Prometheus in on that port, and nothing else.
    rules = ingress_rules_for(docs, pod_labels(op))
    assert rules and all(r["ports"] == [{"port": "metrics", "protocol": "TCP"}] for r in rules), rules
    # The Prometheus Operator scrapes it: a PodMonitor endpoint on the `metrics` port selects the pod.
    monitors = [m for m in by_kind(docs, "PodMonitor").values() if selects(m["spec"]["selector"], pod_labels(op))]
    scraped = [e["port"] for m in monitors for e in m["spec"]["podMetricsEndpoints"] if e["port"] in ports]
    assert scraped == ["metrics"]
    # And a Prometheus that discovers pods by annotation finds it too.
    ann = op["spec"]["template"]["metadata"]["annotations"]
    assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"]) == ("true", "9102")
    validate_manifest(op)
    moved = template(helm, *helm_args([DEFAULT], {"metrics.operatorPort": 9300}))
    assert {p["name"]: p["containerPort"] for p in operator_container(moved)["ports"]}["metrics"] == 9300


# --- release scope and peering --------------------------------------------------------------------

def test_the_operator_acts_only_on_its_releases_queuescalers(helm):
    def selector(docs) -> dict[str, str]:
        text = env_of(operator_container(docs))["QUEUE_AUTOSCALER_LABEL_SELECTOR"]
        return dict(term.split("=", 1) for term in text.split(","))

    ours = template(helm, *helm_args([DEFAULT]))
    wanted = selector(ours)
    scalers = by_kind(ours, "QueueScaler")
    assert len(scalers) == 4 and all(selects({"matchLabels": wanted}, qs["metadata"]["labels"])
                                     for qs in scalers.values())
    # Another release of the chart in the same namespace: neither selects the other's QueueScalers.
    proc = run_helm(helm, "template", "other", str(CHART), "--namespace", NAMESPACE, *helm_args([DEFAULT]))
    theirs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert not any(selects({"matchLabels": wanted}, qs["metadata"]["labels"])
                   for qs in by_kind(theirs, "QueueScaler").values())
    assert not any(selects({"matchLabels": selector(theirs)}, qs["metadata"]["labels"]) for qs in scalers.values())


def test_peering_has_a_priority_and_a_name_of_the_release(helm):
    def peering(release: str) -> tuple[list[str], list[str]]:
        proc = run_helm(helm, "template", release, str(CHART), "--namespace", NAMESPACE, *helm_args([PRODUCTION]))
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return operator_container(docs)["command"], list(by_kind(docs, "KopfPeering"))

    command, objects = peering("booking")
    assert "--priority=100" in command and "--standalone" not in command
    assert objects == [component_name("operator")] and f"--peering={objects[0]}" in command
    _, others = peering("other")
    assert others != objects  # two releases in one namespace never share (and freeze) one KopfPeering
    named = template(helm, *helm_args([PRODUCTION], {"operator.peering.name": "shared",
                                                     "operator.peering.priority": 7}))
    assert {"--peering=shared", "--priority=7"} <= set(operator_container(named)["command"])


# --- uninstall, and running without the operator --------------------------------------------------

def hooks(doc: dict) -> set[str]:
    return set(doc["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(",")) - {""}


def hook_weight(doc: dict) -> int:
    return int(doc["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))


def cleanup_objects(docs: list[dict]) -> dict[str, dict]:
    name = component_name("operator-cleanup")
    return {d["kind"]: d for d in docs if d["metadata"]["name"] == name}


def test_a_pre_delete_hook_deletes_the_releases_queuescalers_while_the_operator_still_runs(helm):
    """kopf's finalizers need a running operator; Helm deletes the operator before unknown kinds."""
    docs = template(helm, *helm_args([DEFAULT]))
    objs = cleanup_objects(docs)
    assert set(objs) == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    for kind, d in objs.items():
        assert hooks(d) == {"pre-delete"}, kind  # before Helm deletes anything, the operator included
        policy = set(d["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))
        assert {"before-hook-creation", "hook-succeeded"} <= policy, kind
        validate_manifest(d)
    job = objs["Job"]
    assert max(hook_weight(objs[k]) for k in ("ServiceAccount", "Role", "RoleBinding")) < hook_weight(job)
    # Its own identity, allowed to delete (and, for an operator already gone, unblock) QueueScalers only.
    rules = {(g, r, v) for rule in objs["Role"]["rules"] for g in rule["apiGroups"] for r in rule["resources"]
             for v in rule["verbs"]}
    assert rules == {("scaling.booking-platform.io", "queuescalers", v) for v in ("list", "delete", "patch")}
    assert objs["RoleBinding"]["roleRef"]["name"] == objs["Role"]["metadata"]["name"]
    assert objs["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": objs["ServiceAccount"]["metadata"][
        "name"], "namespace": NAMESPACE}]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    cmd = pod["containers"][0]["command"]
    assert cmd[:3] == ["python", "-m", "queue_autoscaler.cleanup"] and f"--namespace={NAMESPACE}" in cmd
    # It deletes exactly the QueueScalers the operator acts on: those of this release.
    selector = next(a.split("=", 1)[1] for a in cmd if a.startswith("--selector="))
    assert selector == env_of(operator_container(docs))["QUEUE_AUTOSCALER_LABEL_SELECTOR"]
    assert pod["containers"][0]["image"] == operator_container(docs)["image"]
    # Within Helm's default --timeout (5m), which `helm uninstall` waits on hooks for.
    assert job["spec"]["activeDeadlineSeconds"] < 300
    off = template(helm, *helm_args([DEFAULT], {"operator.cleanup.enabled": "false"}))
    assert not cleanup_objects(off)


def worker_deployments(docs: list[dict]) -> dict[str, dict]:
    return {q: by_kind(docs, "Deployment")[component_name(f"{q}-worker")] for q in QUEUES}


def test_without_the_operator_no_queuescaler_renders_and_workers_run_their_replica_counts(helm):
    counts = {"workers.email.replicaCount": 3, "workers.invoice.replicaCount": 2, "workers.audit.replicaCount": 4,
              "workers.webhook.replicaCount": 2}
    docs = template(helm, *helm_args([DEFAULT], {"operator.enabled": "false", **counts}))
    assert not by_kind(docs, "QueueScaler")
    assert component_name("operator") not in by_kind(docs, "Deployment")
    assert {q: d["spec"]["replicas"] for q, d in worker_deployments(docs).items()} == {
        "email": 3, "invoice": 2, "audit": 4, "webhook": 2}
    # An upgrade that turns the operator off removes the QueueScalers while the old operator still runs.
    assert hooks(cleanup_objects(docs)["Job"]) == {"pre-upgrade", "pre-delete"}


def test_an_external_autoscaler_gets_the_workers_replicas_and_no_queuescaler_competes(helm):
    docs = template(helm, *helm_args([DEFAULT], {"workerAutoscaling": "external"}))
    assert not by_kind(docs, "QueueScaler")
    assert component_name("operator") not in by_kind(docs, "Deployment")
    for q, d in worker_deployments(docs).items():
        assert "replicas" not in d["spec"], q  # `helm upgrade` never resets what KEDA or an HPA set
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert all(component_name(f"{q}-worker") in pdbs for q in QUEUES)  # an autoscaler may run several
    assert hooks(cleanup_objects(docs)["Job"]) == {"pre-upgrade", "pre-delete"}
    bad = run_helm(helm, "template", "booking", str(CHART), *helm_args([DEFAULT], {"workerAutoscaling": "keda"}))
    assert bad.returncode != 0 and "workerAutoscaling" in bad.stderr
