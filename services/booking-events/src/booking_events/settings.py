"""The events service's own settings: where it listens, its stream timing and caps, over the shared `Settings`.

Read once by `server.main` (the entry point) and handed to `create_app`; a bad
variable stops the process at boot, named (`booking_settings.boot`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from booking_core.config import Settings
from booking_events.admission import StreamLimits
from booking_settings.fields import check, env, load, millis_as_seconds


@dataclass(frozen=True)
class EventsSettings:
    """Everything `booking-events` reads from its environment."""

    core: Settings
    limits: StreamLimits
    host: str = env("BOOKING_EVENTS_HOST", "0.0.0.0")  # noqa: S104 - a container's port
    port: int = env("BOOKING_EVENTS_PORT", 8001, low=1, high=65_535)
    #: A comment line on an idle stream this often, so proxies keep it open.
    heartbeat_seconds: float = env("BOOKING_EVENTS_HEARTBEAT_MS", 15.0, parse=millis_as_seconds, above=0)
    #: The shared poller of booking events reads Postgres this often.
    poll_seconds: float = env("BOOKING_EVENTS_POLL_MS", 0.15, parse=millis_as_seconds, above=0)

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EventsSettings:
        return load(cls, environ, core=Settings.from_env(environ), limits=StreamLimits.from_env(environ))
