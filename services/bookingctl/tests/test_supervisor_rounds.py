"""The supervisor logs each death once, survives its own errors and leaves held components down."""

from __future__ import annotations

import logging
import signal
import threading
import time

from bookingctl.platform import Platform, PlatformConfig, describe_exit


class DeadChild:
    """Stands in for a Child that died of `code`; counts restarts."""

    def __init__(self, code: int = -signal.SIGKILL):
        self.code = code
        self.started_at = time.monotonic() - 3600
        self.starts = 0

    def alive(self) -> bool:
        return False

    def returncode(self) -> int:
        return self.code

    def start(self) -> None:
        self.starts += 1


class DeadServer:
    """Stands in for an embedded server whose process died; its start may fail."""

    def __init__(self, fail: bool = False):
        self.child = DeadChild()
        self.fail = fail

    def start(self) -> None:
        self.child.starts += 1
        if self.fail:
            raise RuntimeError("postgres exited early")


def test_a_dead_server_is_logged_once_and_restarted(tmp_path, caplog):
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    platform.servers["redis"] = server = DeadServer()
    platform.supervise_once()
    assert server.child.starts == 1
    assert "redis died (killed by SIGKILL)" in caplog.text


def test_a_failed_restart_is_logged_backed_off_and_tried_again(tmp_path, caplog):
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    platform.servers["postgres"] = server = DeadServer(fail=True)
    platform.children["relay"] = relay = DeadChild(code=1)
    platform.supervise_once()  # the server's failure must not stop the relay's restart
    assert server.child.starts == 1 and relay.starts == 1
    assert "could not restart postgres" in caplog.text
    platform.supervise_once()  # within the backoff: not tried again, not logged again
    assert server.child.starts == 1
    assert caplog.text.count("postgres died") == 1
    platform._restarts["postgres"] = (1, 0.0)
    platform.supervise_once()
    assert server.child.starts == 2


def test_held_components_stay_down(tmp_path):
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    platform.servers["smtp"] = server = DeadServer()
    platform.children["relay"] = relay = DeadChild()
    platform.held |= {"smtp", "relay"}
    platform.supervise_once()
    assert server.child.starts == 0 and relay.starts == 0


def test_the_supervisor_thread_logs_an_error_and_goes_on(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="bookingctl")
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    rounds = []

    def failing_round() -> None:
        rounds.append(time.monotonic())
        raise ValueError("bad round")

    platform.supervise_once = failing_round
    platform._stopping.clear()
    thread = threading.Thread(target=platform._supervise)
    thread.start()
    deadline = time.monotonic() + 10
    while len(rounds) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    platform._stopping.set()
    thread.join(5)
    assert len(rounds) >= 3
    assert caplog.text.count("supervisor round failed") >= 3 and "bad round" in caplog.text


def test_exits_are_described_in_words():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "still running"
