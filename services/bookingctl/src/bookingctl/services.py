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
    "webhook": ("webhook_worker.broker", "webhook_worker.actors"),
}
#: Threads per worker process, where a queue's work is not CPU but waiting: a webhook
#: attempt mostly waits on someone else's server (up to its 15 s timeout).  The local
#: autoscaler's replicaConcurrency is read from here (`worker_threads`), so the two agree.
WORKER_THREADS = {"webhook": 16}
DEFAULT_WORKER_THREADS = 4


def worker_threads(queue: str) -> int:
    """Threads of one `dramatiq` process of `queue`: the messages it works on at once."""
    return WORKER_THREADS.get(queue, DEFAULT_WORKER_THREADS)

#: How much lower the async side's CPU priority is than the request path's (nice
#: increment).  All children share bookingctl's session, hence one autogroup,
#: where nice orders them: when both compete, the API (and the Postgres it
#: shares with the workers, left at 0) win the CPU and the backlog drains with
#: what is left.  The relay, the workers, and the servers only the async side
#: uses (Redis, the SMTP sink) run at this nice, and so do the Postgres backends
#: serving their connections (booking_core.db.backend_nice).
ASYNC_NICE = 10
#: What every async-side child gets in its environment for that.
ASYNC_ENV = {"BOOKING_DB_BACKEND_NICE": str(ASYNC_NICE)}

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
    nice: int = 0
    cpu_idle: bool = False


def api(port: int, run_dir: Path, *, workers: int = 2, threads: int = 4,
        metrics_port: int | None = None, env: dict[str, str] | None = None) -> ServiceSpec:
    """gunicorn with the API; its master serves every worker's metrics on a port apart from the HTTP one."""
    from booking_embedded import free_port

    metrics_port = metrics_port or free_port()
    return ServiceSpec("api", [
        executable("gunicorn"), "-c", "python:booking_api.gunicorn_conf", "booking_api.wsgi:app",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
    ], stop_timeout=30, env={"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus-api"),
                             "BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": str(metrics_port),
                             **(env or {})},
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


def relay(metrics_port: int) -> ServiceSpec:
    """The outbox relay (its own service, `booking-relay`): async side, so it yields the CPU to the API."""
    return ServiceSpec("relay", [executable("booking-relay")], stop_timeout=15,
                       env={"BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": str(metrics_port),
                            **ASYNC_ENV},
                       metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", nice=ASYNC_NICE)


#: How long Dramatiq's parent waits for its worker process to boot before it starts the metrics fork.
WORKER_FORK_TIMEOUT_MS = 600_000


def worker(queue: str, index: int, metrics_port: int, run_dir: Path, *, threads: int | None = None,
           cpu_idle: bool = True) -> ServiceSpec:
    """One `dramatiq` process for `queue`; Dramatiq's Prometheus middleware serves its metrics.

    It runs at nice ASYNC_NICE and, beyond that, at SCHED_IDLE (`cpu_idle`):
    a request's thread or Postgres backend that wakes then takes the CPU from
    a rendering worker at once rather than after the worker's slice.  Measured
    on 2 cores while a backlog drained (bench/README, "Workers at SCHED_IDLE"):
    the dashboard's median stayed at its idle value instead of doubling.  The
    workers' Postgres backends, Redis and the relay stay at nice 10: a request
    may wait on a backend's lock, and an idle-class holder would keep it waiting.
    Without `cpu_idle` (BOOKING_WORKERS_CPU_IDLE=false) it runs at nice 10 alone.
    """
    broker_module, actors_module = WORKERS[queue]
    threads = threads or worker_threads(queue)
    name = f"{queue}-worker-{index}"
    return ServiceSpec(name, [
        executable("dramatiq"), broker_module, actors_module, "--queues", queue,
        "--processes", "1", "--threads", str(threads),
        "--worker-shutdown-timeout", str(WORKER_SHUTDOWN_TIMEOUT_MS),
        # Dramatiq starts the metrics fork only once the worker process has loaded its modules, and
        # waits for that at most this long (30 s by default) before going on without it: an invoice
        # worker importing WeasyPrint on a busy machine took longer, and never served /metrics.
        "--worker-fork-timeout", str(WORKER_FORK_TIMEOUT_MS),
    ], stop_timeout=WORKER_SHUTDOWN_TIMEOUT_MS / 1000 + 10, env={
        "dramatiq_worker_timeout": str(WORKER_POLL_TIMEOUT_MS),
        # One message per thread, not Dramatiq's two: what a worker prefetches has left the
        # relay's fair ordering, so the less it holds the sooner a quiet tenant's task starts.
        "dramatiq_queue_prefetch": str(threads),
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(metrics_port),
        "dramatiq_prom_db": str(run_dir / f"prometheus-{name}"),
        # Its presence names it (not the shared host name): a scale-down finds the idlest by this name.
        "BOOKING_WORKER_HOST": name,
        **ASYNC_ENV,
    }, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", nice=ASYNC_NICE, cpu_idle=cpu_idle)


def events_env(data_dir: Path, port: int, caller_env: dict[str, str]) -> dict[str, str]:
    """What the API and the events service share: the events service's URL and the status-page secret.

    The secret is generated once into DATA_DIR/status-secret (mode 0600) unless the caller
    gives BOOKING_STATUS_SECRET; deleting the file and restarting revokes every page link.
    """
    import secrets

    from bookingctl.datadir import write_secret

    secret = caller_env.get("BOOKING_STATUS_SECRET")
    if not secret:
        path = data_dir / "status-secret"
        if not path.exists():
            write_secret(path, secrets.token_urlsafe(32))
        secret = path.read_text().strip()
    return {"BOOKING_STATUS_SECRET": secret, "BOOKING_EVENTS_BASE_URL": f"http://127.0.0.1:{port}"}


def webhooks_env(data_dir: Path, caller_env: dict[str, str]) -> dict[str, str]:
    """The webhook settings of a local platform: the sealing key and the loopback allow-list.

    The key (which seals the endpoints' signing secrets in Postgres) is generated once into
    DATA_DIR/webhooks-key (mode 0600) unless the caller gives BOOKING_WEBHOOKS_KEY; losing it
    makes every endpoint's secret unreadable (rotate them).  Local development sends webhooks to
    receivers on this machine, so 127.0.0.0/8 is allowed unless the caller says otherwise
    (BOOKING_WEBHOOKS_ALLOWED_NETWORKS, even empty).
    """
    from booking_core.webhooks.sealing import new_key
    from bookingctl.datadir import write_secret

    key = caller_env.get("BOOKING_WEBHOOKS_KEY")
    if not key:
        path = data_dir / "webhooks-key"
        if not path.exists():
            write_secret(path, new_key())
        key = path.read_text().strip()
    networks = caller_env.get("BOOKING_WEBHOOKS_ALLOWED_NETWORKS")
    return {"BOOKING_WEBHOOKS_KEY": key,
            "BOOKING_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8" if networks is None else networks}


def events(port: int, env: dict[str, str]) -> ServiceSpec:
    """The booking-events service (streams and progress pages, aiohttp) on 127.0.0.1:`port`."""
    return ServiceSpec("events", [executable("booking-events")], stop_timeout=10,
                       env={**env, "BOOKING_EVENTS_HOST": "127.0.0.1", "BOOKING_EVENTS_PORT": str(port)},
                       metrics_url=f"http://127.0.0.1:{port}/metrics")
