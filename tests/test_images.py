"""Every service's container image, built for real and run.

buildah builds each service's target of the one root `Dockerfile` (build arg
SERVICE = target = the folder under services/) from the repo root with chroot
isolation (no daemon, no cgroups), on a Debian bookworm + Python base that
`tools/make-base-image.sh` makes with debootstrap, because no container registry
can be reached here. Each image is then started with `buildah from` + `buildah run`:
its entrypoint answers `--help`, its modules import, it runs as a non-root user,
holds no build tools or caches, only the invoice image has Pango, and the operator's
has no psycopg or Dramatiq (only what its service uses). Last, a real
booking travels through the outbox-relay and audit-worker images on the session's
Postgres and Redis (chroot isolation shares the host's network), and the api image
serves its health checks, and its metrics on their own port only; each process
stops cleanly on SIGTERM. Image sizes are printed (`-s` shows them).

Needs root; installs buildah and debootstrap with apt-get when they are missing.
Run: `.venv/bin/pytest -m images tests/test_images.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from dockerfile_stages import service_targets
from prometheus_client.parser import text_string_to_metric_families

from booking_core import db
from booking_core.audit import chain
from booking_core.model import bookings, tenants
from booking_embedded import free_port
from e2e_helpers import wait_until
from scratch_database import scratch_database

pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
TAG = "images-test"
APP_UID = 10001
APT_PACKAGES = ("buildah", "debootstrap")
#: Debian's CA bundle, in the base image as on the host (package ca-certificates).
IMAGE_CA = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Service:
    """What one image must be: the modules its command imports, whether it has Pango, what it must not carry."""

    modules: tuple[str, ...]
    pango: bool = False
    #: Distributions (PyPI names) the image must not have installed.
    without: tuple[str, ...] = ()


#: A new target in the Dockerfile needs a line here (the test fails until it has one).
SERVICES = {
    "booking-api": Service(("booking_api.wsgi", "booking_api.metrics_server")),
    "outbox-relay": Service(("outbox_relay", "outbox_relay.main")),
    "email-worker": Service(("email_worker.broker", "email_worker.actors")),
    "invoice-worker": Service(("invoice_worker.broker", "invoice_worker.actors"), pango=True),
    "audit-worker": Service(("audit_worker.broker", "audit_worker.actors")),
    # An HTTP client on booking-core: Postgres and Dramatiq, but none of the API's, the events
    # service's or the invoice worker's libraries.
    "webhook-worker": Service(("webhook_worker.broker", "webhook_worker.actors"), without=(
        "weasyprint", "flask", "gunicorn", "aiohttp", "pydantic")),
    # booking-scaling only: no database driver, no Dramatiq, no OTLP exporters (gRPC's is the largest).
    "queue-autoscaler": Service(("queue_autoscaler.operator",), without=(
        "booking-core", "psycopg", "psycopg-binary", "psycopg-pool", "dramatiq", "grpcio",
        "opentelemetry-exporter-otlp-proto-grpc", "opentelemetry-sdk")),
    "booking-events": Service(("booking_events.app", "booking_events.server")),
}

#: The Dockerfile's service targets; bookingctl is a dev tool, not imaged.
IMAGED = service_targets()

#: Settings good enough to import the modules; nothing listens there, nothing connects at import.
#: The webhook worker refuses to start without a sealing key: a throwaway one (it seals nothing here).
DUMMY_ENV = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "REDIS_URL": "redis://127.0.0.1:9/0",
             "BOOKING_WEBHOOKS_KEY": "0" * 43 + "="}


# ---------------------------------------------------------------- tools and building


def ensure_tools() -> None:
    """buildah and debootstrap on PATH, installed with apt-get if missing; skip unless root."""
    if os.geteuid() != 0:
        pytest.skip("building images with buildah (chroot isolation) and debootstrap needs root")
    missing = [tool for tool in APT_PACKAGES if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.fail(f"{', '.join(missing)} missing and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def ca_bundle() -> Path | None:
    """The CA bundle this machine's pip and uv trust (a TLS-inspecting proxy may need it)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), os.environ.get("PIP_CERT"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build_command(service: str, base_image: str, tag: str) -> list[str]:
    """`buildah bud` for one service's target of the root Dockerfile, from the repo root, on `base_image`."""
    cmd = ["buildah", "bud", "--isolation", "chroot", "--layers", "--pull=never",
           "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"SERVICE={service}",
           "--target", service, "-f", "Dockerfile", "-t", tag]
    ca = ca_bundle()
    if ca is not None:
        # Bound over the base's own bundle in every RUN step (a new mount point would
        # be left in the image as an empty file); pip and uv are pointed at it.
        cmd += ["--volume", f"{ca}:{IMAGE_CA}:ro",
                "--build-arg", f"SSL_CERT_FILE={IMAGE_CA}", "--build-arg", f"PIP_CERT={IMAGE_CA}"]
    return [*cmd, "."]


@dataclass
class Built:
    """One build's outcome: the image reference, or the log that says why not."""

    ref: str | None
    log: Path
    seconds: float


def build(service: str, base_image: str, log_dir: Path) -> Built:
    """Build one image; its log goes to `log_dir`."""
    log = log_dir / f"build-{service}.log"
    tag = f"localhost/booking-platform/{service}:{TAG}"
    start = time.monotonic()
    with log.open("w") as out:
        try:
            done = subprocess.run(build_command(service, base_image, tag), cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=600)
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            out.write("\n[build timed out after 600 s]\n")
            ok = False
    return Built(tag if ok else None, log, time.monotonic() - start)


@pytest.fixture(scope="module")
def base_image() -> str:
    """The local Debian bookworm + python3 base, made once per content of its script."""
    ensure_tools()
    done = subprocess.run(["bash", str(ROOT / "tools" / "make-base-image.sh")], capture_output=True,
                          text=True, timeout=900)
    if done.returncode:
        pytest.fail(f"tools/make-base-image.sh failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def builds(base_image, tmp_path_factory) -> dict[str, Built]:
    """Every image, built two at a time (this machine has two cores)."""
    log_dir = tmp_path_factory.mktemp("image-builds")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(IMAGED, pool.map(lambda s: build(s, base_image, log_dir), IMAGED), strict=True))
    for service, built in results.items():
        print(f"built {service} in {built.seconds:.0f} s, {image_size(built.ref)}" if built.ref
              else f"FAILED {service}: {built.log}")
    prune_stale_build_images(results.values())
    return results


def prune_stale_build_images(builds) -> None:
    """Remove the cached build steps that these builds no longer use, so runs don't fill the disk.

    `--layers` keeps each step as an untagged image: those the latest builds used are
    the next run's cache and stay; older ones of this project's builds (their history
    starts at tools/make-base-image.sh) go. Nobody else's images are touched.
    """
    used = set()
    for built in builds:
        used |= set(re.findall(r"^--> (?:Using cache )?([0-9a-f]{11,64})", built.log.read_text(), re.M))
    listed = subprocess.run(["buildah", "images", "--filter", "dangling=true", "--no-trunc", "--format",
                             "{{.ID}}"], capture_output=True, text=True)
    for image_id in listed.stdout.split():
        image_id = image_id.removeprefix("sha256:")
        if any(image_id.startswith(u) for u in used):
            continue
        inspected = subprocess.run(["buildah", "inspect", "--type", "image", image_id], capture_output=True,
                                   text=True)
        if inspected.returncode == 0 and "tools/make-base-image.sh" in inspected.stdout:
            subprocess.run(["buildah", "rmi", image_id], capture_output=True)


@pytest.fixture(scope="module")
def image(builds):
    """`image(service)`: the built image's reference; fails with the build log's tail if it did not build."""

    def get(service: str) -> str:
        built = builds[service]
        if built.ref is None:
            pytest.fail(f"{service} image did not build; last lines of {built.log}:\n"
                        + "\n".join(built.log.read_text().splitlines()[-40:]))
        return built.ref

    return get


def image_config(ref: str) -> dict:
    """The OCI config of an image (User, Entrypoint, Cmd, Env, ...)."""
    out = subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)["OCIv1"]["config"]


def image_size(ref: str) -> str:
    """The image's size as `buildah images` reports it, e.g. "209 MB"."""
    return subprocess.run(["buildah", "images", "--format", "{{.Size}}", ref], capture_output=True, text=True,
                          check=True).stdout.split("\n")[0]  # one line per tag of the image: all alike


def command_of(config: dict) -> list[str]:
    """What the image runs when started without arguments: Entrypoint + Cmd."""
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


# ---------------------------------------------------------------- running in an image


@pytest.fixture(scope="module")
def container(image) -> Iterator:
    """`container(service)`: a working container of that image, removed after the module."""
    made: dict[str, str] = {}

    def get(service: str) -> str:
        if service not in made:
            name = f"booking-{service}-{uuid.uuid4().hex[:8]}"
            subprocess.run(["buildah", "from", "--pull=never", "--quiet", "--name", name, image(service)],
                           check=True, capture_output=True, text=True)
            made[service] = name
        return made[service]

    yield get
    for name in made.values():
        subprocess.run(["buildah", "rm", name], capture_output=True)


def run_args(ctr: str, cmd: list[str], env: dict | None = None, user: str | None = None) -> list[str]:
    """The `buildah run` command line for `cmd` in container `ctr`."""
    args = ["buildah", "run", "--isolation", "chroot"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    if user is not None:
        args += ["--user", user]
    return [*args, ctr, "--", *cmd]


def run_in(ctr: str, cmd: list[str], env: dict | None = None, user: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `cmd` to completion in container `ctr` as the image's user (or `user`)."""
    return subprocess.run(run_args(ctr, cmd, env, user), capture_output=True, text=True, timeout=timeout)


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> list[str]:
    """The argv of `pid` ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Running:
    """A command running in a container in the background, its output in a file.

    `buildah run` answers SIGTERM by killing what it runs, so `terminate()` signals
    the command itself: the child of buildah's `buildah-chroot-exec` helper.
    """

    def __init__(self, ctr: str, cmd: list[str], env: dict, log: Path):
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(run_args(ctr, cmd, env), stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def _command_pid(self) -> int | None:
        """The pid of the command itself, below buildah's helpers; None until it has started."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            children = _children(pid)
            if children and _cmdline(pid)[:1] == ["buildah-chroot-exec"]:
                return children[0]
            todo += children
        return None

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM the command; its exit code and how long it took to exit."""
        pid = wait_until(self._command_pid, timeout=10, what="the command's pid inside the container")
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - start

    def stop(self) -> None:
        """End it whatever happened: SIGTERM the command, else let buildah kill it."""
        if self.proc.poll() is None:
            try:
                self.terminate(timeout=40)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.terminate()  # buildah kills the command, then exits
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        self._out.close()


# ---------------------------------------------------------------- the images themselves


def test_every_dockerfile_target_is_a_service_with_expectations_here():
    assert set(IMAGED) == set(SERVICES), f"targets {IMAGED} vs SERVICES {sorted(SERVICES)}"
    for service in IMAGED:
        assert (ROOT / "services" / service / "pyproject.toml").exists(), f"target {service} is no services/ package"
    assert not list(ROOT.glob("services/*/Dockerfile")), "one Dockerfile, at the root, builds every image"


def test_building_without_a_service_fails_with_the_reason(base_image, tmp_path):
    """SERVICE has no default: a build that forgets it stops at once and says what to pass."""
    cmd = build_command("email-worker", base_image, "localhost/booking-platform/no-service:x")
    at = cmd.index("SERVICE=email-worker")
    del cmd[at - 1:at + 1]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "--build-arg SERVICE=" in done.stdout + done.stderr, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("service", IMAGED)
def test_image_builds_and_runs_as_non_root_in_exec_form(service, image, container):
    config = image_config(image(service))
    assert config.get("User") == f"{APP_UID}:{APP_UID}", "numeric, so runAsNonRoot can check it"
    command = command_of(config)
    assert command and command[0] not in ("/bin/sh", "sh"), f"exec form, so SIGTERM reaches it: {command}"
    who = run_in(container(service), ["id", "-u"])
    assert who.returncode == 0 and who.stdout.strip() == str(APP_UID), who


@pytest.mark.parametrize("service", IMAGED)
def test_entrypoint_answers_help_and_knows_every_flag_of_the_command(service, image, container):
    config = image_config(image(service))
    # Workers and the operator: the whole entrypoint; the api: its command (gunicorn).
    program = config.get("Entrypoint") or config["Cmd"][:1]
    done = run_in(container(service), [*program, "--help"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage" in done.stdout.lower(), done.stdout
    flags = {arg.split("=")[0] for arg in command_of(config) if arg.startswith("--")}
    assert {f for f in flags if f not in done.stdout} == set(), done.stdout


@pytest.mark.parametrize("service", IMAGED)
def test_service_modules_import_in_the_image(service, container):
    modules = SERVICES[service].modules
    done = run_in(container(service), ["python", "-c", f"import {', '.join(modules)}"], env=DUMMY_ENV)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("service", IMAGED)
def test_final_stage_has_no_build_tools_sources_or_caches(service, container):
    probe = (
        "for tool in uv uvx gcc cc c++ make ld pip pip3; do command -v $tool; done;"
        " for dir in /root/.cache /app/.cache /opt/uv /src /var/lib/apt/lists/*; do"
        "   [ -e \"$dir\" ] && echo \"$dir\"; done; true"
    )
    done = run_in(container(service), ["sh", "-c", probe], user="0:0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"left in the final image: {done.stdout.split()}"


@pytest.mark.parametrize("service", IMAGED)
def test_only_the_invoice_image_has_pango(service, container):
    done = run_in(container(service), ["sh", "-c", "ldconfig -p | grep -c 'libpango-1.0.so' || true"],
                  user="0:0")
    assert (int(done.stdout.strip()) > 0) is SERVICES[service].pango, done.stdout


@pytest.mark.parametrize("service", [s for s in IMAGED if SERVICES[s].without])
def test_an_image_carries_nothing_its_service_does_not_use(service, container):
    """`uv sync --package` installs a service's own dependencies only: the operator has no psycopg or Dramatiq."""
    listing = ("import importlib.metadata as m, re; print('\\n'.join(sorted("
               "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in m.distributions())))")
    done = run_in(container(service), ["python", "-c", listing])
    assert done.returncode == 0, done.stderr
    installed = set(done.stdout.split())
    assert service in installed, f"the listing does not see the service's own package: {sorted(installed)}"
    carried = sorted(installed & set(SERVICES[service].without))
    assert carried == [], f"the {service} image carries {carried}"
    for module in (m for m in ("psycopg", "dramatiq") if m in SERVICES[service].without):
        # Asked on stdout: `buildah run` does not always pass a failing command's stderr on.
        probe = run_in(container(service), ["python", "-c", "import importlib.util as u; "
                                            f"print('absent' if u.find_spec({module!r}) is None else 'importable')"])
        assert (probe.returncode, probe.stdout.strip()) == (0, "absent"), (module, probe.stdout, probe.stderr)


def test_invoice_image_renders_a_pdf(container):
    render = ("import weasyprint; pdf = weasyprint.HTML(string='<h1>Invoice</h1><p>Ada</p>').write_pdf();"
              " assert pdf.startswith(b'%PDF'), pdf[:8]; print(len(pdf))")
    done = run_in(container("invoice-worker"), ["python", "-c", render])
    assert done.returncode == 0 and int(done.stdout) > 1000, done.stderr


# ---------------------------------------------------------------- running against Postgres and Redis


@pytest.fixture(scope="module")
def private_database(database_url) -> Iterator[str]:
    """This module's own database: the relay publishes the whole outbox, so only this module's booking waits."""
    with scratch_database(database_url, "images") as url:
        yield url


@pytest.fixture
def platform_env(private_database, redis_url) -> Iterator[dict]:
    """The environment the images run with: this module's database, a Redis namespace of its own."""
    namespace = f"images-{uuid.uuid4().hex[:8]}"
    # The host's network is shared: metrics ports of their own, not the defaults.
    yield {"DATABASE_URL": private_database, "REDIS_URL": redis_url, "BOOKING_REDIS_NAMESPACE": namespace,
           "BOOKING_RELAY_SWEEP_MS": "500", "BOOKING_METRICS_PORT": str(free_port()),
           "dramatiq_prom_port": str(free_port())}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


@pytest.fixture
def start(container, tmp_path) -> Iterator:
    """`start(service, cmd, env)`: a Running command in that image, stopped after the test."""
    running: list[Running] = []

    def go(service: str, cmd: list[str], env: dict) -> Running:
        proc = Running(container(service), cmd, env, tmp_path / f"{service}-{len(running)}.log")
        running.append(proc)
        return proc

    yield go
    for proc in running:
        proc.stop()


def make_booking(url: str) -> dict:
    """A tenant and one booking, committed with its tasks and outbox rows."""
    with db.connect(url) as conn:
        tenant = tenants.ensure_tenant(conn, f"images-{uuid.uuid4().hex[:8]}")
        booking = bookings.create(
            conn, tenant_id=tenant["id"], actor="test_images",
            booking=bookings.NewBooking(customer_name="Ada Lovelace", customer_email="ada@example.com",
                                        item="Sea-view room", check_in=date(2027, 3, 1),
                                        check_out=date(2027, 3, 4), amount=Decimal("360.00"), currency="EUR"),
        )
    return booking


def scalar(url: str, sql: str, *params):
    """The first column of the first row of `sql`, or None."""
    with db.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return next(iter(row.values())) if row else None


def test_a_booking_travels_through_the_relay_and_audit_worker_images(image, start, platform_env):
    url = platform_env["DATABASE_URL"]
    booking = make_booking(url)
    assert scalar(url, "SELECT count(*) FROM outbox") == 3

    # The relay image, with its own command, publishes the outbox to Redis, then stops on SIGTERM.
    relay = start("outbox-relay", command_of(image_config(image("outbox-relay"))), platform_env)
    wait_until(lambda: relay.proc.poll() is not None or scalar(url, "SELECT count(*) FROM outbox") == 0,
               timeout=60, what="the relay to empty the outbox")
    assert relay.proc.poll() is None, relay.output()
    code, seconds = relay.terminate(timeout=20)
    assert code == 0 and "relay stopped" in relay.output(), relay.output()

    # The audit worker, started with its image's own command, records the event.
    worker = start("audit-worker", command_of(image_config(image("audit-worker"))), platform_env)

    def recorded():
        assert worker.proc.poll() is None, worker.output()
        return scalar(url, "SELECT count(*) FROM audit_log WHERE booking_id = %s AND kind = 'booking.created'",
                      booking["id"]) == 1

    wait_until(recorded, timeout=90, interval=0.3, what="the audit worker to record booking.created")
    wait_until(lambda: scalar(url, "SELECT state FROM booking_tasks WHERE booking_id = %s AND task = 'audit'",
                              booking["id"]) == "done", timeout=30, what="the audit task to be done")
    with db.connect(url) as conn:
        (report,) = chain.verify(conn, booking["tenant_id"])
    assert report.ok and report.entries == 1, report

    code, seconds = worker.terminate(timeout=45)
    assert code == 0, worker.output()
    assert seconds < 35, f"dramatiq took {seconds:.1f} s to stop (shutdown timeout 30 s)"


def test_api_image_serves_health_checks_and_stops_on_sigterm(image, start, platform_env):
    port = free_port()
    env = {**platform_env, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    api = start("booking-api", command_of(image_config(image("booking-api"))), env)

    def get(path: str):
        assert api.proc.poll() is None, api.output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except OSError:
            return None

    assert wait_until(lambda: get("/healthz"), timeout=60, what="gunicorn to serve /healthz") == (
        200, {"status": "ok"})
    status, body = get("/readyz")
    assert status == 200 and body["checks"] == {"postgres": "ok", "redis": "ok"}, body
    # Metrics only on their own port (gunicorn's master), none on the HTTP port an Ingress routes.
    with pytest.raises(urllib.error.HTTPError) as not_here:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert not_here.value.code == 404
    with urllib.request.urlopen(f"http://127.0.0.1:{env['BOOKING_METRICS_PORT']}/metrics", timeout=5) as r:
        text = r.read().decode()
    got = {(m.name, tuple(sorted(m.labels.items()))): m.value
           for family in text_string_to_metric_families(text) for m in family.samples}
    assert got[("booking_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))] >= 1
    assert got[("booking_pipeline_read_ok", (("source", "postgres"),))] == 1, text

    code, seconds = api.terminate(timeout=40)
    assert code == 0 and "Shutting down: Master" in api.output(), api.output()
    assert "[ERROR]" not in api.output(), api.output()
