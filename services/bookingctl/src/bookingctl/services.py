"""The platform's own processes as `bookingctl up` starts them.

Each is started by its installed entry point (gunicorn, booking-relay,
dramatiq), never imported, exactly as its container image runs it.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORKERS = {
    "email": ("email_worker.broker", "email_worker.actors"),
    "invoice": ("invoice_worker.broker", "invoice_worker.actors"),
    "audit": ("audit_worker.broker", "audit_worker.actors"),
}

#: Dramatiq waits this long for running messages on SIGTERM before requeueing them.
WORKER_SHUTDOWN_TIMEOUT_MS = 30_000
#: An idle Dramatiq consumer polls Redis at most this far apart (its default, 1 s,
#: adds up to a second before a new booking's work is picked up).  Dramatiq reads
#: it from the `dramatiq_worker_timeout` environment variable.
WORKER_POLL_TIMEOUT_MS = 200


def executable(name: str) -> str:
    """The entry point `name` next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (run `make up` or `uv sync`)")
    return found


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one of the platform's processes."""

    name: str
    argv: list[str]
    stop_timeout: float
    env: dict[str, str] = field(default_factory=dict)
    metrics_url: str | None = None


def api(port: int, run_dir: Path, *, workers: int = 2, threads: int = 4,
        metrics_port: int | None = None) -> ServiceSpec:
    """gunicorn with the API; its master serves every worker's metrics on a port apart from the HTTP one."""
    from bookingctl.embedded import free_port

    metrics_port = metrics_port or free_port()
    return ServiceSpec("api", [
        executable("gunicorn"), "-c", "python:booking_api.gunicorn_conf", "booking_api.wsgi:app",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
    ], stop_timeout=30, env={"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus-api"),
                             "BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": str(metrics_port)},
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


def relay(metrics_port: int) -> ServiceSpec:
    """The outbox relay (its own service, `booking-relay`); metrics on 127.0.0.1 only."""
    return ServiceSpec("relay", [executable("booking-relay")], stop_timeout=15,
                       env={"BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": str(metrics_port)},
                       metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


def worker(queue: str, index: int, metrics_port: int, run_dir: Path, *, threads: int = 4) -> ServiceSpec:
    """One `dramatiq` process for `queue`; Dramatiq's Prometheus middleware serves its metrics."""
    broker_module, actors_module = WORKERS[queue]
    name = f"{queue}-worker-{index}"
    return ServiceSpec(name, [
        executable("dramatiq"), broker_module, actors_module, "--queues", queue,
        "--processes", "1", "--threads", str(threads),
        "--worker-shutdown-timeout", str(WORKER_SHUTDOWN_TIMEOUT_MS),
    ], stop_timeout=WORKER_SHUTDOWN_TIMEOUT_MS / 1000 + 10, env={
        "dramatiq_worker_timeout": str(WORKER_POLL_TIMEOUT_MS),
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(metrics_port),
        "dramatiq_prom_db": str(run_dir / f"prometheus-{name}"),
    }, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
