"""The Kubernetes calls the operator makes itself, through lightkube.

kopf watches the QueueScalers, patches their status and posts their Events
(`kopf.info`/`kopf.warn`), but it has no public client for anything else: the
`scale` subresource, HPAs, Secrets and the target's pods (their
pod-deletion-cost, before a scale-down) need one.  lightkube was chosen over
kubernetes-asyncio (26 MB of generated code for four calls) and kr8s (its
`scale()` patches the Deployment itself and polls it, which needs `get`/`patch`
on `deployments` that the Role does not grant): it is small, async, typed, has
`Deployment.Scale` as a resource of its own, and logs in as kopf does.

Credentials: `KubeConfig.from_env()`, the pod's service account first (its
token file re-read on a 401, as client-go does when the kubelet rotates it),
else the one file named by KUBECONFIG (or ~/.kube/config).  The operator's
`@kopf.on.login` takes the same order, so both talk to one server as one user.
Every call here is listed in ../../rbac-verbs.md.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import PatchType

from queue_autoscaler.deletion_cost import ANNOTATION, PodView


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def _message(e: httpx2.HTTPStatusError) -> str:
    """The API server's own words: a Status object's message, else the HTTP reason."""
    if isinstance(e, ApiError) and e.status.message:
        return e.status.message
    try:  # a Status served as "application/json; charset=..." is not parsed by lightkube
        body = e.response.json()
    except ValueError:
        body = None
    return (body.get("message") if isinstance(body, dict) else None) or e.response.reason_phrase


@asynccontextmanager
async def call(what: str) -> AsyncIterator[None]:
    """Turn lightkube's and httpx2's errors into one KubeError naming the call."""
    try:
        yield
    except httpx2.HTTPStatusError as e:
        raise KubeError(e.response.status_code, f"{what}: {_message(e)}") from e
    except (httpx2.HTTPError, ConfigError, OSError) as e:
        raise KubeError(0, f"{what}: {e!r}") from e


@dataclass(frozen=True)
class TargetScale:
    """What a Deployment's scale subresource reports: its replicas and the label selector of its pods."""

    deployment: str
    replicas: int
    #: `status.selector` (`k=v,...`); None when the subresource reports none.
    selector: str | None = None

    def pod_selector(self) -> str:
        """The selector, or KubeError when there is none (the pods cannot be listed then)."""
        if not self.selector:
            raise KubeError(0, f"deployments/{self.deployment}/scale reports no pod selector")
        return self.selector


class KubeClient:
    """The operator's calls, on one lightkube AsyncClient (one connection pool)."""

    def __init__(self, config: KubeConfig | None = None, *, timeout: float = 10.0):
        self._client = AsyncClient(config or KubeConfig.from_env(), timeout=httpx2.Timeout(timeout))

    async def close(self) -> None:
        await self._client.close()

    async def get_scale(self, namespace: str, deployment: str) -> TargetScale:
        """The Deployment's scale subresource: its replicas and its pods' selector (get deployments/scale).

        One read gives both, so a poll reads the subresource once, whatever it then needs.
        """
        async with call(f"get deployments/{deployment}/scale"):
            scale = await self._client.get(Deployment.Scale, deployment, namespace=namespace)
        return TargetScale(deployment, int(scale.spec.replicas or 0) if scale.spec else 0,
                           (scale.status.selector if scale.status else None) or None)

    async def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        """Merge-patch the scale subresource only (patch deployments/scale): nothing else changes."""
        async with call(f"patch deployments/{deployment}/scale"):
            await self._client.patch(Deployment.Scale, deployment, {"spec": {"replicas": replicas}},
                                     namespace=namespace, patch_type=PatchType.MERGE)

    async def list_pods(self, namespace: str, selector: str) -> list[PodView]:
        """The pods matching `selector` that are not already terminating, with their deletion cost and creation
        time (list pods)."""
        async with call("list pods"):
            pods = [pod async for pod in self._client.list(Pod, namespace=namespace, labels=_selector(selector))]
        return [PodView(pod.metadata.name, (pod.metadata.annotations or {}).get(ANNOTATION),
                        pod.metadata.creationTimestamp.timestamp() if pod.metadata.creationTimestamp else None)
                for pod in pods if pod.metadata and pod.metadata.name and not pod.metadata.deletionTimestamp]

    async def set_deletion_cost(self, namespace: str, pod: str, cost: int | None) -> None:
        """Merge-patch one pod's pod-deletion-cost annotation; None removes it (patch pods)."""
        value = None if cost is None else str(cost)
        async with call(f"patch pods/{pod}"):
            await self._client.patch(Pod, pod, {"metadata": {"annotations": {ANNOTATION: value}}},
                                     namespace=namespace, patch_type=PatchType.MERGE)

    async def list_hpas(self, namespace: str) -> list[dict]:
        """HorizontalPodAutoscalers of the namespace as plain dicts (list horizontalpodautoscalers)."""
        async with call("list horizontalpodautoscalers"):
            return [hpa.to_dict() async for hpa in self._client.list(HorizontalPodAutoscaler, namespace=namespace)]

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (get secrets)."""
        async with call(f"get secrets/{name}"):
            secret = await self._client.get(Secret, name, namespace=namespace)
        data = secret.data or {}
        if key not in data:
            raise KubeError(404, f"secret {name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()


#: One equality term of a label selector: a label key (optional DNS prefix), `=` or `==`, a label value.
_EQUALITY = re.compile(r"(?P<key>(?:[a-z0-9.-]+/)?[A-Za-z0-9][-A-Za-z0-9_.]*)==?(?P<value>[A-Za-z0-9_.-]*)")


def _selector(text: str) -> dict[str, str]:
    """A scale subresource's `status.selector` (`k=v,k2=v2`) as lightkube's label filter.

    A Deployment's selector may also hold set-based terms (`matchExpressions`); those are
    refused rather than dropped, since a wider selector could list pods of another workload.
    """
    labels: dict[str, str] = {}
    for term in text.split(","):
        match = _EQUALITY.fullmatch(term.strip())
        if match is None:
            raise KubeError(0, f"pod selector {text!r}: only key=value terms are supported")
        labels[match["key"]] = match["value"]
    return labels
