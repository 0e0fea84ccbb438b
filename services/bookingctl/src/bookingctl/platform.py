"""The whole platform on one machine: what `bookingctl up` runs.

Start order: Postgres, Redis, SMTP sink (each only when its URL is not
given), migrations, the demo tenant and admin token, then the relay, the
workers and the API.  Stop order is the reverse, so workers finish or
requeue their messages while Redis and Postgres are still there.  A process
that dies, service or embedded server, is logged, whatever it left in its
process group is killed at once (a SIGKILLed Dramatiq parent's workers and
metrics process), and it is restarted with backoff (servers on the same port
and data); a component stopped on purpose
(`stop_component`, used by the fault tests) is left stopped.  One supervisor
thread does this; an error in one round is logged and the next round runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from booking_core import db
from booking_core.config import Settings
from booking_core.db.migrate import migrate
from booking_core.model import tenants
from booking_embedded import (
    Child,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedSmtp,
    free_port,
    listening_inodes,
    reserve_port,
    stop_together,
)
from booking_scaling import podload
from booking_scaling.podload import PodLoad
from booking_scaling.policy import Policy
from bookingctl import services
from bookingctl.autoscale import Autoscaler
from bookingctl.datadir import DataDirLock, run_file, write_run_file, write_secret
from bookingctl.retire import retirees

log = logging.getLogger("bookingctl")
DEMO_TENANT = "demo"


@dataclass
class PlatformConfig:
    """What to run and where; `env` holds URLs and tunables given by the caller (the CLI: its environment)."""

    data_dir: Path
    port: int = 8000
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=lambda: {"email": 1, "invoice": 1, "audit": 1, "webhook": 1})
    #: Per-queue scaling policies; None runs `workers` processes per queue, fixed.
    autoscale: dict[str, Policy] | None = None
    api_workers: int = 2
    smtp_reject_recipients: str | None = None
    #: Seconds the SMTP sink holds each message before accepting it (tests: mail in flight).
    smtp_delay: float = 0.0
    #: Workers at the idle scheduling class (services.worker); False: at nice 10 only.
    workers_cpu_idle: bool = True
    #: With `autoscale`: pools with a looser promise yield the CPU to one at risk (bookingctl.cpu_yield).
    cpu_yield: bool = True


class Platform:
    """Starts, supervises and stops every process of a local platform."""

    def __init__(self, config: PlatformConfig):
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.lock = DataDirLock(self.data_dir)
        #: The embedded servers started here ("postgres", "redis", "smtp"); none given by URL.
        self.servers: dict[str, EmbeddedPostgres | EmbeddedRedis | EmbeddedSmtp] = {}
        self.children: dict[str, Child] = {}
        self.held: set[str] = set()  # stopped on purpose: not restarted
        self._restarts: dict[str, tuple[int, float]] = {}
        self._down: set[str] = set()  # dead, death logged, restart pending
        self._stopping = threading.Event()
        self._stopped = False
        self._control = threading.RLock()  # supervisor vs. stop/start_component
        self._supervisor: threading.Thread | None = None
        self.urls: dict[str, str] = {}
        self.metrics_urls: dict[str, str] = {}
        self.retiring: set[str] = set()  # scaled-down workers finishing their messages
        self._redis: redis.Redis | None = None  # reads the workers' loads before a scale-down
        self._webhooks_env: dict[str, str] | None = None  # read (or made) once, at the first child_env()
        self._redis_namespace: str | None = None
        self.autoscaler: Autoscaler | None = None
        self.admin_token = ""
        #: The booking-events service (progress pages, streams, the ops console at /ops/).
        self.events_url = ""

    # -- start -----------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def start(self) -> None:
        """Start everything in order; on any failure stop what was started."""
        self.lock.acquire()
        try:
            self._check_port_free()
            self._start_servers()
            migrate(self.urls["DATABASE_URL"])
            self._ensure_demo_tenant()
            for spec in self._service_specs():
                self._spawn(spec)
            # Before the API is reported ready, not after: other `bookingctl` commands find the
            # servers through this file, and a user who sees the API answer may run one at once.
            write_run_file(self.data_dir, {**self.urls, "API_URL": self.api_url, "pid": os.getpid(),
                                           "metrics": self.metrics_urls})
            self._wait_ready()
            if self.config.autoscale is not None:
                # The API's own latency histogram: scale-ups wait while the accept path is over budget.
                self.autoscaler = Autoscaler(self.config.autoscale, self.urls["REDIS_URL"], self.redis_namespace(),
                                             api_metrics_url=self.metrics_urls.get("api"),
                                             database_url=self.urls["DATABASE_URL"],
                                             yield_cpu=self.config.cpu_yield)
                self.autoscaler.release()  # a runner killed while its pools yielded left them paused
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()
        except BaseException:
            self.stop()
            raise

    def _check_port_free(self) -> None:
        import socket

        with socket.socket() as s:
            # As gunicorn will: connections of a previous run in TIME_WAIT must not block us.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.config.port))
            except OSError:
                raise RuntimeError(f"port {self.config.port} is already in use; pick another with --port") from None
        reserve_port(self.config.port)  # so no server of ours is given the API's port before gunicorn binds it

    def _start_servers(self) -> None:
        """Start an embedded server for each URL not given; Postgres stays at the API's priority."""
        env = self.config.env
        self.urls = {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SMTP_URL") if env.get(k)}
        wanted = {
            # Postgres serves the accept path too: it keeps the API's priority.
            "postgres": ("DATABASE_URL", lambda: EmbeddedPostgres(self.data_dir, free_port(), self.log_dir)),
            # Only the async side (and the API's probes) use Redis; only the email worker the sink.
            "redis": ("REDIS_URL", lambda: EmbeddedRedis(self.data_dir, free_port(), self.log_dir,
                                                         nice=services.ASYNC_NICE)),
            "smtp": ("SMTP_URL", lambda: EmbeddedSmtp(self.data_dir / "mail", free_port(), self.log_dir,
                                                      reject_recipients=self.config.smtp_reject_recipients,
                                                      delay=self.config.smtp_delay, nice=services.ASYNC_NICE)),
        }
        for name, (key, make) in wanted.items():
            if key not in self.urls:
                self.servers[name] = server = make()
                server.start()
                self.urls[key] = server.url

    def _ensure_demo_tenant(self) -> None:
        """The `demo` tenant exists and DIR/admin-token holds a live admin token."""
        path = self.data_dir / "admin-token"
        with db.connect(self.urls["DATABASE_URL"], autocommit=True) as conn:
            tenant = tenants.ensure_tenant(conn, DEMO_TENANT)
            if path.exists():
                token = path.read_text().strip()
                ident = tenants.authenticate(conn, token)
                if ident and ident["admin"]:
                    self.admin_token = token
                    return
            self.admin_token = tenants.create_token(conn, tenant["id"], admin=True, label="bookingctl up")["token"]
        write_secret(path, self.admin_token)

    def child_env(self) -> dict[str, str]:
        """The environment of every service process: the caller's, plus the server URLs."""
        env = dict(self.config.env)
        env.update(self.urls)
        if self._webhooks_env is None:  # once: not a key-file read at every spawn and scale-down
            self._webhooks_env = services.webhooks_env(self.data_dir, self.config.env)
        env.update(self._webhooks_env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def redis_namespace(self) -> str:
        """The services' Redis key namespace, as their settings resolve it (read once)."""
        if self._redis_namespace is None:
            self._redis_namespace = Settings.from_env(self.child_env()).redis_namespace
        return self._redis_namespace

    def _initial_workers(self) -> dict[str, int]:
        if self.config.autoscale is None:
            return self.config.workers
        return {q: max(1, p.min_replica_count) for q, p in self.config.autoscale.items()}

    def _worker_spec(self, queue: str, index: int) -> services.ServiceSpec:
        """Worker `index` of `queue`, in this platform's CPU class (`workers_cpu_idle`)."""
        return services.worker(queue, index, free_port(), self.data_dir / "run", cpu_idle=self.config.workers_cpu_idle)

    def _service_specs(self) -> list[services.ServiceSpec]:
        run_dir = self.data_dir / "run"
        specs = [services.relay(free_port())]
        for queue, count in self._initial_workers().items():
            specs += [self._worker_spec(queue, i) for i in range(1, count + 1)]
        events_port = free_port()
        self.events_url = f"http://127.0.0.1:{events_port}"
        shared = services.events_env(self.data_dir, events_port, self.config.env)
        specs.append(services.events(events_port, shared))
        specs.append(services.api(self.config.port, run_dir, workers=self.config.api_workers, env=shared))
        return specs

    def _spawn(self, spec: services.ServiceSpec) -> Child:
        child = Child(spec.name, spec.argv, log_path=self.log_dir / f"{spec.name}.log",
                      env={**self.child_env(), **spec.env}, stop_timeout=spec.stop_timeout, nice=spec.nice,
                      cpu_idle=spec.cpu_idle)
        child.start()
        self.children[spec.name] = child
        if spec.metrics_url:
            self.metrics_urls[spec.name] = spec.metrics_url
        return child

    def _wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until every API worker listens, the API answers /healthz and every process serves its metrics.

        Every API worker, not the first: each binds a socket of its own, and
        clients that connect before the others have bound all land on the first.
        Generous timeouts: the async side starts at a lower CPU priority, and on a
        busy machine its imports and first metrics page can take tens of seconds.
        """
        deadline = time.monotonic() + timeout
        pending = {"api": self.api_url + "/healthz", **{n: u for n, u in self.metrics_urls.items() if n != "api"}}
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                child = self.children[name]
                if not child.alive():
                    raise RuntimeError(f"{name} exited at start; see {child.log_path}")
                if name == "api" and len(listening_inodes(self.config.port)) < self.config.api_workers:
                    continue
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.status == 200:
                            del pending[name]
                except OSError:
                    pass
            time.sleep(0.1)
        if pending:
            raise TimeoutError(f"not ready within {timeout}s: {', '.join(pending)} (see {self.log_dir})")

    # -- worker pools --------------------------------------------------------
    def pool(self, queue: str) -> list[str]:
        """Names of `queue`'s worker processes that are not being retired, oldest first."""
        prefix = f"{queue}-worker-"
        names = [n for n in self.children if n.startswith(prefix) and n not in self.retiring]
        return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]))

    def resize(self, queue: str, desired: int) -> None:
        """Start or retire worker processes of `queue` until `desired` are running.

        A scale-down retires the idlest processes (bookingctl.retire: fewest messages in flight,
        then least recent work, as the operator's pod-deletion-cost), the newest when none is known.
        """
        names = self.pool(queue)
        while len(names) < desired:
            used = {int(n.rsplit("-", 1)[1]) for n in self.children if n.startswith(f"{queue}-worker-")}
            index = min(set(range(1, len(used) + 2)) - used)
            names.append(self._spawn(self._worker_spec(queue, index)).name)
        for name in retirees(names, self._loads(queue) if len(names) > desired else {}, len(names) - desired):
            log.info("%s workers: retiring %s", queue, name)
            self.retiring.add(name)
            self.children[name].request_stop()  # Dramatiq's parent: its worker finishes, then exits

    def _loads(self, queue: str) -> dict[str, PodLoad]:
        """Each of `queue`'s worker processes' load by name (its presence record); {} when Redis cannot be
        read, and the newest processes are retired as before."""
        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(self.urls["REDIS_URL"], socket_timeout=2,
                                                   socket_connect_timeout=2)
            return podload.read(self._redis, self.redis_namespace(), [queue], int(time.time() * 1000))
        except redis.RedisError as e:
            log.warning("%s workers: load unreadable (%s); retiring the newest", queue, e)
            return {}

    def _reap_retired(self) -> None:
        for name in list(self.retiring):
            if not self.children[name].alive():
                self.children[name].stop()
                del self.children[name]
                self.metrics_urls.pop(name, None)
                self.retiring.discard(name)

    # -- supervise -------------------------------------------------------
    def supervise_once(self) -> None:
        """Reap retired workers, apply autoscaling, restart dead servers and processes (with backoff)."""
        self._reap_retired()
        if self.autoscaler is not None and not self._stopping.is_set():
            self.autoscaler.tick({q: len(self.pool(q)) for q in self.autoscaler.pools}, self.resize)
        for name, server in self.servers.items():  # servers first: the services need them
            self._revive(name, server.child, server.start)
        for name, child in list(self.children.items()):
            if name not in self.retiring:
                self._revive(name, child, child.start)

    def _revive(self, name: str, child: Child | None, start: Callable[[], None]) -> None:
        """Log a dead process once, then restart it when its backoff allows; held ones stay down."""
        if self._stopping.is_set() or name in self.held or child is None or child.alive():
            return
        if name not in self._down:
            self._down.add(name)
            log.error("%s died (%s)", name, describe_exit(child.returncode()))
        count, next_at = self._restarts.get(name, (0, 0.0))
        now = time.monotonic()
        if now < next_at:
            return
        # Back off if it keeps dying within a minute of its start; a long run resets the count.
        count = count + 1 if now - child.started_at < 60 else 1
        self._restarts[name] = (count, now + min(2**count, 30))
        log.warning("restarting %s (restart %d in a row)", name, count)
        try:
            start()
        except Exception:
            log.exception("could not restart %s; trying again after backoff", name)
            return
        self._down.discard(name)

    def _supervise(self) -> None:
        """The supervisor thread: a round every 0.5 s; an error is logged and never ends the loop."""
        while not self._stopping.wait(0.5):
            with self._control:
                if self._stopping.is_set():
                    break
                try:
                    self.supervise_once()
                except Exception:
                    log.exception("supervisor round failed; carrying on")

    def run_forever(self) -> None:
        """Block until SIGINT/SIGTERM (the supervisor thread restarts the dead), then stop."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopping.set())
        while not self._stopping.wait(0.5):
            pass
        self.stop()

    # -- control (tests and faults) ---------------------------------------
    def component(self, name: str) -> Child:
        """The process of a server ("postgres", "redis", "smtp") or of a service ("api", "relay", …)."""
        if name in self.servers:
            return self.servers[name].child
        return self.children[name]

    def stop_component(self, name: str) -> None:
        """Stop one process on purpose; it stays down until start_component."""
        with self._control:
            self.held.add(name)
        self.component(name).stop()

    def start_component(self, name: str) -> None:
        """Start a component stopped with stop_component, on the same port and data."""
        with self._control:
            if name in self.servers:
                self.servers[name].start()
            else:
                self.children[name].start()
            self.held.discard(name)

    # -- stop ------------------------------------------------------------
    def stop(self) -> None:
        """Stop services (API first, then relay and workers), then servers; idempotent.

        Each process gets one signal (the parent, never its group; then SIGCONT
        to its group, should it be stopped) and its own stop timeout, counted
        from the same moment for all, before its group is killed: Dramatiq's
        parent forwards it to its worker, which finishes its messages or
        requeues them.  So the services take the longest stop timeout at most
        (a worker's: its shutdown timeout plus 10 s), however many hang.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        with self._control:  # let a supervisor round in progress finish first
            pass
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        if self.autoscaler is not None:
            self.autoscaler.close()  # lifts the CPU yield's pauses while Postgres is up
        order = ["api", "relay"] + [n for n in self.children if n not in ("api", "relay")]
        stop_together([self.children[name] for name in order if name in self.children])
        for name in ("smtp", "redis", "postgres"):
            if name in self.servers:
                self.servers[name].stop()
        if self._redis is not None:
            self._redis.close()
        run_file(self.data_dir).unlink(missing_ok=True)
        self.lock.release()


def describe_exit(code: int | None) -> str:
    """A process's return code in words: 'exit code 1', 'killed by SIGKILL'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
