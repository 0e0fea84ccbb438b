"""API fixtures: the Flask app on the session's real Postgres and Redis."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from served_api import ServedApi

from booking_api import create_app
from booking_core.model import tenants
from booking_core.webhooks.sealing import new_key
from booking_embedded import free_port, listening_inodes
from e2e_helpers import wait_until


@pytest.fixture
def app(settings):
    """The app with webhooks on (a sealing key of its own), so every documented operation can succeed."""
    return create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, webhooks_keys=(new_key(),))})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(db_conn, tenant) -> str:
    """A client (non-admin) token of this test's tenant."""
    return tenants.create_token(db_conn, tenant["id"])["token"]


@pytest.fixture
def admin_token(db_conn, tenant) -> str:
    return tenants.create_token(db_conn, tenant["id"], admin=True)["token"]


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_auth(admin_token) -> dict:
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def booking_body():
    """Factory of a valid booking request, with overrides."""

    def make(**overrides) -> dict:
        body = {
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "item": "Sea-view room",
            "check_in": "2027-03-01",
            "check_out": "2027-03-04",
            "amount": "360.00",
            "currency": "EUR",
        }
        body.update(overrides)
        return body

    return make


@pytest.fixture
def gunicorn(settings, tmp_path):
    """gunicorn with both its workers listening; yields (http_port, metrics_port, process)."""
    http_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "BOOKING_REDIS_NAMESPACE": settings.redis_namespace, "BOOKING_METRICS_HOST": "127.0.0.1",
           "BOOKING_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "PYTHONUNBUFFERED": "1"}  # each log line in gunicorn.log as it is written
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:booking_api.gunicorn_conf",
         "booking_api.wsgi:app", "--bind", f"127.0.0.1:{http_port}", "--workers", "2", "--threads", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT)

    def serving() -> bool:
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        # gunicorn forks its workers up to 0.1 s apart: the first may answer before the second listens.
        if len(listening_inodes(http_port)) < 2:
            return False
        # A worker binds its socket right after the fork but takes SIGTERM only once its event loop
        # runs, which it logs; one stopped before then ignores the signal until the master kills it
        # at graceful_timeout (20 s): the teardown of a test that took 0.02 s.
        if (tmp_path / "gunicorn.log").read_text().count("ASGI server listening on") < 2:
            return False
        try:
            # Both: the master serves the metrics, each worker binds its own HTTP socket when it boots.
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5), \
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_until(serving, timeout=30, what="gunicorn to serve /healthz and /metrics")
        yield http_port, metrics_port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def served_api(database_url, redis_url, tmp_path_factory):
    """The API as the platform serves it: 2 workers × 4 threads, default deadlines (one per module)."""
    api = ServedApi(database_url, redis_url, tmp_path_factory.mktemp("api")).wait_serving()
    yield api
    api.stop()
