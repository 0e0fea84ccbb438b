"""One supervised child process: start, check, stop in order, never orphaned.

Children run in their own process group, so a Ctrl-C reaches only bookingctl,
which then stops them in the right order; and each asks the kernel to send it
SIGTERM should bookingctl itself die, so nothing is left running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A named child process with its own log file and stop policy."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
        user: int | None = None,
        group: int | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.user = user
        self.group = group
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Start the process, appending its output to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                user=self.user,
                group=self.group,
            )
        finally:
            log.close()
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (Dramatiq forks workers)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float | None = None) -> int | None:
        """Ask the child to stop, wait, then kill its group if it will not."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(self.stop_signal)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        # Reap anything the child left in its group (e.g. a forked worker).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode
