"""bookingctl's own setting, and the check `bookingctl up` makes of every process's before it starts one.

`bookingctl up` hands its environment to every process it starts.  Each of
them would refuse a bad variable at its own boot (exit 2, naming it), but the
supervisor would then restart it, and fail, for ever.  So `up` reads the
environment with each process's settings class first, with placeholders for
the server URLs it will provide, and stops at once, naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from booking_settings.fields import check, env, load

#: Stand-ins for the URLs of the servers `up` starts itself (never connected to: only parsed).
PLACEHOLDERS = {"DATABASE_URL": "postgresql://embedded", "REDIS_URL": "redis://embedded",
                "SMTP_URL": "smtp://embedded"}


@dataclass(frozen=True)
class CtlSettings:
    """What bookingctl itself reads from its environment."""

    #: The local data dir (servers' data, logs, mail, admin token), unless --data-dir gives one.
    data_dir: str = env("BOOKING_DATA_DIR", ".data")
    #: `up` runs the workers at Linux's idle scheduling class (below nice 19), so that a request
    #: takes the CPU from a rendering worker at once.  A worker there gets no CPU at all while
    #: anything else keeps every core busy: on a machine shared with other loads (a build, a test
    #: suite), false runs them at nice 10 in the normal class instead, still below the API.
    workers_cpu_idle: bool = env("BOOKING_WORKERS_CPU_IDLE", True)

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CtlSettings:
        return load(cls, environ)


def check_platform(environ: Mapping[str, str]) -> None:
    """Read `environ` as every process of a local platform will; SettingsError names the first bad variable."""
    # Imported here: bookingctl starts these services as processes and needs their settings only for this check.
    from booking_api.settings import ApiSettings
    from booking_events.settings import EventsSettings

    given = {**environ, **{k: v for k, v in PLACEHOLDERS.items() if not environ.get(k)}}
    ApiSettings.from_env(given)  # the shared Settings, the metrics address and the API's own
    EventsSettings.from_env(given)
