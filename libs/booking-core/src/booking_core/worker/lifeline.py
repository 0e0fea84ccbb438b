"""Worker processes die with their Dramatiq parent, and stop when they can no longer work.

Dramatiq's CLI forks its worker processes, and the processes middleware asks
for (the Prometheus exposition server), from its main thread, and nothing ties
them to it.  SIGKILL that parent and they are reparented to PID 1 and go on
consuming.  And the read end of a worker's log pipe is held by the worker
itself (Dramatiq makes the pipe before the fork, and the child never closes
that end) and by every process forked after it (the metrics process, later
workers), so the pipe never breaks: once 64 KiB of logs are unread, the next
log write blocks for ever with the logging lock held, and every worker thread
that logs stops with it.  The
consumer threads do not log, so they go on fetching, which refreshes the
worker's Redis heartbeat: Dramatiq never redelivers what such a worker holds,
and the reconciler, which finds those messages in Redis, leaves them alone.

`Lifeline`, set up in each worker process at boot, closes both gaps:

- `PR_SET_PDEATHSIG`: the kernel SIGKILLs the worker when the thread that
  forked it ends.  That is Dramatiq's main thread, which lives as long as the
  parent.  SIGKILL rather than SIGTERM: an orderly stop logs, and nobody reads
  the log pipe any more, so it could block for ever; the messages the worker
  held come back after the heartbeat timeout either way.
- a watchdog thread that ends the process when it cannot work:
  * a log write blocked for half the heartbeat timeout means nobody drains the
    worker's logs (the parent stopped or gone): the process exits at once
    (`os._exit`, as any orderly path would log and block), so its heartbeat
    stops and Dramatiq requeues its messages one heartbeat timeout later;
  * its parent is gone (where PR_SET_PDEATHSIG does not exist): the same;
  * the metrics exposition process died (`booking_core.worker.exposition`): an
    orderly stop (Dramatiq's own SIGTERM handler, called once), after which
    Dramatiq's parent, seeing a worker exit, stops the rest and exits, and the
    supervisor (bookingctl, or Kubernetes restarting the container) starts a
    whole new set, metrics included.  Not when the worker is itself stopping:
    Dramatiq's parent stops the metrics process right after the worker, and
    a second SIGTERM means "kill now" to Dramatiq.  So the worker's stop
    signals are noted on their way to Dramatiq's handler, and a dead metrics
    process counts only if no stop came within a grace period after it was
    seen gone.

Outside a process forked by Dramatiq's CLI (a test running a `Worker` in
threads) the middleware does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from dramatiq import Middleware

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: The exit status of a worker that ended itself: "temporary failure, start me again".
EXIT_STALLED = os.EX_TEMPFAIL if hasattr(os, "EX_TEMPFAIL") else 75


def die_with_parent(parent: int | None) -> bool:
    """Ask the kernel to SIGKILL us when the thread that forked us ends; False where it cannot.

    If `parent` already died before the request took effect, we die at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


class TimedStream:
    """A text stream that knows since when its oldest write in progress has been waiting.

    Dramatiq points a worker's logging and `sys.stdout`/`sys.stderr` at its log
    pipe; wrapped in this, a write that the pipe's reader never lets through is
    seen from another thread.
    """

    def __init__(self, stream):
        self.stream = stream
        self._since: dict[int, float] = {}

    def write(self, text: str):
        ident = threading.get_ident()
        self._since[ident] = time.monotonic()
        try:
            return self.stream.write(text)
        finally:
            self._since.pop(ident, None)

    def blocked_for(self, now: float) -> float:
        """Seconds the oldest write in progress has waited (0 when none is)."""
        started = list(self._since.values())  # one C call under the GIL: a consistent copy
        return max(0.0, now - min(started)) if started else 0.0

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def watch_streams() -> TimedStream:
    """Wrap this process's stderr (Dramatiq's log pipe) in a TimedStream wherever it is written to."""
    original = sys.stderr
    timed = TimedStream(original)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is original:
                handler.setStream(timed)
    if sys.stdout is original:
        sys.stdout = timed
    sys.stderr = timed
    return timed


@dataclass(frozen=True)
class Health:
    """What the watchdog saw in one round."""

    parent_alive: bool
    log_blocked_seconds: float
    #: "running", "not started" (yet, or never: no metrics fork) or "gone" (see booking_core.worker.exposition).
    exposition: str


def verdict(health: Health, *, stall_seconds: float) -> str | None:
    """What to do: "exit" (at once), "stop" (in order), or None to carry on."""
    if not health.parent_alive or health.log_blocked_seconds >= stall_seconds:
        return "exit"
    if health.exposition == "gone":
        return "stop"
    return None


def _last_words(text: str) -> None:
    """Write `text` to the inherited stderr (the log file or the container's), never waiting long for it."""
    writer = threading.Thread(target=os.write, args=(2, text.encode(errors="replace")), daemon=True)
    writer.start()
    writer.join(1.0)


#: Signals Dramatiq's worker process takes as "stop" (the second one as "kill now").
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Lifeline(Middleware):
    """Ties a Dramatiq worker process to its parent and ends it when it can no longer work (module docstring)."""

    def __init__(self, *, stall_seconds: float, interval_seconds: float = 0.5, grace_seconds: float = 2.0):
        self.stall_seconds = stall_seconds
        self.interval_seconds = min(interval_seconds, stall_seconds / 4)
        self.grace_seconds = grace_seconds
        self.parent: int | None = None
        self.streams: TimedStream | None = None
        self.stop_requested = False
        self._dramatiq_stop = None

    def after_process_boot(self, broker) -> None:
        parent = multiprocessing.parent_process()
        if parent is None:  # not a process Dramatiq's CLI forked
            return
        self.parent = parent.pid
        die_with_parent(self.parent)
        self.streams = watch_streams()
        # Dramatiq set its handlers before this hook runs (in this, the main thread); we note each stop first.
        self._dramatiq_stop = signal.getsignal(signal.SIGTERM)
        if callable(self._dramatiq_stop):
            for sig in _STOP_SIGNALS:
                signal.signal(sig, self._on_stop_signal)
        from booking_core.worker import exposition

        watch = exposition.Watch.open(self.parent) if exposition.in_use(broker) else None
        threading.Thread(target=self._watch, args=(watch,), name="lifeline", daemon=True).start()

    def _on_stop_signal(self, signum, frame) -> None:
        self.stop_requested = True
        return self._dramatiq_stop(signum, frame)

    def _watch(self, exposition_watch) -> None:
        gone_since: float | None = None
        while True:
            time.sleep(self.interval_seconds)
            now = time.monotonic()
            health = Health(parent_alive=os.getppid() == self.parent,
                            log_blocked_seconds=self.streams.blocked_for(now),
                            exposition=exposition_watch.state() if exposition_watch else "not started")
            action = verdict(health, stall_seconds=self.stall_seconds)
            if action == "exit":
                why = ("its parent is gone" if not health.parent_alive else
                       f"a log write has been blocked for {health.log_blocked_seconds:.1f} s: nobody reads its logs")
                _last_words(f"worker process {os.getpid()} exits: {why}; its messages are redelivered "
                            "after the heartbeat timeout\n")
                os._exit(EXIT_STALLED)
            if action != "stop":
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since >= self.grace_seconds and not self.stop_requested:
                self.stop_requested = True
                # On a thread of its own: both log, and this one must go on watching should a log write block.
                threading.Thread(target=self._stop_in_order, name="lifeline-stop", daemon=True).start()

    def _stop_in_order(self) -> None:
        """Stop as on SIGTERM, without sending one: a real one arriving too would then mean "kill now"."""
        log.error("The metrics exposition process died; stopping this worker so that its parent exits and is "
                  "started again with a new one.")
        if callable(self._dramatiq_stop):
            self._dramatiq_stop(signal.SIGTERM, None)  # clears Dramatiq's "running" flag: its main loop stops
        else:
            os.kill(os.getpid(), signal.SIGTERM)
