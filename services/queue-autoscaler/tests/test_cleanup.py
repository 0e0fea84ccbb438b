"""The uninstall hook's command (`python -m queue_autoscaler.cleanup`) against KMock's emulator.

With the operator running, the release's QueueScalers are deleted and the operator
removes its finalizers; with no operator left, the command removes them itself after
its grace. Another release's QueueScalers are never touched: KMock ignores label
selectors, so the command's own label check is what keeps them (a real API server
filters on the selector first). The verbs it uses are the ones the chart's hook Role
grants, rendered by the real helm.
"""

from __future__ import annotations

import subprocess
import sys

from helm_helpers import CHART, by_kind, component_name, helm_args, install_helm, template

OURS = {"app.kubernetes.io/instance": "booking", "app.kubernetes.io/name": "booking-platform"}
THEIRS = {"app.kubernetes.io/instance": "other", "app.kubernetes.io/name": "booking-platform"}
SELECTOR = "app.kubernetes.io/instance=booking,app.kubernetes.io/name=booking-platform"
OUR_FINALIZER = "scaling.booking-platform.io/operator-booking"
THEIR_FINALIZER = "scaling.booking-platform.io/operator-other"


def spec(work, target: str) -> dict:
    return {"scaleTargetRef": {"name": target}, "queues": [work.queue],
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
            "minReplicaCount": 1, "maxReplicaCount": 3, "pollingInterval": 1}


def run_cleanup(ns: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queue_autoscaler.cleanup", "--namespace", ns,
                           "--selector", SELECTOR, *flags], capture_output=True, text=True, timeout=240)


def finalized(cluster, ns: str, name: str, labels: dict, finalizer: str) -> None:
    """A QueueScaler as a crashed operator leaves it: its finalizer on, nobody to remove it."""
    cluster.queuescaler(ns, name, {"scaleTargetRef": {"name": "w"}, "queues": ["q"],
                                   "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}, labels=labels,
                        finalizers=[finalizer])


def test_with_the_operator_running_the_releases_queuescalers_go_and_the_operator_lets_them(
        cluster, ns, work, operator, redis_url, wait_for, monkeypatch):
    monkeypatch.setenv("QUEUE_AUTOSCALER_LABEL_SELECTOR", SELECTOR)
    cluster.secret(ns, "redis", {"url": redis_url})
    for name in ("email-worker", "invoice-worker"):
        cluster.deployment(ns, name, replicas=1)
        cluster.queuescaler(ns, name, spec(work, name), labels=OURS)
    finalized(cluster, ns, "other-invoice-worker", THEIRS, THEIR_FINALIZER)
    with operator():
        wait_for(lambda: all((cluster.queuescaler_object(ns, n) or {}).get("metadata", {}).get("finalizers")
                             for n in ("email-worker", "invoice-worker")))
        # A grace long enough for an operator starved of CPU (another test worker beside it): it ends
        # as soon as the operator lets them go, and only a missing operator would use it up.
        proc = run_cleanup(ns, "--force-after", "150", "--wait", "5")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 QueueScaler(s)" in proc.stdout and proc.stdout.rstrip().endswith("all gone")
    assert "removing their finalizers" not in proc.stdout  # the running operator let them go itself
    assert cluster.queuescaler_object(ns, "email-worker") is None
    assert cluster.queuescaler_object(ns, "invoice-worker") is None
    theirs = cluster.queuescaler_object(ns, "other-invoice-worker")
    assert theirs["metadata"]["finalizers"] == [THEIR_FINALIZER] and "deletionTimestamp" not in theirs["metadata"]


def used_verbs(cluster) -> set[tuple[str, str, str]]:
    verbs = {"GET": "list", "DELETE": "delete", "PATCH": "patch"}
    return {(r.resource.group, r.resource.plural, verbs[r.method]) for r in cluster.requests()
            if r.headers.get("User-Agent") != cluster.SETUP_AGENT and r.resource is not None
            and r.resource.plural}


def test_with_no_operator_left_it_removes_the_finalizers_itself_with_only_the_verbs_its_role_grants(
        cluster, ns, kubeconfig):
    finalized(cluster, ns, "email-worker", OURS, OUR_FINALIZER)
    finalized(cluster, ns, "other-email-worker", THEIRS, THEIR_FINALIZER)
    proc = run_cleanup(ns, "--force-after", "1", "--wait", "5")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no operator let email-worker go within 1s: removing their finalizers" in proc.stdout
    assert cluster.queuescaler_object(ns, "email-worker") is None
    assert cluster.queuescaler_object(ns, "other-email-worker")["metadata"]["finalizers"] == [THEIR_FINALIZER]

    docs = template(install_helm(), *helm_args([CHART / "ci" / "default-values.yaml"]))
    role = by_kind(docs, "Role")[component_name("operator-cleanup")]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert used_verbs(cluster) == granted


def test_it_refuses_to_run_without_a_selector(kubeconfig, ns):
    proc = subprocess.run([sys.executable, "-m", "queue_autoscaler.cleanup", "--namespace", ns, "--selector", " "],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "every QueueScaler would go" in proc.stderr
