"""Which failures count as a database outage (retried without using the retry budget)."""

from __future__ import annotations

import psycopg
import psycopg.errors as pgerrors
import pytest
from psycopg_pool import PoolTimeout

from booking_core.messaging.errors import PermanentTaskError
from booking_core.tasks.outage import is_database_outage


def caused_by(cause: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("wrapper") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("exc", [
    psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"),
    PoolTimeout("couldn't get a connection after 5.00 sec"),
    pgerrors.AdminShutdown("terminating connection due to administrator command"),
    pgerrors.CannotConnectNow("the database system is starting up"),
    pgerrors.TooManyConnections("sorry, too many clients already"),
    pgerrors.ConnectionFailure("connection failure"),
    caused_by(psycopg.OperationalError("server closed the connection unexpectedly")),
])
def test_outages(exc):
    assert is_database_outage(exc)


@pytest.mark.parametrize("exc", [
    pgerrors.UniqueViolation("duplicate key"),
    pgerrors.QueryCanceled("canceling statement due to statement timeout"),
    pgerrors.LockNotAvailable("could not obtain lock"),
    pgerrors.DataError("invalid input syntax"),
    pgerrors.InvalidPassword("password authentication failed"),
    PermanentTaskError("refused"),
    ValueError("x"),
    None,
])
def test_not_outages(exc):
    assert not is_database_outage(exc)
