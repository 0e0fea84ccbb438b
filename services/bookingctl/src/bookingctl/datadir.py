"""The local data dir: its lock, and the run file that tells other commands where things are.

`bookingctl up` holds an exclusive lock on `DIR/.lock` for its whole life, so
a second `up` on the same dir fails at once instead of starting a second
Postgres on the same files.  While it runs, `DIR/run/env.json` (mode 0600,
it holds passwords) names the URLs, so `bookingctl tokens …` and friends
reach the same servers.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


class DataDirBusy(RuntimeError):
    """Another `bookingctl up` is using this data dir."""


class DataDirLock:
    """An exclusive, non-blocking flock on DIR/.lock, released when the process ends."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirBusy(
                f"{self.path.parent} is in use by another `bookingctl up` (pid {holder}); "
                "stop it first or use another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def run_file(data_dir: Path) -> Path:
    return data_dir / "run" / "env.json"


def write_run_file(data_dir: Path, values: dict) -> None:
    """Write the run file atomically with mode 0600."""
    path = run_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2)
    os.replace(tmp, path)


def read_run_file(data_dir: Path) -> dict | None:
    """The running platform's URLs, or None when no `up` is running on this dir."""
    path = run_file(data_dir)
    if not path.exists():
        return None
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirBusy:
        return json.loads(path.read_text())
    lock.release()  # nobody holds it: the file is stale
    return None


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path` readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
