"""The Kubernetes verbs the operator uses, those rbac-verbs.md lists and those the chart grants are one set.

The operator runs a whole life cycle against the emulator (a QueueScaler
appears, scales its Deployment up and, marking the idle pods, down, is deleted), standalone and with kopf peering;
every request not sent by the test itself (kopf's, and those of the
operator's lightkube client, whatever their User-Agent) is turned into
(apiGroup, resource, verb) as the API server's authorizer would, and compared
with the document.  The chart, rendered by the real helm, must grant exactly
the document's set too: nothing missing, nothing more.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_helpers import local_metrics
from helm_helpers import CHART, by_kind, component_name, helm_args, template

DOC = Path(__file__).resolve().parents[1] / "rbac-verbs.md"
BASE, PEERING = "Verbs used", "Only with peering"
PEERING_NAME = "booking-platform"

Verb = tuple[str, str, str]  # (apiGroup, resource, verb); "" is the core group


def documented(section: str = BASE) -> set[Verb]:
    """(apiGroup, resource, verb) rows of one table of rbac-verbs.md ('## <section>')."""
    text = DOC.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0] == "apiGroup" or set(cells[0]) <= {"-"}:
            continue  # header and rule rows
        group = "" if cells[0] == "core" else cells[0]
        rows |= {(group, cells[1], verb.strip()) for verb in cells[2].split(",")}
    assert rows, f"no table under '## {section}' in {DOC.name}"
    return rows


def expected(peering: bool) -> set[Verb]:
    return documented(BASE) | (documented(PEERING) if peering else set())


def test_the_document_lists_disjoint_base_and_peering_verbs():
    assert documented(BASE) and documented(PEERING)
    assert not documented(BASE) & documented(PEERING)
    assert {g for g, _, _ in documented(PEERING)} == {"kopf.dev"}


# -- what the operator really asks of the API server ------------------------------------
def authorizer_verb(request) -> str:
    """The verb Kubernetes' authorizer sees for one HTTP request."""
    if request.method == "GET":
        if request.name:
            return "get"
        return "watch" if request.params.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[request.method]


def used(cluster) -> set[Verb]:
    """(apiGroup, resource, verb) of every request the emulator served, but the test's own."""
    rows = set()
    for r in cluster.requests():
        if r.headers.get("User-Agent") == cluster.SETUP_AGENT:
            continue  # the test's own setup calls
        if r.resource is None or not r.resource.plural:
            assert re.fullmatch(r"/(api|apis|version)(/.*)?", r.url.path), r.url
            continue  # discovery: non-resource URLs every authenticated user may GET
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        rows.add((r.resource.group or "", resource, authorizer_verb(r)))
    return rows


@pytest.mark.parametrize("peering", [False, True], ids=["standalone", "peering"])
def test_verbs_used_are_the_documented_ones(peering, cluster, ns, work, operator, redis_url, wait_for,
                                            metrics_port):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    if peering:
        cluster.kopf_peering(ns, PEERING_NAME)
    for i in range(3):
        cluster.pod(ns, f"invoice-worker-{i}", {"app": "invoice-worker"})
    work.send(25)
    cluster.queuescaler(ns, "invoice", {
        "scaleTargetRef": {"name": "invoice-worker"}, "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
        "maxReplicaCount": 5, "targetBacklogPerReplica": 10, "pollingInterval": 1, "stabilizationWindowSeconds": 1,
    })
    qs = f"/apis/scaling.booking-platform.io/v1alpha1/namespaces/{ns}/queuescalers/invoice"
    with operator(peering=PEERING_NAME if peering else None):
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 3)
        wait_for(lambda: cluster.events(ns))
        work.drain_ready()  # the work is done: a scale-down, which marks the idle pods first
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 1)
        assert f'namespace="{ns}"' in local_metrics(metrics_port)
        cluster.api("DELETE", qs)  # kopf then removes its finalizer
        wait_for(lambda: not any(o for (_, n, name), o in cluster.emulator.objects.items()
                                 if name == "invoice" and n == ns and not o.deleted))
        wait_for(lambda: f'namespace="{ns}"' not in local_metrics(metrics_port))  # no stale series left

    assert used(cluster) == expected(peering)


# -- what the chart grants -----------------------------------------------------------------

def granted(role: dict) -> set[Verb]:
    """(apiGroup, resource, verb) a Role's rules allow, one row per combination."""
    return {(g, r, v) for rule in role["rules"]
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("peering", [False, True], ids=["standalone", "peering"])
def test_the_charts_operator_role_grants_exactly_the_documented_verbs(helm, peering):
    docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml"],
                                     set_values={"operator.peering.enabled": str(peering).lower()}))
    op = by_kind(docs, "Deployment")[component_name("operator")]
    command = op["spec"]["template"]["spec"]["containers"][0]["command"]
    assert (f"--peering={component_name('operator')}" in command) is peering
    assert ("--standalone" in command) is not peering
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    role = by_kind(docs, "Role")[component_name("operator")]

    have, want = granted(role), expected(peering)
    assert not want - have, f"the operator uses verbs the chart does not grant: {sorted(want - have)}"
    assert not have - want, f"the chart grants verbs the operator never uses: {sorted(have - want)}"
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "nonResourceURLs" not in rule

    # Secrets: only the one the QueueScalers read the Redis URL from, by name.
    secret_rules = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    refs = {qs["spec"]["redis"]["urlSecretRef"]["name"] for qs in by_kind(docs, "QueueScaler").values()}
    assert refs and [rule["resourceNames"] for rule in secret_rules] == [sorted(refs)]
    assert all("resourceNames" not in rule for rule in role["rules"] if rule not in secret_rules)
