"""The operator's lightkube calls against KMock's emulator: the answers and the errors it maps.

The operator tests drive these through kopf; here each call's contract is pinned
on its own: replicas through the scale subresource only, HPAs as the dicts
`spec.hpa_conflicts` reads, a Secret key decoded, and every failure one KubeError
whose status tells a missing target (404) from an unreachable server (0).
"""

from __future__ import annotations

import asyncio

import pytest
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User

from queue_autoscaler.kube import KubeClient, KubeError


def config(server: str) -> KubeConfig:
    """A token user on `server`, as the tests' kubeconfig has."""
    return KubeConfig.from_one(cluster=Cluster(server=server), user=User(token="test"))  # noqa: S106 - the emulator takes any token


def run(server: str, call):
    """Run `call(client)` on a fresh KubeClient for `server`, closing it after."""
    async def go():
        client = KubeClient(config(server), timeout=2)
        try:
            return await call(client)
        finally:
            await client.close()
    return asyncio.run(go())


def test_replicas_are_read_and_set_through_the_scale_subresource_only(cluster, ns):
    cluster.deployment(ns, "invoice-worker", replicas=2)

    async def scale(client):
        before = (await client.get_scale(ns, "invoice-worker")).replicas
        await client.set_replicas(ns, "invoice-worker", 4)
        return before

    assert run(cluster.url, scale) == 2
    assert cluster.replicas(ns, "invoice-worker") == 4
    ours = [r for r in cluster.requests() if r.headers.get("User-Agent") != cluster.SETUP_AGENT]
    assert [(str(r.method), r.url.path) for r in ours] == [
        ("method.GET", f"/apis/apps/v1/namespaces/{ns}/deployments/invoice-worker/scale"),
        ("method.PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/invoice-worker/scale")]
    assert all(r.headers["Authorization"] == "Bearer test" for r in ours)
    assert ours[1].headers["Content-Type"] == "application/merge-patch+json"
    assert ours[1].data == {"spec": {"replicas": 4}}


def test_hpas_come_back_as_the_api_servers_dicts(cluster, ns):
    cluster.api("POST", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "cpu", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "invoice-worker"},
                 "minReplicas": 1, "maxReplicas": 3},
    })
    [hpa] = run(cluster.url, lambda client: client.list_hpas(ns))
    assert hpa["metadata"]["name"] == "cpu"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "invoice-worker"}


def test_a_secret_key_is_decoded_and_a_missing_key_named(cluster, ns):
    cluster.secret(ns, "redis", {"url": "redis://redis:6379/0"})
    assert run(cluster.url, lambda c: c.read_secret_key(ns, "redis", "url")) == "redis://redis:6379/0"
    with pytest.raises(KubeError, match="secret redis has no key 'password'") as missing:
        run(cluster.url, lambda c: c.read_secret_key(ns, "redis", "password"))
    assert missing.value.status == 404


def test_a_missing_deployment_is_a_404_naming_the_call(cluster, ns):
    with pytest.raises(KubeError, match="get deployments/nope/scale") as e:
        run(cluster.url, lambda c: c.get_scale(ns, "nope"))
    assert e.value.status == 404


def test_an_unreachable_server_is_status_0():
    with pytest.raises(KubeError, match="ConnectError") as e:
        run("http://127.0.0.1:9", lambda c: c.get_scale("ns", "invoice-worker"))  # discard port
    assert e.value.status == 0
