"""The workers' metrics exposition process: dies with its parent, and its workers see it die.

Dramatiq's Prometheus middleware serves a worker's metrics from a process that
Dramatiq's CLI forks beside the worker processes.  Dramatiq's parent watches
only its workers: when that fork dies, it stays a zombie, `/metrics` is gone,
and nothing notices.  And, like the workers, the fork outlives a SIGKILLed
parent, keeping the metrics port, so the next worker cannot bind it.

Here the fork function (`run_exposition_server`, which `Prometheus` below
names instead of Dramatiq's) first asks for SIGKILL on its parent's death
(`booking_core.worker.lifeline.die_with_parent`), then holds an exclusive `flock` on
`<dramatiq_prom_db>/exposition.lock` for the rest of its life, having written
its parent's identity (pid and start time) into it, and serves Dramatiq's own
exposition server, waiting for the port while an old holder lets it go.  The
kernel drops the lock when the process ends, however it ends, so a worker
(`Watch`) that can take the lock while the file names its own parent knows its
fork is gone; a file left by an earlier parent, even one with the same pid
(PID 1 in every container), names another start time and counts as "not
started yet".
"""

from __future__ import annotations

import errno
import fcntl
import logging
import multiprocessing
import os
import time
from pathlib import Path

from dramatiq.middleware import prometheus as dramatiq_prometheus

from booking_core.worker.lifeline import die_with_parent

log = logging.getLogger(__name__)

LOCK_NAME = "exposition.lock"


def lock_path() -> Path:
    """The lock file, beside the multiprocess metrics files (Prometheus reads only `*.db` there)."""
    return Path(dramatiq_prometheus.DB_PATH) / LOCK_NAME


def identity(pid: int) -> str | None:
    """`pid:start time` of a process (unique across pid reuse), None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after "pid (comm)"


class Prometheus(dramatiq_prometheus.Prometheus):
    """Dramatiq's Prometheus middleware, with `run_exposition_server` as its fork."""

    @property
    def forks(self):
        return [run_exposition_server]


def in_use(broker) -> bool:
    """True when `broker` asks Dramatiq's CLI for our exposition fork."""
    return any(isinstance(m, Prometheus) for m in broker.middleware)


def run_exposition_server() -> int:
    """The fork's body: die with the parent, hold the lock, serve (waiting while the port is taken)."""
    parent = multiprocessing.parent_process()
    die_with_parent(parent.pid if parent else None)
    fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o644)  # never closed: held until this process ends
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, (identity(os.getppid()) or "").encode())
    waiting = False
    while True:
        try:
            return dramatiq_prometheus._run_exposition_server()
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            if not waiting:
                waiting = True
                log.warning("Metrics port %s:%s is in use; trying again every second.",
                            dramatiq_prometheus.HTTP_HOST, dramatiq_prometheus.HTTP_PORT)
            time.sleep(1.0)


class Watch:
    """A worker's view of its exposition fork, through the fork's lock."""

    def __init__(self, fd: int, parent: str | None):
        self.fd = fd
        self.parent = parent

    @classmethod
    def open(cls, parent_pid: int) -> Watch:
        lock_path().parent.mkdir(parents=True, exist_ok=True)
        return cls(os.open(lock_path(), os.O_RDONLY | os.O_CREAT, 0o644), identity(parent_pid))

    def state(self) -> str:
        """"running" (the lock is held), "gone" (it was ours and is free) or "not started"."""
        if self.parent is None:
            return "not started"  # no /proc: nothing to compare the file with
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "running"
        try:
            written = os.pread(self.fd, 64, 0).decode(errors="replace")
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return "gone" if written == self.parent else "not started"
