"""A Child: its own process group in our session, its nice, its signals, and no early death."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time

from booking_embedded import Child, linux_only_problem
from e2e_helpers import alive, proc_stat, thread_policies, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_child_has_its_own_group_in_our_session_at_the_nice_asked(tmp_path):
    child = Child("sleeper", SLEEPER, log_path=tmp_path / "sleeper.log", nice=7)
    child.start()
    try:
        got = proc_stat(child.pid)
        assert got["pgrp"] == child.pid  # its own group: a terminal's Ctrl-C does not reach it
        assert got["session"] == os.getsid(0)  # our session: one autogroup, so nice orders us
        assert got["nice"] == os.getpriority(os.PRIO_PROCESS, 0) + 7
    finally:
        child.stop(timeout=5)
    assert not alive(child.pid)


THREADED = [sys.executable, "-c", "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"]


def test_a_cpu_idle_child_and_its_threads_run_at_sched_idle(tmp_path):
    """SCHED_IDLE is inherited by the threads the child starts; a normal child stays SCHED_OTHER."""
    idle = Child("idle", THREADED, log_path=tmp_path / "idle.log", nice=3, cpu_idle=True)
    normal = Child("normal", THREADED, log_path=tmp_path / "normal.log")
    idle.start()
    normal.start()
    try:
        def threads(pid: int) -> int:
            return len(os.listdir(f"/proc/{pid}/task"))

        wait_until(lambda: threads(idle.pid) == 2 == threads(normal.pid), timeout=10, interval=0.05,
                   what="each child's second thread")
        assert thread_policies(idle.pid) == {os.SCHED_IDLE}
        assert proc_stat(idle.pid)["nice"] == os.getpriority(os.PRIO_PROCESS, 0) + 3  # the nice is kept as well
        assert thread_policies(normal.pid) == {os.SCHED_OTHER}
    finally:
        idle.stop(timeout=5)
        normal.stop(timeout=5)


def test_child_outlives_the_thread_that_asked_for_it(tmp_path):
    """PR_SET_PDEATHSIG fires when the forking thread ends: the launcher thread forks, not the caller."""
    child = Child("sleeper", SLEEPER, log_path=tmp_path / "sleeper.log")
    starter = threading.Thread(target=child.start)
    starter.start()
    starter.join()
    time.sleep(1.0)  # SIGTERM from the kernel would have arrived by now
    try:
        assert child.alive(), f"child died with its starter thread: {child.returncode()}"
    finally:
        child.stop(timeout=5)
    assert child.returncode() == -signal.SIGTERM


FORKING_PARENT = textwrap.dedent("""
    import os, signal, sys, time
    log = sys.argv[1]
    stopping = []
    def note(who):
        def handler(signum, frame):
            with open(log, "a") as f:
                f.write(f"{who} got {signum}\\n")
            stopping.append(time.monotonic())
        return handler
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, note("forked"))
        while True:
            time.sleep(0.1)
    signal.signal(signal.SIGTERM, note("parent"))
    with open(log, "a") as f:
        f.write(f"forked {pid}\\n")
    while not stopping or time.monotonic() - stopping[0] < 1.0:  # a graceful second, like Dramatiq's
        time.sleep(0.05)
""")


def test_a_polite_signal_reaches_the_parent_only_and_stop_kills_what_it_leaves(tmp_path):
    """Dramatiq's parent forwards SIGTERM itself; a second copy to its workers means "kill now"."""
    notes = tmp_path / "notes"
    child = Child("forking", [sys.executable, "-c", FORKING_PARENT, str(notes)], log_path=tmp_path / "f.log",
                  stop_timeout=5)
    child.start()
    forked = int(wait_until(lambda: notes.exists() and notes.read_text().split()[1], timeout=10, interval=0.05,
                            what="the forked process's pid"))
    assert proc_stat(forked)["pgrp"] == child.pid
    child.request_stop()  # what the platform does to every process first...
    child.stop()  # ...before waiting on each: still one signal
    time.sleep(0.3)
    assert notes.read_text().splitlines()[1:] == [f"parent got {signal.SIGTERM.value}"]
    assert not alive(forked)  # left behind by its parent, killed with the group


def test_sigkill_takes_the_whole_group(tmp_path):
    notes = tmp_path / "notes"
    child = Child("forking", [sys.executable, "-c", FORKING_PARENT, str(notes)], log_path=tmp_path / "f.log")
    child.start()
    forked = int(wait_until(lambda: notes.exists() and notes.read_text().split()[1], timeout=10, interval=0.05,
                            what="the forked process's pid"))
    child.signal(signal.SIGKILL)
    wait_until(lambda: not child.alive() and not alive(forked), timeout=10, interval=0.05, what="the group's end")
    assert child.returncode() == -signal.SIGKILL


def test_only_linux_can_run_the_local_runner():
    assert linux_only_problem("linux") is None
    for other in ("darwin", "win32", "freebsd14"):
        problem = linux_only_problem(other)
        assert "Linux only" in problem and repr(other) in problem
