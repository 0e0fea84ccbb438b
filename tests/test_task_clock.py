"""bench/task_clock.py, which record_service_times.py loads into the workers: a task's service time leaves out
the time its thread waited for a CPU (other processes' work on a shared machine) and keeps the time it waited
on something else (Postgres, Redis, SMTP), which a pod with a CPU of its own waits too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq

from e2e_helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]


def load_clock():
    spec = importlib.util.spec_from_file_location("task_clock", ROOT / "bench" / "task_clock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(tmp_path: Path, work, *, cpu: int | None = None) -> dict:
    """Run `work` as one message between the middleware's hooks, in a thread (pinned to `cpu`); its line."""
    clock = load_clock().TaskClock(str(tmp_path))
    message = dramatiq.Message(queue_name="invoice", actor_name="issue_invoice", args=(), kwargs={}, options={})

    def run():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})  # this thread only
        clock.before_process_message(None, message)
        work()
        clock.after_process_message(None, message)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    [line] = (tmp_path / f"{os.getpid()}.jsonl").read_text().splitlines()
    return json.loads(line)


def burn(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_a_cpu_bound_task_sharing_its_cpu_is_timed_by_its_cpu_not_its_wall_time(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    # A process spinning on the same CPU: the task's thread gets at most half of it.
    spinner = subprocess.Popen([sys.executable, "-c",
                                f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        wait_until(lambda: int(Path(f"/proc/{spinner.pid}/stat").read_text().split()[13]) > 0,
                   what="the spinner to run")
        line = timed(tmp_path, lambda: burn(0.3), cpu=cpu)
    finally:
        spinner.kill()
        spinner.wait()
    assert line["queue"] == "invoice" and line["ok"]
    assert line["cpu"] >= 0.3
    assert line["runqueue"] >= 0.1, line  # it did wait for the CPU
    assert line["wall"] >= line["cpu"] + line["runqueue"] * 0.9
    assert abs(line["service"] - line["cpu"]) <= 0.05 + 0.1 * line["cpu"], line


def test_a_task_waiting_on_io_keeps_the_wait_in_its_service_time(tmp_path):
    line = timed(tmp_path, lambda: time.sleep(0.3))
    assert line["cpu"] < 0.05
    assert line["service"] >= 0.3 and line["service"] <= line["wall"]
