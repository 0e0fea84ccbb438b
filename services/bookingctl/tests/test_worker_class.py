"""The workers' CPU class under `bookingctl up`: the idle class by default, nice 10 alone when asked.

At the idle class a worker gets no CPU while anything else keeps every core busy, so a
machine shared with other loads needs the way out (BOOKING_WORKERS_CPU_IDLE=false); the
API, the relay and the events service never run there, whatever the setting.
"""

from __future__ import annotations

import pytest

from booking_settings.fields import SettingsError
from bookingctl.platform import Platform, PlatformConfig
from bookingctl.services import ASYNC_NICE
from bookingctl.settings import CtlSettings


def test_the_setting_defaults_to_the_idle_class_and_reads_false():
    assert CtlSettings.from_env({}).workers_cpu_idle is True
    assert CtlSettings.from_env({"BOOKING_WORKERS_CPU_IDLE": "false"}).workers_cpu_idle is False


def test_a_bad_value_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="BOOKING_WORKERS_CPU_IDLE"):
        CtlSettings.from_env({"BOOKING_WORKERS_CPU_IDLE": "sometimes"})


@pytest.mark.parametrize("idle", [True, False])
def test_only_the_workers_take_the_class_and_all_of_them_do(idle, tmp_path):
    specs = Platform(PlatformConfig(data_dir=tmp_path, workers_cpu_idle=idle))._service_specs()
    workers = [s for s in specs if "-worker-" in s.name]
    assert sorted(s.name for s in workers) == ["audit-worker-1", "email-worker-1", "invoice-worker-1",
                                               "webhook-worker-1"]
    assert {s.cpu_idle for s in workers} == {idle}
    assert {s.nice for s in workers} == {ASYNC_NICE}
    assert not any(s.cpu_idle for s in specs if s not in workers)
