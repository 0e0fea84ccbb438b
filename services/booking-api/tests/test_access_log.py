"""Which requests get an access log line, and how a bad setting is refused."""

import pytest

from booking_api.access_log import wanted
from booking_api.settings import ApiSettings

CORE = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}


def mode_from_env(environ: dict[str, str]) -> str:
    return ApiSettings.from_env({**CORE, **environ}).access_log


@pytest.mark.parametrize(("mode", "status", "logged"), [
    ("errors", 201, False), ("errors", 304, False), ("errors", 400, True), ("errors", 503, True),
    # A tenant flooding at its limit would write one line per refusal: counted in the metrics instead.
    ("errors", 429, False), ("all", 429, True),
    ("all", 201, True), ("all", 500, True), ("off", 500, False), ("off", 200, False),
])
def test_wanted(mode, status, logged):
    assert wanted(mode, status) is logged


def test_the_mode_defaults_to_errors_and_reads_any_case():
    assert mode_from_env({}) == "errors"
    assert mode_from_env({"BOOKING_ACCESS_LOG": " ALL "}) == "all"


def test_an_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="BOOKING_ACCESS_LOG must be one of errors, all, off, got 'verbose'"):
        mode_from_env({"BOOKING_ACCESS_LOG": "verbose"})


def test_a_refusal_gunicorn_builds_itself_is_logged_by_its_status():
    """gunicorn's own refusal responses have `status` but no `status_code`: reading that one raised
    mid-refusal and the client got no answer (issue 18)."""
    from gunicorn.http.wsgi import Response

    from booking_api.access_log import status_of

    resp = Response(None, None, None)
    resp.status = "400 Bad Request"
    assert not hasattr(resp, "status_code")
    assert status_of(resp) == 400
    assert status_of(type("Info", (), {"status": 431})()) == 431  # the asyncio worker's log record
    assert status_of(Response(None, None, None)) == 0
