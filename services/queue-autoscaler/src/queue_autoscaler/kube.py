"""The few Kubernetes calls the operator makes itself (kopf makes the rest).

kopf is not a client library, and a full client would bring far more than
four requests need.  Credentials come from kopf's own public login helpers
(in-cluster service account first, then KUBECONFIG), so the operator and
kopf always talk to the same server as the same user.  Every call here is
listed in ../../rbac-verbs.md.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from typing import Any

import aiohttp
import kopf

#: Tells the operator's own calls apart from kopf's in API server audit logs (and in the tests).
USER_AGENT = "queue-autoscaler"


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def connection_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """Where and as whom to connect: the pod's service account, else the kubeconfig."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig: cannot reach Kubernetes")
    return info


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """TLS settings of the connection (False for a plain-http server such as a test emulator)."""
    if info.server.startswith("http://"):
        return False
    ctx = ssl.create_default_context(cafile=os.fspath(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        ctx.load_verify_locations(cadata=base64.b64decode(info.ca_data).decode())
    if info.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # load_cert_chain reads files only; these live for the duration of the call.
        with tempfile.NamedTemporaryFile() as c, tempfile.NamedTemporaryFile() as k:
            c.write(base64.b64decode(info.certificate_data))
            k.write(base64.b64decode(info.private_key_data))
            c.flush()
            k.flush()
            ctx.load_cert_chain(c.name, k.name)
    elif cert and key:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    return ctx


class KubeClient:
    """An aiohttp session to the API server, re-logging in once on 401 (rotated tokens)."""

    def __init__(self, settings: kopf.OperatorSettings, *, timeout: float = 10.0):
        self._settings = settings
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _open(self) -> aiohttp.ClientSession:
        info = connection_info(self._settings)
        self._server = info.server.rstrip("/")
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info))
        headers = {**info.as_http_headers(), "User-Agent": USER_AGENT}
        self._session = aiohttp.ClientSession(connector=connector, headers=headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, json: Any = None, content_type: str | None = None) -> Any:
        """One API call; the decoded JSON answer, or KubeError."""
        for attempt in (1, 2):
            session = self._session or self._open()
            headers = {"Content-Type": content_type} if content_type else {}
            try:
                async with session.request(method, self._server + path, json=json, headers=headers) as resp:
                    if resp.status == 401 and attempt == 1:
                        await self.close()
                        continue
                    body = await resp.json(content_type=None) if resp.content_length != 0 else None
                    if resp.status >= 400:
                        message = body.get("message") if isinstance(body, dict) else resp.reason
                        raise KubeError(resp.status, f"{method} {path}: {message}")
                    return body
            except (aiohttp.ClientError, TimeoutError) as e:
                raise KubeError(0, f"{method} {path}: {e!r}") from e
        raise KubeError(401, f"{method} {path}: unauthorized")

    # -- the calls the operator makes ---------------------------------------------
    async def get_replicas(self, namespace: str, deployment: str) -> int:
        """spec.replicas of the Deployment's scale subresource (get deployments/scale)."""
        scale = await self.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale")
        return int((scale.get("spec") or {}).get("replicas") or 0)

    async def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        """Merge-patch the scale subresource only (patch deployments/scale): nothing else changes."""
        await self.request(
            "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale",
            json={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")

    async def list_hpas(self, namespace: str) -> list[dict]:
        """HorizontalPodAutoscalers of the namespace (list horizontalpodautoscalers)."""
        body = await self.request("GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers")
        return list(body.get("items") or [])

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (get secrets)."""
        secret = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        data = secret.get("data") or {}
        if key not in data:
            raise KubeError(404, f"secret {name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()
