"""The Kubernetes verbs the operator uses are exactly those listed in rbac-verbs.md.

The operator runs a whole life cycle against the emulator (a QueueScaler
appears, scales its Deployment, is deleted); every request kopf and the
operator's own client sent is turned into (apiGroup, resource, verb) as the
API server's authorizer would, and compared with the document the chart's
RBAC is checked against.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "rbac-verbs.md"


def documented() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) rows of the 'Verbs used' table of rbac-verbs.md."""
    text = DOC.read_text().split("## Verbs used", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0] == "apiGroup" or set(cells[0]) <= {"-"}:
            continue  # header and rule rows
        group = "" if cells[0] == "core" else cells[0]
        rows |= {(group, cells[1], verb.strip()) for verb in cells[2].split(",")}
    return rows


def authorizer_verb(request) -> str:
    """The verb Kubernetes' authorizer sees for one HTTP request."""
    if request.method == "GET":
        if request.name:
            return "get"
        return "watch" if request.params.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[request.method]


def used(requests) -> set[tuple[str, str, str]]:
    rows = set()
    for r in requests:
        agent = r.headers.get("User-Agent", "")
        if not agent.startswith(("kopf/", "queue-autoscaler")):
            continue  # the test's own setup calls
        if r.resource is None or not r.resource.plural:
            assert re.fullmatch(r"/(api|apis|version)(/.*)?", r.url.path), r.url
            continue  # discovery: non-resource URLs every authenticated user may GET
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        rows.add((r.resource.group or "", resource, authorizer_verb(r)))
    return rows


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_verbs_used_are_the_documented_ones(cluster, ns, work, operator, redis_url, wait_for, metrics_port):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(25)
    cluster.queuescaler(ns, "invoice", {
        "scaleTargetRef": {"name": "invoice-worker"}, "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
        "maxReplicaCount": 5, "targetBacklogPerReplica": 10, "pollingInterval": 1,
    })
    qs = f"/apis/scaling.booking-platform.io/v1alpha1/namespaces/{ns}/queuescalers/invoice"
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 3)
        wait_for(lambda: cluster.events(ns))
        assert f'namespace="{ns}"' in scrape(metrics_port)
        cluster.api("DELETE", qs)  # kopf then removes its finalizer
        wait_for(lambda: not any(o for (_, n, name), o in cluster.emulator.objects.items()
                                 if name == "invoice" and n == ns and not o.deleted))
        wait_for(lambda: f'namespace="{ns}"' not in scrape(metrics_port))  # no stale series left

    assert used(cluster.requests()) == documented()
