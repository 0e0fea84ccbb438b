"""How the API's gunicorn listens: a socket per worker (SO_REUSEPORT), and a taken port stops it at start.

On one shared listening socket, whichever worker woke first took each new
connection, and a burst went mostly to one worker (bench/README.md, "Server
model").  With a socket per worker the kernel spreads them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from booking_embedded import listening_inodes
from e2e_helpers import child_pids


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def test_each_worker_listens_on_a_socket_of_its_own(gunicorn):
    http_port, _, proc = gunicorn
    listening = listening_inodes(http_port)
    workers = child_pids(proc.pid)
    assert len(workers) == 2 and len(listening) == 2, (workers, listening)
    held = [socket_inodes(w) & listening for w in workers]
    assert all(len(h) == 1 for h in held) and held[0] != held[1], held
    assert not socket_inodes(proc.pid) & listening  # the master holds none: nothing queues where nobody accepts


def test_a_taken_port_stops_gunicorn_at_start_naming_it(settings, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": "0",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
        done = subprocess.run(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:booking_api.gunicorn_conf",
             "booking_api.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stdout + done.stderr


def test_no_control_socket_is_opened(gunicorn, tmp_path):
    """gunicorn's own control socket is off: its default path is shared by every gunicorn of the user.

    gunicorn opens it (and logs so) right after forking the workers, before they can answer;
    the test watches the log a second longer to be sure.
    """
    log = tmp_path / "gunicorn.log"
    assert "Booting worker" in log.read_text()  # the log is this gunicorn's, and it has started
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert "Control socket" not in log.read_text()
        time.sleep(0.05)
    _, _, proc = gunicorn
    held = socket_inodes(proc.pid)
    bound = [line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
             if len(line.split()) == 8 and line.split()[6] in held]  # Num RefCount Protocol Flags Type St Inode Path
    assert not [path for path in bound if path.endswith(".ctl")], bound


def test_a_worker_stopped_while_it_boots_ends_at_once_not_at_graceful_timeout(settings, tmp_path):
    """SIGTERM as soon as both sockets listen: a worker still booting (its socket bound, its handlers
    not yet its own) used to swallow the signal and live until graceful_timeout, 20 s of every such stop."""
    import signal

    from booking_embedded import free_port

    reached_a_booting_worker = 0
    for attempt in range(3):
        http_port, log_path = free_port(), tmp_path / f"gunicorn-{attempt}.log"
        env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "BOOKING_REDIS_NAMESPACE": settings.redis_namespace, "BOOKING_METRICS_HOST": "127.0.0.1",
               "BOOKING_METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"prom{attempt}"),
               "PYTHONUNBUFFERED": "1"}
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:booking_api.gunicorn_conf",
                 "booking_api.wsgi:app", "--bind", f"127.0.0.1:{http_port}", "--workers", "2"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while len(listening_inodes(http_port)) < 2:
                    assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.005)
                booted = log_path.read_text().count("ASGI server listening on")
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                took = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert took < 10, f"stop took {took:.1f} s with {booted}/2 workers booted:\n{log_path.read_text()}"
        reached_a_booting_worker += booted < 2
        if reached_a_booting_worker:
            break
    assert reached_a_booting_worker, "in 3 attempts the signal never reached a worker still booting"
