"""The supervisor restarts dead processes, backing off only while they keep dying young."""

from __future__ import annotations

import time

from bookingctl.platform import Platform, PlatformConfig


class FakeChild:
    """Stands in for a Child: dead until started, remembers its starts."""

    def __init__(self, started_at: float):
        self.started_at = started_at
        self.starts = 0

    def alive(self) -> bool:
        return False

    def returncode(self) -> int:
        return 1

    def start(self) -> None:
        self.starts += 1
        self.started_at = time.monotonic()


def test_a_process_that_ran_long_restarts_at_once_and_resets_its_backoff(tmp_path):
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    child = FakeChild(started_at=time.monotonic() - 3600)  # ran an hour before dying
    platform.children["relay"] = child
    platform._restarts["relay"] = (5, 0.0)  # it had crash-looped long ago
    platform.supervise_once()
    assert child.starts == 1
    count, next_at = platform._restarts["relay"]
    assert count == 1 and next_at - time.monotonic() <= 2


def test_a_process_that_dies_young_waits_longer_each_time(tmp_path):
    platform = Platform(PlatformConfig(data_dir=tmp_path))
    child = FakeChild(started_at=time.monotonic())
    platform.children["relay"] = child
    platform.supervise_once()
    assert platform._restarts["relay"][0] == 1
    platform._restarts["relay"] = (1, 0.0)  # let the next restart happen now
    platform.supervise_once()
    count, next_at = platform._restarts["relay"]
    assert child.starts == 2 and count == 2 and next_at - time.monotonic() > 3
