"""A Child: its own process group in our session, its nice, its signals, no early death, nothing left behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

from booking_embedded import Child, linux_only_problem, stop_together
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


def start_forking(tmp_path, **options) -> tuple[Child, int, Path]:
    """A started FORKING_PARENT child, the pid of the process it forked, and its notes file."""
    notes = tmp_path / "notes"
    child = Child("forking", [sys.executable, "-c", FORKING_PARENT, str(notes)], log_path=tmp_path / "f.log",
                  **options)
    child.start()
    try:
        # Generous: a Python start on a busy machine can take seconds.
        forked = int(wait_until(lambda: notes.exists() and notes.read_text().split()[1], timeout=30,
                                interval=0.05, what="the forked process's pid"))
    except AssertionError:
        child.kill()  # else it outlives the test: its parent gets SIGTERM at our exit, the forked one nothing
        raise
    return child, forked, notes


def test_a_polite_signal_reaches_the_parent_only_and_stop_kills_what_it_leaves(tmp_path):
    """Dramatiq's parent forwards SIGTERM itself; a second copy to its workers means "kill now"."""
    child, forked, notes = start_forking(tmp_path, stop_timeout=5)
    assert proc_stat(forked)["pgrp"] == child.pid
    child.request_stop()  # what the platform does to every process first...
    child.stop()  # ...before waiting on each: still one signal
    time.sleep(0.3)
    assert notes.read_text().splitlines()[1:] == [f"parent got {signal.SIGTERM.value}"]
    assert not alive(forked)  # left behind by its parent, killed with the group


def test_sigkill_takes_the_whole_group(tmp_path):
    child, forked, _ = start_forking(tmp_path)
    child.signal(signal.SIGKILL)
    wait_until(lambda: not child.alive() and not alive(forked), timeout=10, interval=0.05, what="the group's end")
    assert child.returncode() == -signal.SIGKILL


def kill_if_alive(pid: int) -> None:
    """Clean up after a failure: an orphan of the test must not outlive it."""
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_a_dead_parents_group_is_killed_as_soon_as_it_is_seen_dead(tmp_path):
    """A SIGKILLed Dramatiq parent leaves its workers running; the supervisor's first look ends them."""
    child, forked, _ = start_forking(tmp_path)
    os.kill(child.pid, signal.SIGKILL)  # the parent only, as `kill -9` of a Dramatiq parent does
    try:
        wait_until(lambda: not child.alive(), timeout=10, interval=0.05, what="the parent seen dead")
        # SIGKILLed by that look; dying takes the kernel a moment more.
        wait_until(lambda: not alive(forked), timeout=5, interval=0.01, what="the orphan's death")
        assert child.returncode() == -signal.SIGKILL
    finally:
        kill_if_alive(forked)


def test_a_restart_never_runs_beside_what_the_previous_run_left(tmp_path):
    child, forked, _ = start_forking(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    wait_until(lambda: not alive(child.pid), timeout=10, interval=0.05, what="the parent's death")
    child.start()  # without anyone having looked at it in between
    try:
        wait_until(lambda: not alive(forked), timeout=5, interval=0.01, what="the orphan's death")
    finally:
        child.stop(timeout=5)
        kill_if_alive(forked)


def test_stopping_stopped_children_is_orderly_and_does_not_add_up_their_timeouts(tmp_path):
    """SIGSTOPped children get SIGCONT after their stop signal, so they stop in order, at once."""
    children = [Child(f"sleeper{i}", SLEEPER, log_path=tmp_path / f"s{i}.log", stop_timeout=3) for i in range(3)]
    for child in children:
        child.start()
        child.signal(signal.SIGSTOP)
    started = time.monotonic()
    stop_together(children)
    took = time.monotonic() - started
    assert [c.returncode() for c in children] == [-signal.SIGTERM] * 3  # the stop signal, not the SIGKILL
    assert took < 3, f"{took:.1f} s"


IGNORES_TERM = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]


def test_children_that_ignore_their_stop_signal_are_killed_after_one_shared_timeout(tmp_path):
    children = [Child(f"stubborn{i}", IGNORES_TERM, log_path=tmp_path / f"t{i}.log", stop_timeout=1.5)
                for i in range(3)]
    for child in children:
        child.start()
    for child in children:
        wait_until(lambda c=child: "ready" in c.log_path.read_text(), timeout=10, interval=0.05, what="ready")
    started = time.monotonic()
    stop_together(children)
    took = time.monotonic() - started
    assert [c.returncode() for c in children] == [-signal.SIGKILL] * 3
    assert 1.4 < took < 3.0, f"{took:.1f} s: one timeout, not three in a row"


def test_only_linux_can_run_the_local_runner():
    assert linux_only_problem("linux") is None
    for other in ("darwin", "win32", "freebsd14"):
        problem = linux_only_problem(other)
        assert "Linux only" in problem and repr(other) in problem
