"""Worker processes die with their Dramatiq parent and stop when they can no longer work.

Each test runs Dramatiq's own CLI on `lifeline_app` (the platform's worker
broker) against the session's Redis, so the worker and the metrics process are
forked exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import dramatiq
import pytest
import redis

from booking_core.worker.broker import make_broker
from booking_core.worker.lifeline import Health, TimedStream, verdict
from booking_embedded import free_port
from e2e_helpers import alive, child_pids, wait_until

DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
HERE = Path(__file__).parent


class App:
    """One `dramatiq lifeline_app` run in a process group of its own, its output in a file."""

    def __init__(self, settings, tmp_path: Path, *, heartbeat_ms: int = 2000, port: int | None = None):
        self.port = port or free_port()
        self.log = tmp_path / f"dramatiq-{self.port}.log"
        env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "BOOKING_REDIS_NAMESPACE": settings.redis_namespace,
               "BOOKING_HEARTBEAT_TIMEOUT_MS": str(heartbeat_ms), "BOOKING_MAINTENANCE_CHANCE": "1000000",
               "dramatiq_worker_timeout": "200", "dramatiq_prom_host": "127.0.0.1",
               "dramatiq_prom_port": str(self.port), "dramatiq_prom_db": str(tmp_path / f"prom-{self.port}"),
               "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [DRAMATIQ, "lifeline_app", "--path", str(HERE), "--queues", "lifeline",
                 "--processes", "1", "--threads", "2", "--worker-shutdown-timeout", "5000"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, process_group=0)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics_answer(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self) -> tuple[int, int]:
        """Wait for the booted worker and a serving metrics process; return (worker pid, fork pid)."""
        wait_until(lambda: "Worker process is ready" in self.text() and self.metrics_answer(), timeout=60,
                   what=f"the worker and its metrics in {self.log}")
        kids = wait_until(lambda: (lambda k: k if len(k) == 2 else None)(child_pids(self.proc.pid)), timeout=10,
                          what="two children")
        # The worker runs many threads (consumers, workers, ours); the metrics process one.
        [fork] = [k for k in kids if len(os.listdir(f"/proc/{k}/task")) == 1]
        [worker] = [k for k in kids if k != fork]
        return worker, fork

    def kill(self) -> None:
        """Whatever is left of the group, SIGCONTed (a stopped process dies only once it runs) and killed."""
        for sig in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@pytest.fixture
def apps(settings, tmp_path):
    started: list[App] = []

    def start(**kw) -> App:
        started.append(App(settings, tmp_path, **kw))
        return started[-1]

    yield start
    for app in started:
        app.kill()


def send(settings, lines: int) -> str:
    """Enqueue one `chatter` message; return the Redis key it sets when done."""
    key = f"{settings.redis_namespace}:done:{uuid.uuid4().hex}"
    make_broker(settings).enqueue(dramatiq.Message(queue_name="lifeline", actor_name="chatter",
                                                   args=(lines, key), kwargs={}, options={}))
    return key


def test_the_worker_and_its_metrics_process_die_with_a_sigkilled_parent(apps):
    app = apps()
    worker, fork = app.wait_ready()
    os.kill(app.proc.pid, signal.SIGKILL)
    app.proc.wait(10)
    wait_until(lambda: not alive(worker) and not alive(fork), timeout=10, interval=0.05,
               what="the orphaned worker and metrics process to die")
    assert not app.metrics_answer()  # the port is free for the next worker


def test_a_worker_whose_logs_nobody_reads_stops_heartbeating_so_its_message_is_redelivered(apps, settings):
    """The parent stopped: the worker's log pipe fills, and its next write would block for ever."""
    stuck = apps(heartbeat_ms=2000)
    worker, _ = stuck.wait_ready()
    os.kill(stuck.proc.pid, signal.SIGSTOP)  # nobody reads the worker's log pipe now
    key = send(settings, lines=2000)  # ~450 KiB of logs: far more than a pipe holds
    wait_until(lambda: not alive(worker), timeout=30, what="the stalled worker to end")
    client = redis.Redis.from_url(settings.redis_url)
    assert client.get(key) is None  # it never got through its logging

    fresh = apps(heartbeat_ms=2000)
    fresh_worker, _ = fresh.wait_ready()
    # The stalled worker's heartbeat stopped: after the timeout the fresh one's maintenance requeues it.
    done_by = wait_until(lambda: client.get(key), timeout=30, what="the message redelivered and done")
    assert int(done_by) == fresh_worker


def test_a_dead_metrics_process_stops_the_worker_in_order_and_dramatiq_exits(apps):
    app = apps()
    worker, fork = app.wait_ready()
    os.kill(fork, signal.SIGKILL)
    code = app.proc.wait(30)  # Dramatiq's parent exits once its worker has, so a supervisor restarts it all
    text = app.text()
    assert "metrics exposition process died" in text
    assert "Stopping worker process" in text and "Killing worker process" not in text  # an orderly stop
    assert code == 0, text
    assert not alive(worker)


def test_an_orderly_stop_is_not_taken_for_a_dead_metrics_process(apps):
    """Dramatiq's parent stops the metrics process right after the worker: no second SIGTERM must follow."""
    app = apps()
    app.wait_ready()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(30) == 0
    text = app.text()
    assert "Stopping worker process" in text
    assert "Killing worker process" not in text and "exposition process died" not in text


def test_the_metrics_process_waits_for_its_port_instead_of_dying(apps):
    """An old process still holding the port (say, one being killed) must not leave the worker without metrics."""
    with __import__("socket").create_server(("127.0.0.1", 0)) as taken:
        app = apps(port=taken.getsockname()[1])
        wait_until(lambda: "is in use; trying again" in app.text(), timeout=60, what="the fork to wait for its port")
    wait_until(app.metrics_answer, timeout=10, what="metrics once the port is free")
    wait_until(lambda: "Worker process is ready" in app.text(), timeout=30, what="the worker")
    time.sleep(1.5)  # three watchdog rounds: a worker that took the waiting fork for dead would stop now
    assert app.proc.poll() is None and "exposition process died" not in app.text()


def test_a_timed_stream_sees_a_write_the_reader_never_takes():
    read_end, write_end = os.pipe()
    stream = TimedStream(os.fdopen(write_end, "w", buffering=1))
    writer = threading.Thread(target=stream.write, args=("x" * 200_000 + "\n",), daemon=True)
    assert stream.blocked_for(time.monotonic()) == 0.0
    writer.start()
    wait_until(lambda: stream.blocked_for(time.monotonic()) > 0.3, timeout=5, interval=0.05,
               what="the write to wait on the full pipe")
    with os.fdopen(read_end, "rb") as reader:
        while writer.is_alive():
            reader.read(65536)
            writer.join(0.01)
    assert stream.blocked_for(time.monotonic()) == 0.0


def test_the_verdict():
    well = Health(parent_alive=True, log_blocked_seconds=0.2, exposition="running")
    assert verdict(well, stall_seconds=1) is None
    assert verdict(Health(True, 0.0, "not started"), stall_seconds=1) is None
    assert verdict(Health(False, 0.0, "running"), stall_seconds=1) == "exit"
    assert verdict(Health(True, 1.0, "running"), stall_seconds=1) == "exit"
    assert verdict(Health(True, 5.0, "gone"), stall_seconds=1) == "exit"  # it could not even stop in order
    assert verdict(Health(True, 0.0, "gone"), stall_seconds=1) == "stop"
