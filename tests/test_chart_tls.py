"""TLS to Postgres and Redis with a private CA: the chart mounts the bundle, the clients verify with it.

The chart half renders with the real helm: the bundle (a ConfigMap or a Secret) is
mounted at one path in every platform container, `PGSSLROOTCERT` names it to libpq,
and `extraVolumes`/`extraVolumeMounts` reach the same pods. The client half uses the
real TLS stacks (libpq through psycopg, redis-py through Python's ssl) against
servers on 127.0.0.1 whose certificates a CA made here with openssl signed: the
embedded Postgres and Redis are built without TLS, so the servers are stubs that
speak only what a handshake and a PING need.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
import redis

from helm_helpers import CHART, RELEASE, containers, helm_args, pod_specs, run_helm, template, validate_manifest

DEFAULT = CHART / "ci" / "default-values.yaml"
MOUNTED = "/etc/booking-platform/ca/ca.crt"
PLATFORM = ("api", "events", "relay", "email-worker", "invoice-worker", "audit-worker", "operator", "migrations",
            "test")
POSTGRES_CLIENTS = set(PLATFORM) - {"operator"}


def component_of(owner: dict) -> str:
    labels = owner["metadata"].get("labels", {}) if owner["kind"] == "Pod" else owner["spec"]["template"]["metadata"][
        "labels"]
    return labels["app.kubernetes.io/component"]


def test_the_ca_bundle_is_mounted_in_every_platform_container_and_named_to_libpq(helm):
    extra = {"extraVolumes[0].name": "client-cert", "extraVolumes[0].secret.secretName": "booking-client-cert",
             "extraVolumeMounts[0].name": "client-cert",
             "extraVolumeMounts[0].mountPath": "/etc/booking-platform/client", "extraVolumeMounts[0].readOnly": "true"}
    for source, flags in (("configMap", {"caBundle.configMap": "private-ca", "caBundle.key": "bundle.pem"}),
                          ("secret", {"caBundle.secret": "private-ca"})):
        docs = template(helm, *helm_args([DEFAULT], {**flags, **extra}))
        seen = set()
        for owner, spec in pod_specs(docs):
            component = component_of(owner)
            if component not in PLATFORM:
                continue
            seen.add(component)
            volumes = {v["name"]: v for v in spec["volumes"]}
            ca = volumes["ca-bundle"][source]
            assert ca.get("name", ca.get("secretName")) == "private-ca", component
            assert ca["items"] == [{"key": flags.get("caBundle.key", "ca.crt"), "path": "ca.crt"}], component
            assert volumes["client-cert"] == {"name": "client-cert", "secret": {"secretName": "booking-client-cert"}}
            for c in spec["containers"]:
                mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
                assert mounts["/etc/booking-platform/ca"] == {
                    "name": "ca-bundle", "mountPath": "/etc/booking-platform/ca", "readOnly": True}, component
                assert mounts["/etc/booking-platform/client"]["name"] == "client-cert"
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                assert (env.get("PGSSLROOTCERT") == MOUNTED) is (component in POSTGRES_CLIENTS), component
            validate_manifest(owner)
        assert seen == set(PLATFORM)
    plain = template(helm, *helm_args([DEFAULT]))
    assert not any(m["name"] == "ca-bundle" for _, c in containers(plain) for m in c.get("volumeMounts", []))
    assert not any(e["name"] == "PGSSLROOTCERT" for _, c in containers(plain) for e in c.get("env", []))
    both = run_helm(helm, "template", RELEASE, str(CHART), *helm_args([DEFAULT], {
        "caBundle.configMap": "a", "caBundle.secret": "b"}))
    assert both.returncode != 0 and "caBundle: set configMap or secret, not both" in both.stderr


# --- the clients, with a CA of their own ------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> Path:
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", f"/CN={name}", cwd=d)
    return d


def server_cert(ca: Path) -> ssl.SSLContext:
    """A server context whose certificate the CA signed, for 127.0.0.1."""
    (ca / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=127.0.0.1", cwd=ca)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "2", "-extfile", "san.cnf", cwd=ca)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca / "server.crt", ca / "server.key")
    return ctx


class Stub(threading.Thread):
    """A TLS server on 127.0.0.1: Postgres' SSLRequest, then TLS; or TLS, then Redis' PING and CLIENT replies."""

    def __init__(self, ctx: ssl.SSLContext, protocol: str):
        super().__init__(daemon=True)
        self.ctx, self.protocol = ctx, protocol
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with conn:
                    if self.protocol == "postgres":
                        conn.recv(8)  # SSLRequest
                        conn.sendall(b"S")
                    with self.ctx.wrap_socket(conn, server_side=True) as tls:
                        self.handshakes += 1
                        self.serve(tls)
            except (OSError, ssl.SSLError):
                continue

    def serve(self, tls: ssl.SSLSocket) -> None:
        if self.protocol == "postgres":
            tls.recv(4096)  # the startup message: the stub ends there
            return
        while data := tls.recv(4096):
            for command in data.split(b"*")[1:]:
                if b"HELLO" in command.upper():  # redis-py speaks RESP3 when the server agrees
                    tls.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                else:
                    tls.sendall(b"+PONG\r\n" if b"PING" in command.upper() else b"+OK\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def pki(tmp_path):
    ca, other = make_ca(tmp_path / "ca", "Bookings private CA"), make_ca(tmp_path / "other", "Someone else's CA")
    ctx = server_cert(ca)
    stubs = {p: Stub(ctx, p) for p in ("postgres", "redis")}
    for s in stubs.values():
        s.start()
    yield ca / "ca.crt", other / "ca.crt", stubs
    for s in stubs.values():
        s.close()


def rendered_pgsslrootcert(helm: str) -> str:
    docs = template(helm, *helm_args([DEFAULT], {"caBundle.configMap": "private-ca"}))
    [api] = [c for o, c in containers(docs) if component_of(o) == "api"]
    return {e["name"]: e.get("value") for e in api["env"]}["PGSSLROOTCERT"]


def test_libpq_verifies_postgres_with_the_bundle_the_chart_names(helm, pki, tmp_path, monkeypatch):
    bundle, wrong, stubs = pki
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt to fall back on
    url = f"postgresql://booking@127.0.0.1:{stubs['postgres'].port}/booking?sslmode=verify-full&connect_timeout=5"
    in_pod = rendered_pgsslrootcert(helm)
    assert in_pod == MOUNTED  # here the mounted file is `bundle`

    def connect_error(root: Path | None) -> str:
        if root is None:
            monkeypatch.delenv("PGSSLROOTCERT", raising=False)
        else:
            monkeypatch.setenv("PGSSLROOTCERT", in_pod.replace(MOUNTED, str(root)))
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(url)
        return str(e.value)

    assert "root certificate file" in connect_error(None)
    assert "certificate verify failed" in connect_error(wrong)
    before = stubs["postgres"].handshakes
    accepted = connect_error(bundle)  # the stub ends the session after TLS: verification passed
    assert "certificate" not in accepted and stubs["postgres"].handshakes == before + 1, accepted


def test_redis_py_verifies_redis_with_the_bundle_the_documented_url_names(pki):
    bundle, wrong, stubs = pki
    # The URL form values.yaml documents for caBundle, pointed at the stub and at the file mounted here.
    documented = re.search(r"rediss://\S+?(\?ssl_ca_certs=\S+?)`", (CHART / "values.yaml").read_text())
    assert documented and documented[1] == f"?ssl_ca_certs={MOUNTED}"
    base = f"rediss://127.0.0.1:{stubs['redis'].port}/0"
    assert redis.Redis.from_url(base + documented[1].replace(MOUNTED, str(bundle)), socket_timeout=5).ping() is True
    for url in (base, f"{base}?ssl_ca_certs={wrong}"):
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            redis.Redis.from_url(url, socket_timeout=5).ping()
