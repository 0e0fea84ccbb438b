"""Reading settings fields: types, bounds, defaults, and errors that name the variable in one line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import pytest

from booking_settings.boot import boot
from booking_settings.fields import SettingsError, check, env, load, millis_as_seconds, variables


@dataclass(frozen=True)
class Sample:
    url: str = env("SAMPLE_URL", required=True)
    count: int = env("SAMPLE_COUNT", 3, low=1, high=10)
    ratio: float = env("SAMPLE_RATIO", 0.5, above=0, high=1)
    flag: bool = env("SAMPLE_FLAG", False)
    mode: str = env("SAMPLE_MODE", "errors", choices=("errors", "all", "off"))
    sweep_seconds: float = env("SAMPLE_SWEEP_MS", 2.0, parse=millis_as_seconds, above=0)
    tags: dict = env("SAMPLE_TAGS", factory=dict, parse=lambda raw: dict(t.split("=") for t in raw.split(",")))
    extra: int = 7  # not read from the environment

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def extra_variables(cls) -> list[str]:
        return ["SAMPLE_BY_HAND"]


BASE = {"SAMPLE_URL": "postgresql://x"}


def test_defaults_apply_when_a_variable_is_unset_or_empty():
    s = load(Sample, {**BASE, "SAMPLE_COUNT": "", "SAMPLE_FLAG": "  "})
    assert (s.count, s.ratio, s.flag, s.mode, s.sweep_seconds, s.tags, s.extra) == (3, 0.5, False, "errors", 2.0, {}, 7)


def test_values_are_parsed_by_the_fields_type_and_stripped():
    s = load(Sample, {**BASE, "SAMPLE_COUNT": " 10 ", "SAMPLE_RATIO": "1", "SAMPLE_FLAG": "YES",
                      "SAMPLE_MODE": " All ", "SAMPLE_SWEEP_MS": "250", "SAMPLE_TAGS": "a=b,c=d"})
    assert (s.count, s.ratio, s.flag, s.mode, s.sweep_seconds, s.tags) == (10, 1.0, True, "all", 0.25,
                                                                           {"a": "b", "c": "d"})
    assert isinstance(s.count, int) and isinstance(s.ratio, float)


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("SAMPLE_COUNT", "abc", "SAMPLE_COUNT must be an integer, got 'abc'"),
    ("SAMPLE_COUNT", "2.5", "SAMPLE_COUNT must be an integer, got '2.5'"),
    ("SAMPLE_COUNT", "0", "SAMPLE_COUNT must be from 1 to 10, got '0'"),
    ("SAMPLE_COUNT", "11", "SAMPLE_COUNT must be from 1 to 10, got '11'"),
    ("SAMPLE_RATIO", "0", "SAMPLE_RATIO must be above 0 and at most 1, got '0'"),
    ("SAMPLE_RATIO", "nan", "SAMPLE_RATIO must be a finite number, got 'nan'"),
    ("SAMPLE_RATIO", "fast", "SAMPLE_RATIO must be a number, got 'fast'"),
    ("SAMPLE_FLAG", "maybe", "SAMPLE_FLAG must be true or false, got 'maybe'"),
    ("SAMPLE_MODE", "verbose", "SAMPLE_MODE must be one of errors, all, off, got 'verbose'"),
    ("SAMPLE_SWEEP_MS", "0", "SAMPLE_SWEEP_MS must be above 0, got '0'"),
    ("SAMPLE_SWEEP_MS", "1.5", "SAMPLE_SWEEP_MS must be an integer, got '1.5'"),
])
def test_a_bad_value_is_refused_in_one_line_naming_the_variable(name, raw, message):
    with pytest.raises(SettingsError) as e:
        load(Sample, {**BASE, name: raw})
    assert str(e.value) == message and e.value.name == name and "\n" not in str(e.value)


def test_a_required_variable_must_be_set():
    with pytest.raises(SettingsError, match="^SAMPLE_URL must be set$"):
        load(Sample, {"SAMPLE_URL": " "})


def test_the_bounds_hold_for_an_object_built_directly_too():
    good = Sample(url="u")
    with pytest.raises(SettingsError, match="SAMPLE_COUNT must be from 1 to 10, got 0"):
        dataclasses.replace(good, count=0)


def test_the_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Sample(url="u").count = 5  # type: ignore[misc]


def test_variables_lists_the_fields_and_the_extras():
    assert variables(Sample) == ["SAMPLE_URL", "SAMPLE_COUNT", "SAMPLE_RATIO", "SAMPLE_FLAG", "SAMPLE_MODE",
                                 "SAMPLE_SWEEP_MS", "SAMPLE_TAGS", "SAMPLE_BY_HAND"]


def test_boot_returns_the_settings_or_exits_2_with_one_line(capsys):
    assert boot(lambda: load(Sample, BASE), "sample").url == "postgresql://x"
    with pytest.raises(SystemExit) as e:
        boot(lambda: load(Sample, {**BASE, "SAMPLE_COUNT": "x"}), "sample")
    assert e.value.code == 2
    assert capsys.readouterr().err == "sample: bad setting: SAMPLE_COUNT must be an integer, got 'x'\n"


def test_a_process_refused_at_boot_exits_2_with_no_traceback():
    code = ("from booking_settings.boot import boot\n"
            "from booking_settings.fields import SettingsError\n"
            "def load():\n    raise SettingsError('X_PORT', \"must be an integer, got 'http'\")\n"
            "boot(load, 'prog')\nprint('started')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "prog: bad setting: X_PORT must be an integer, "
                                                                  "got 'http'\n")
