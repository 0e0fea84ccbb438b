"""Which requests get an access log line, and how a bad setting is refused."""

import pytest

from booking_api.access_log import mode_from_env, wanted


@pytest.mark.parametrize(("mode", "status", "logged"), [
    ("errors", 201, False), ("errors", 304, False), ("errors", 400, True), ("errors", 503, True),
    ("all", 201, True), ("all", 500, True), ("off", 500, False), ("off", 200, False),
])
def test_wanted(mode, status, logged):
    assert wanted(mode, status) is logged


def test_the_mode_defaults_to_errors_and_reads_any_case():
    assert mode_from_env({}) == "errors"
    assert mode_from_env({"BOOKING_ACCESS_LOG": " ALL "}) == "all"


def test_an_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="errors, all, off"):
        mode_from_env({"BOOKING_ACCESS_LOG": "verbose"})
