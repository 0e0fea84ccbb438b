"""One supervised child process: start, check, stop in order, never orphaned.

Every child runs in its own process group but in the caller's session:
- its own group, so a terminal's Ctrl-C (sent to the foreground group) reaches
  only the supervisor, which then stops the children in the right order;
- the caller's session, so Linux autogroup scheduling puts all of them in one
  scheduling group, where each child's nice value really orders them.

A child can also run at Linux's idle scheduling class (`cpu_idle`), for work
that must never delay a request (see `_child_setup`).

Each child asks the kernel for SIGTERM should its parent die, so nothing is
left running.  `PR_SET_PDEATHSIG` fires when the parent *thread* that forked
the child exits, not the process: so every child is forked by one
long-lived daemon thread (`launcher`), whichever thread asks for it.

What a child forks is its own business, but not when the child is gone: a
Dramatiq parent SIGKILLed leaves its worker processes running, reparented to
PID 1, holding their messages and the metrics port.  So the moment a child is
seen dead, its whole process group is SIGKILLed, before it is reaped: until
then its zombie keeps the group id from being reused, so the signal cannot
reach anyone else's processes.  A restart therefore never runs beside the
remains of the previous process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from queue import SimpleQueue
from typing import TypeVar

_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def linux_only_problem(platform: str = sys.platform) -> str | None:
    """Why the local runner cannot run on `platform`, or None on Linux."""
    if platform.startswith("linux"):
        return None
    return (f"bookingctl up runs on Linux only (it uses prctl(PR_SET_PDEATHSIG) so no child outlives it); "
            f"this is {platform!r}. Use the Helm chart, or a Linux VM or container.")


def _prctl() -> Callable[[int, int], int] | None:
    """libc's prctl, loaded once in the parent (loading a library after fork is unsafe)."""
    if linux_only_problem() is not None:
        return None
    return ctypes.CDLL("libc.so.6", use_errno=True).prctl


_PRCTL = _prctl()


def _child_setup(parent: int, nice: int, cpu_idle: bool) -> None:
    """In the child, before exec: die with the parent, then lower our priority by `nice`.

    With `cpu_idle`, the child (and every thread and process it starts, which
    inherit the class) runs at SCHED_IDLE.  Why not nice alone: a nice task
    that holds a CPU keeps it until its slice runs out when a normal task
    wakes, so a request that wakes its thread, then its Postgres backend, then
    its thread again, waited up to a slice at each hop behind a rendering
    worker (the dashboard's median doubled while workers drained).  A normal
    task that wakes preempts a SCHED_IDLE one at once.  Such a child still
    runs whenever a CPU is otherwise idle, and the kernel gives it a small
    share even on a busy one, so its work slows under load but is never
    stopped.  Only for children no request waits on: a Postgres backend, whose
    locks any request may need, must never be parked like this.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    if nice:
        os.nice(nice)
    if cpu_idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class Launcher:
    """A daemon thread that runs every fork, so the children's parent thread lives as long as the process."""

    def __init__(self) -> None:
        self._requests: SimpleQueue[tuple[Callable[[], object], Future]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the launcher thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            if self._thread is None:
                # Never joined and never ends: a daemon thread lives until the process exits.
                self._thread = threading.Thread(target=self._loop, name="child-launcher", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._requests.put((fn, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            fn, done = self._requests.get()
            try:
                done.set_result(fn())
            except BaseException as e:  # handed to the caller, never kills this thread
                done.set_exception(e)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


launcher = Launcher()


class Child:
    """A named child process with its own log file, stop policy and CPU priority."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
        nice: int = 0,
        cpu_idle: bool = False,
        user: int | None = None,
        group: int | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.nice = nice
        self.cpu_idle = cpu_idle
        self.user = user
        self.group = group
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._stop_requested = False

    def start(self) -> None:
        """Start the process (from the launcher thread), appending its output to its log file.

        Whatever is left of a previous run of this child (its group) is killed first.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.proc is not None:
            self._finish()
        self.proc = launcher.run(self._popen)
        self.started_at = time.monotonic()
        self._stop_requested = False

    def _popen(self) -> subprocess.Popen:
        parent, nice, cpu_idle = os.getpid(), self.nice, self.cpu_idle
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                process_group=0,
                preexec_fn=lambda: _child_setup(parent, nice, cpu_idle),
                user=self.user,
                group=self.group,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _exited(self) -> bool:
        """True once the process has ended, without reaping it (its zombie keeps its group id ours)."""
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped meanwhile by another thread's poll()
            return True

    def _finish(self) -> None:
        """The process has ended: SIGKILL whatever is left in its group, then reap it."""
        self.kill()
        self.proc.wait()

    def alive(self) -> bool:
        """True while the process runs; once it has ended, its group is killed and it is reaped (no zombie)."""
        if self.proc is None:
            return False
        if not self._exited():
            return True
        if self.proc.returncode is None:
            self._finish()
        return False

    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None and not self.alive() else None

    def signal(self, sig: int) -> None:
        """Send `sig` to the process we started; SIGKILL goes to its whole group.

        Only the parent gets a polite signal: it forwards it as it knows best
        (Dramatiq's parent to its forked workers, the postmaster to its
        backends).  Signalling the group too would make Dramatiq's parent
        forward a second SIGTERM, which its workers take as "kill now".
        SIGKILL cannot be forwarded, so it takes the whole group at once.
        """
        if sig == signal.SIGKILL:
            self.kill()
        elif self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def request_stop(self) -> None:
        """Send the stop signal once, then SIGCONT to the group; asking again changes nothing.

        A second SIGTERM is not "please" twice: Dramatiq's parent forwards each
        one, and its worker takes the second as "kill now" (mid-message).
        SIGCONT: a stopped process (SIGSTOP, a debugger) would otherwise hold
        the signal until its stop timeout ran out, and then be killed rather
        than stopped in order.  SIGCONT is the one signal every process of the
        group may get twice: to a running process it is nothing.
        """
        if not self._stop_requested:
            self._stop_requested = True
            self.signal(self.stop_signal)
            if self.proc is not None and not self._exited():
                try:
                    os.killpg(self.proc.pid, signal.SIGCONT)
                except (ProcessLookupError, PermissionError):
                    pass

    def kill(self) -> None:
        """SIGKILL the process and everything left in its group (e.g. a forked worker)."""
        if self.proc is None or self.proc.returncode is not None:
            return  # reaped: its group id may belong to someone else by now (_finish killed the group first)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the process to end (without reaping it); True if it did."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not self._exited():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
        return True

    def stop(self, timeout: float | None = None) -> int | None:
        """Ask the process to stop, wait up to its stop timeout (or `timeout`), then kill its group.

        Bounded whatever the process does: ignoring the signal, or stopped
        (SIGKILL needs no SIGCONT).
        """
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.request_stop()
            self.wait_exit(self.stop_timeout if timeout is None else timeout)
            self._finish()  # reap the process, and kill anything it left in its group
        return self.proc.returncode


def stop_together(children: list[Child]) -> None:
    """Stop `children`: each gets its stop signal now, in order, and its own stop timeout from now.

    One deadline per child, counted from the same moment, not one after the
    other: the whole stop takes the longest timeout at most, however many
    children ignore their signal.
    """
    started = time.monotonic()
    for child in children:
        child.request_stop()
    for child in children:
        child.stop(timeout=max(0.0, started + child.stop_timeout - time.monotonic()))
