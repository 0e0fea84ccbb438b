"""gunicorn's access log, kept off the accept path: failed requests always, the rest when asked.

gunicorn formats every request's line (a dict of all its headers, the
timestamp, the format string) before it takes the next request.  On 2 cores
at 50 connections, logging every request cut the API's `/healthz` rate by a
fifth (3,091 → 2,462/s at the median; confirms 442 → 426/s, inside the noise;
`bench/README.md`, "Access log").  Successful requests are counted and timed
by the request metrics anyway; failures are what someone reads the log for.
`BOOKING_ACCESS_LOG` (`ApiSettings.access_log`, refused at start if unknown) picks:

- `errors` (the default): responses with status 400 and above, but 429: a client
  held at its plan's limit would write one line per refused request, at whatever
  rate it floods (a third of what such a refusal cost the API once the app's own
  part was cut, `bench/README.md`, "A tenant held at its limit"), and every one the
  same; they are counted in `booking_http_requests_total{status="429"}` and
  `booking_api_rate_limited_total` instead;
- `all`: every request, gunicorn's usual combined log;
- `off`: none.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from booking_api.settings import from_process


def wanted(mode: str, status: int) -> bool:
    """Whether a response with `status` gets an access log line under `mode`."""
    return mode == "all" or (mode == "errors" and status >= 400 and status != 429)


class AccessLog(Logger):
    """gunicorn's Logger, asked first whether the line is wanted at all."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        # gunicorn builds this in the master, after it read its config (the settings' first reading).
        self.mode = from_process().access_log

    def access(self, resp, req, environ, request_time) -> None:
        if wanted(self.mode, status_of(resp)):
            super().access(resp, req, environ, request_time)


def status_of(resp) -> int:
    """The status of what gunicorn logs: "400 Bad Request" or 400 alike, as gunicorn's own line reads it.

    Not `resp.status_code`: a response gunicorn builds for its own refusals never
    gets one, and reading it raised in the middle of the refusal, which then
    closed the connection without sending it.
    """
    status = getattr(resp, "status", None)
    try:
        return int(str(status).split(None, 1)[0]) if status else 0
    except ValueError:
        return 0
