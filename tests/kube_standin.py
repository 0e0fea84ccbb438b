"""A Kubernetes API stand-in for `helm --dry-run=server`: KMock's emulator on 127.0.0.1.

No API server can run on these machines. KMock's emulator serves discovery and the
object calls helm makes while rendering (`lookup` included), so the chart's
cluster-side branches can be rendered for real. Two answers are corrected to what a
real server says: `/version` reports the Kubernetes the chart requires (KMock says
1.26), the core group's discovery names its groupVersion `v1` (KMock says `/v1`,
which client-go's resource mapping does not recognise), and a list carries its
`kind` and `apiVersion` (which helm's `lookup` needs to decode it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.request
import warnings
from pathlib import Path

import kmock


class _Emulator(kmock.KubernetesEmulator):
    async def _serve_server_version(self, request):
        version = await super()._serve_server_version(request)
        return {**version, "minor": "35", "gitVersion": "v1.35.0"}

    async def _serve_list(self, request):
        payload = await super()._serve_list(request)
        info = self.resources[request.resource]
        group = f"{request.resource.group}/" if request.resource.group else ""
        return {"kind": f"{info.kind}List", "apiVersion": f"{group}{request.resource.version}", **payload}

    async def _serve_version(self, request):
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion") == "/v1":
            payload = {**payload, "groupVersion": "v1"}
        return payload


def load_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Discovery as a real cluster answers it: Kubernetes' own resources plus the QueueScaler CRD."""
    with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        emulator.resources.load_bundled()
    emulator.resources["scaling.booking-platform.io/v1alpha1/queuescalers"] = kmock.ResourceInfo(
        kind="QueueScaler", singular="queuescaler", namespaced=True, shortnames={"qs"},
        subresources={"status"}, verbs={"get", "list", "watch", "patch", "create", "delete", "update"})


class EmulatorThread:
    """A KMock emulator (of class `emulator_class`) served on 127.0.0.1 from a thread and loop of its own,
    so the tests that drive it stay synchronous; `start()`, `stop()`, `url`."""

    def __init__(self, emulator_class: type[kmock.KubernetesEmulator]):
        self.emulator_class = emulator_class
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kmock", daemon=True)
        self.emulator: kmock.KubernetesEmulator | None = None
        self.server: kmock.Server | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._enter(), self.loop).result(10)

    async def _enter(self) -> None:
        self.emulator = self.emulator_class()
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator)
        await self.server.__aenter__()
        load_resources(self.emulator)

    def stop(self) -> None:
        async def _exit() -> None:
            await self.server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(_exit(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return str(self.server.url).rstrip("/")


class KubeStandIn(EmulatorThread):
    """The emulator with a real server's answers; `kubeconfig` points helm at it."""

    def __init__(self, tmp_path: Path):
        super().__init__(_Emulator)
        self.kubeconfig = tmp_path / "kubeconfig"

    def __enter__(self) -> KubeStandIn:
        self.start()
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}]}))
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def create_secret(self, namespace: str, name: str, data: dict[str, str], *, release: str | None = None) -> None:
        """A Secret as kubectl would make it, or with `release` as `helm install` does (its ownership marks)."""
        meta: dict = {"name": name, "namespace": namespace}
        if release:
            meta["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
            meta["annotations"] = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        req = urllib.request.Request(f"{self.url}/api/v1/namespaces/{namespace}/secrets", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10):
            pass
