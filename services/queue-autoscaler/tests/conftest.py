"""Fixtures: KMock's Kubernetes emulator, Dramatiq queues in real Redis, the operator.

The emulator runs on its own thread and event loop, so tests stay synchronous
(as kopf.testing.KopfRunner expects) and talk to it over HTTP like kubectl
would: creating and patching through the API makes the emulator stream watch
events to the operator.  The operator runs in-process under KopfRunner.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp.web
import dramatiq
import kmock
import kopf
import pytest
from dramatiq.brokers.redis import RedisBroker
from kopf.testing import KopfRunner

from booking_embedded import free_port
from booking_scaling import podload
from e2e_helpers import wait_until
from kube_standin import EmulatorThread

CRD = Path(__file__).resolve().parents[3] / "charts/booking-platform/crds/queuescalers.yaml"
QS = "/apis/scaling.booking-platform.io/v1alpha1/namespaces/{ns}/queuescalers"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
HPAS = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"


class Emulator(kmock.KubernetesEmulator):
    """KMock's emulator plus three things a real API server does: a name from generateName (kopf's Events),
    a list filtered by an equality `labelSelector`, and 403 Forbidden for what RBAC does not grant
    (`forbidden`: (HTTP method, resource plural) pairs a test refuses)."""

    forbidden: set[tuple[str, str]]

    async def _handle(self, request):
        meta = request.data.get("metadata") if isinstance(request.data, dict) else None
        if request.method == "POST" and meta and meta.get("generateName") and not meta.get("name"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        plural = request.resource.plural if request.resource is not None else None
        method = getattr(request.method, "value", request.method)
        if (method, plural) in getattr(self, "forbidden", set()):
            return aiohttp.web.json_response(status=403, data={
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": f'{plural} is forbidden: User "system:serviceaccount:test:operator" cannot '
                           f"{str(method).lower()} resource {plural!r}"})
        return await super()._handle(request)

    async def _serve_list(self, request):
        payload = await super()._serve_list(request)
        wanted = dict(term.split("=", 1) for term in request.params.get("labelSelector", "").split(",") if term)
        if wanted:
            payload["items"] = [item for item in payload["items"]
                                if wanted.items() <= (item.get("metadata", {}).get("labels") or {}).items()]
        return payload


class Cluster(EmulatorThread):
    """KMock's KubernetesEmulator (with kopf's Events named) on 127.0.0.1, driven from the test thread over HTTP.

    kopf waits for namespaces, CRDs and events to be discoverable, and for the QueueScaler CRD:
    `load_resources` gives it both.
    """

    #: The User-Agent of the tests' own calls: every other request came from kopf or the operator.
    SETUP_AGENT = "queue-autoscaler-tests"

    def __init__(self) -> None:
        super().__init__(Emulator)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One HTTP call to the emulator, as kubectl would make it."""
        data = json.dumps(body).encode() if body is not None else None
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype, "User-Agent": self.SETUP_AGENT})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def requests(self) -> list[Any]:
        """Every request the emulator has served so far."""
        return list(self.emulator)

    # -- objects the tests use ----------------------------------------------------
    def deployment(self, ns: str, name: str, replicas: int) -> None:
        self.api("POST", DEPLOYMENTS.format(ns=ns), {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
            # The scale subresource of a real API server reports the pods' selector there;
            # KMock serves the Deployment itself as its scale, so the test object carries it.
            "status": {"replicas": replicas, "selector": f"app={name}"},
        })

    def pod(self, ns: str, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None,
            created: str = "2026-01-01T00:00:00Z") -> None:
        self.api("POST", f"/api/v1/namespaces/{ns}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations or {},
                         "creationTimestamp": created},
        })

    def replicas(self, ns: str, name: str) -> int:
        return self.api("GET", DEPLOYMENTS.format(ns=ns) + f"/{name}")["spec"]["replicas"]

    def secret(self, ns: str, name: str, data: dict[str, str]) -> None:
        self.api("POST", f"/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        })

    def queuescaler(self, ns: str, name: str, spec: dict, labels: dict[str, str] | None = None,
                    finalizers: list[str] | None = None, status: dict | None = None) -> None:
        """Create a QueueScaler; `finalizers` as an operator left them (in the same request: KMock keeps one
        resourceVersion, so kopf could not tell a later patch's event from the first one)."""
        meta = {"name": name, "namespace": ns, "generation": 1, "resourceVersion": "1", "uid": str(uuid.uuid4()),
                "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels or {}}
        if finalizers:
            meta["finalizers"] = finalizers
        self.api("POST", QS.format(ns=ns), {
            "apiVersion": "scaling.booking-platform.io/v1alpha1", "kind": "QueueScaler", "metadata": meta,
            "spec": spec, **({"status": status} if status else {}),
        })

    def queuescaler_object(self, ns: str, name: str) -> dict | None:
        """The QueueScaler as the API server holds it (None once it is gone)."""
        try:
            return self.api("GET", QS.format(ns=ns) + f"/{name}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def patch_queuescaler(self, ns: str, name: str, patch: dict) -> None:
        self.api("PATCH", QS.format(ns=ns) + f"/{name}", patch)

    def kopf_peering(self, ns: str, name: str) -> None:
        """kopf's KopfPeering CRD (kopf.dev/v1, as kopf's peering.yaml declares it: no status
        subresource) made discoverable, and one KopfPeering object for `--peering=<name>`."""
        self.emulator.resources["kopf.dev/v1/kopfpeerings"] = kmock.ResourceInfo(
            kind="KopfPeering", singular="kopfpeering", namespaced=True,
            verbs={"get", "list", "watch", "patch", "create", "delete", "update"})
        self.api("POST", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        })

    def status(self, ns: str, name: str) -> dict:
        try:
            return self.api("GET", QS.format(ns=ns) + f"/{name}").get("status") or {}
        except urllib.error.HTTPError:
            return {}

    def events(self, ns: str) -> list[dict]:
        return self.api("GET", f"/api/v1/namespaces/{ns}/events").get("items", [])


class WorkQueue:
    """One Dramatiq queue in real Redis, filled and consumed through Dramatiq's RedisBroker."""

    def __init__(self, redis_url: str, namespace: str, queue: str = "invoice"):
        self.namespace, self.queue = namespace, queue
        self.broker = RedisBroker(url=redis_url, namespace=namespace)

        @dramatiq.actor(broker=self.broker, queue_name=queue, actor_name="issue_invoice")
        def issue_invoice(n: int) -> None:  # pragma: no cover - never run: the tests play the worker
            pass

        self.actor = issue_invoice
        self.consumers: list[Any] = []

    def send(self, count: int, *, delay_ms: int | None = None) -> None:
        for i in range(count):
            if delay_ms is None:
                self.actor.send(i)
            else:
                self.actor.send_with_options(args=(i,), delay=delay_ms)

    def take(self, count: int) -> list[Any]:
        """Fetch `count` messages as a worker would: they are in flight until acked."""
        consumer = self.broker.consume(self.queue, prefetch=count, timeout=100)
        self.consumers.append(consumer)
        taken: list[Any] = []
        deadline = time.monotonic() + 10
        while len(taken) < count and time.monotonic() < deadline:
            message = next(consumer)
            if message is not None:
                taken.append((consumer, message))
        assert len(taken) == count, f"fetched {len(taken)} of {count}"
        return taken

    def finish(self, taken: list[Any]) -> None:
        for consumer, message in taken:
            consumer.ack(message)

    def drain_ready(self) -> None:
        """Take and finish every ready message (a burst of work done)."""
        ready = self.broker.client.llen(f"{self.namespace}:{self.queue}")
        if ready:
            self.finish(self.take(ready))

    def clear_delayed(self) -> None:
        self.broker.client.delete(f"{self.namespace}:{self.queue}.DQ", f"{self.namespace}:{self.queue}.DQ.msgs")

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.close()
        self.broker.close()


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """`e2e_helpers.wait_until` with this suite's 20 s default: poll `check` until it is truthy."""
    return wait_until(check, timeout=timeout, interval=interval, what="the condition")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def ns() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def work(redis_url) -> Iterator[WorkQueue]:
    queue = WorkQueue(redis_url, f"qa-{uuid.uuid4().hex[:8]}")
    yield queue
    queue.close()


@pytest.fixture
def kubeconfig(cluster, tmp_path, monkeypatch) -> Path:
    """A kubeconfig pointing at the emulator: kopf and the operator's lightkube client both log in with it."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": cluster.url}}],
        "users": [{"name": "kmock", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def metrics_port(monkeypatch) -> int:
    port = free_port()
    monkeypatch.setenv("QUEUE_AUTOSCALER_METRICS_PORT", str(port))
    monkeypatch.setenv("QUEUE_AUTOSCALER_METRICS_HOST", "127.0.0.1")
    return port


@pytest.fixture
def liveness_port() -> int:
    return free_port()


@pytest.fixture
def operator(kubeconfig, metrics_port, liveness_port, ns, monkeypatch) -> Iterator[Callable[[], KopfRunner]]:
    """A factory of KopfRunners for `kopf run -m queue_autoscaler.operator` on the test namespace."""
    monkeypatch.setenv("QUEUE_AUTOSCALER_TICK_SECONDS", "0.2")
    monkeypatch.setenv("QUEUE_AUTOSCALER_REDIS_TIMEOUT_SECONDS", "0.5")

    runners: list[KopfRunner] = []

    def make(peering: str | None = None) -> KopfRunner:
        """`--standalone`, or with `peering` set `--peering=<peering>` (the KopfPeering must exist)."""
        # Each run imports the handler module anew into a registry of its own: kopf's default
        # registry is process-wide, so a second run would otherwise hold every handler twice.
        sys.modules.pop("queue_autoscaler.operator", None)
        mode = f"--peering={peering}" if peering else "--standalone"
        runners.append(KopfRunner(
            ["run", mode, "--namespace", ns, "-m", "queue_autoscaler.operator", "--verbose",
             f"--liveness=http://127.0.0.1:{liveness_port}/healthz"],
            registry=kopf.OperatorRegistry(), timeout=30,
        ))
        return runners[-1]

    yield make
    for runner in runners:  # shown by pytest only when the test failed
        if runner.future.done():
            print("\n".join(line for line in runner.output.splitlines() if "aiohttp.access" not in line))


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    """`wait_for(check, timeout=20)`: the polling helper, as a fixture (conftest is not importable)."""
    return wait_for


@pytest.fixture
def pod_records():
    """`with pod_records(work, {broker id: (pod, seconds idle or None, boot epoch s or None)}):` worker
    processes stamping their pod records (booking_scaling.podload) every second, as presence does."""

    @contextmanager
    def stamping(work: WorkQueue, workers: dict[str, tuple[str, float | None, float | None]]) -> Iterator[None]:
        stop = threading.Event()
        started = time.time()

        def stamp() -> None:
            while True:
                now_ms = int(time.time() * 1000)
                pipe = work.broker.client.pipeline(transaction=False)
                for worker_id, (pod, idle, boot) in workers.items():
                    last = None if idle is None else int((started - idle) * 1000)
                    podload.add(pipe, work.namespace, [work.queue], worker_id, pod, last, now_ms,
                                None if boot is None else int(boot * 1000))
                pipe.execute()
                if stop.wait(1):
                    return

        thread = threading.Thread(target=stamp, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    return stamping
