"""Each message's own service time, measured inside the worker thread that runs it (bench only).

`record_service_times.py` loads this module into the workers it starts (`dramatiq <broker> <actors>
task_clock`); importing it adds `TaskClock` to the worker's broker, first, so it brackets every other
middleware's work as well as the actor's.  Per message it appends one JSON line to
`$BENCH_TASK_CLOCK_DIR/<pid>.jsonl`:

* `wall`: seconds from the message's start to its end (what the task event log shows, `running` -> `done`);
* `cpu`: the thread's CPU seconds (`time.thread_time`);
* `runqueue`: seconds the thread was runnable but waited for a CPU (Linux's per-thread schedstat);
* `service`: `wall - runqueue`, the time the task would take with a CPU of its own: its CPU plus its waits on
  Postgres, Redis and SMTP.

Why not the wall time alone: this machine is shared, and the workers run at nice 10 and SCHED_IDLE, so a
render's wall time is mostly other processes' CPU (the first recording, at a load average of 30-40, read a
render of about 0.2 s of CPU as 7.5 s).  The run queue wait is the part of the wall time that is contention,
measured by the kernel for this thread; what is left does not depend on the load, except through the servers it
waits on.
"""

from __future__ import annotations

import json
import os
import threading
import time

import dramatiq
from dramatiq.middleware import Middleware

_ENV = "BENCH_TASK_CLOCK_DIR"


def _runqueue_seconds() -> float:
    """This thread's time waiting on a run queue so far (/proc/thread-self/schedstat, field 2, in ns)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


class TaskClock(Middleware):
    """Wall, CPU and run-queue time of each message, appended as JSON lines to one file per process."""

    def __init__(self, directory: str):
        self.directory = directory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._file = None

    def _out(self):
        if self._file is None:  # opened in the worker process (Dramatiq forks after import)
            self._file = open(os.path.join(self.directory, f"{os.getpid()}.jsonl"), "a")  # noqa: SIM115
        return self._file

    def before_process_message(self, broker, message):
        self._local.start = (time.perf_counter(), time.thread_time(), _runqueue_seconds())

    def after_process_message(self, broker, message, *, result=None, exception=None):
        start = getattr(self._local, "start", None)
        if start is None:
            return
        wall = time.perf_counter() - start[0]
        cpu = time.thread_time() - start[1]
        runqueue = _runqueue_seconds() - start[2]
        self._local.start = None
        line = json.dumps({"queue": message.queue_name, "actor": message.actor_name, "ok": exception is None,
                           "wall": round(wall, 6), "cpu": round(cpu, 6), "runqueue": round(runqueue, 6),
                           "service": round(max(cpu, wall - runqueue), 6)})
        with self._lock:
            out = self._out()
            out.write(line + "\n")
            out.flush()

    def after_skip_message(self, broker, message):
        self._local.start = None  # not run (a paused queue): no service time


if os.environ.get(_ENV):
    _broker = dramatiq.get_broker()
    _broker.add_middleware(TaskClock(os.environ[_ENV]), before=type(_broker.middleware[0]))
