"""The API's own settings: its server, its access log and its Postgres bounds, over the shared `Settings`.

Read once per process tree: gunicorn's master reads them when it loads its
config (`gunicorn_conf`, the entry point), before it binds or forks, so a bad
variable stops the start with exit status 2 and one line naming it; forked
workers inherit the same object (`from_process`).  The Flask app gets them
from `create_app` and views read `current_app.config["API"]`, typed, never
casting again at the point of use.  Why each Postgres bound exists and how
they fit together: `database.py`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from booking_core.config import MetricsAddress, Settings
from booking_settings.boot import boot
from booking_settings.fields import check, env, load

#: Which requests get an access log line (access_log.py).
ACCESS_LOG_MODES = ("errors", "all", "off")


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API's processes read from their environment."""

    core: Settings
    metrics: MetricsAddress = field(default_factory=MetricsAddress)
    #: Which responses get an access log line: errors (status >= 400), all, off.
    access_log: str = env("BOOKING_ACCESS_LOG", "errors", choices=ACCESS_LOG_MODES)
    #: How long a new connection has to send its request line and headers.
    header_timeout_seconds: float = env("BOOKING_HEADER_TIMEOUT_SECONDS", 10.0, above=0, high=300)
    #: How long a request's body may take to arrive once its headers have.
    body_timeout_seconds: float = env("BOOKING_BODY_TIMEOUT_SECONDS", 10.0, above=0, high=300)
    #: prometheus_client's multiprocess dir; empty: the master makes a temporary one.
    prometheus_multiproc_dir: str = env("PROMETHEUS_MULTIPROC_DIR", "")
    #: A live token's identity is kept this long per process (0: looked up on every request).
    token_cache_seconds: float = env("BOOKING_API_TOKEN_CACHE_SECONDS", 2.0, low=0, high=3600)
    db_pool_timeout_seconds: float = env("BOOKING_API_DB_POOL_TIMEOUT_SECONDS", 2.0, above=0, high=60)
    #: libpq's connect_timeout: whole seconds, and it treats anything below 2 as 2.
    db_connect_timeout_seconds: int = env("BOOKING_API_DB_CONNECT_TIMEOUT_SECONDS", 2, low=2, high=60)
    db_statement_timeout_ms: int = env("BOOKING_API_DB_STATEMENT_TIMEOUT_MS", 3000, low=1, high=600_000)
    db_lock_timeout_ms: int = env("BOOKING_API_DB_LOCK_TIMEOUT_MS", 2000, low=1, high=600_000)
    db_answer_timeout_seconds: float = env("BOOKING_API_DB_ANSWER_TIMEOUT_SECONDS", 3.5, above=0, high=600)
    db_check_timeout_seconds: float = env("BOOKING_API_DB_CHECK_TIMEOUT_SECONDS", 2.0, above=0, high=60)
    db_check_idle_seconds: float = env("BOOKING_API_DB_CHECK_IDLE_SECONDS", 1.0, low=0, high=3600)
    db_outage_hold_seconds: float = env("BOOKING_API_DB_OUTAGE_HOLD_SECONDS", 2.0, low=0, high=600)
    db_retry_after_seconds: int = env("BOOKING_API_DB_RETRY_AFTER_SECONDS", 5, low=1, high=3600)
    db_request_slots: int = env("BOOKING_API_DB_REQUEST_SLOTS", 3, low=1, high=1000)
    db_slot_wait_seconds: float = env("BOOKING_API_DB_SLOT_WAIT_SECONDS", 1.0, low=0, high=60)
    db_stall_seconds: float = env("BOOKING_API_DB_STALL_SECONDS", 0.5, above=0, high=60)
    readiness_timeout_seconds: float = env("BOOKING_API_READINESS_TIMEOUT_SECONDS", 1.5, above=0, high=60)
    #: The admission limiter (admission.py): a tenant's plan is kept this long per process (0: read every time).
    plan_cache_seconds: float = env("BOOKING_API_PLAN_CACHE_SECONDS", 5.0, low=0, high=3600)
    #: Tokens a process may take ahead for one tenant, at most 1/divisor of those left, spent within this long.
    limiter_lease_max: int = env("BOOKING_API_LIMITER_LEASE_MAX", 20, low=1, high=10_000)
    limiter_lease_divisor: int = env("BOOKING_API_LIMITER_LEASE_DIVISOR", 20, low=1, high=10_000)
    limiter_lease_seconds: float = env("BOOKING_API_LIMITER_LEASE_SECONDS", 0.25, low=0, high=60)
    #: A process refused for a tenant refuses it alone this long at most (0: asks Redis every time).
    limiter_refusal_hold_seconds: float = env("BOOKING_API_LIMITER_REFUSAL_HOLD_SECONDS", 1.0, low=0, high=60)
    #: A decision Redis does not answer within this is admitted (fail open) ...
    limiter_timeout_seconds: float = env("BOOKING_API_LIMITER_TIMEOUT_SECONDS", 0.25, above=0, high=60)
    #: ... and for this long after, bookings are admitted without asking.
    limiter_outage_hold_seconds: float = env("BOOKING_API_LIMITER_OUTAGE_HOLD_SECONDS", 1.0, low=0, high=600)

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        return load(cls, environ, core=Settings.from_env(environ), metrics=MetricsAddress.from_env(environ))


@functools.cache
def from_process() -> ApiSettings:
    """This process's settings: read from its environment on the first call, the same object after.

    gunicorn builds the worker and logger classes itself, so they cannot be handed
    the settings; they ask here, and get what the master read at its start.
    """
    return boot(lambda: ApiSettings.from_env(os.environ), "booking-api")
