"""A migrated database of a test's own on the session's Postgres server.

Why: the relay publishes the whole outbox of the database it runs on, so a test
that starts one on the shared session database would also run every task other
tests left waiting there, and a test that checks what was written would see it.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg

from booking_core.db.migrate import migrate


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create and migrate `<prefix>_<random>`, yield its URL, drop it (a failed drop only warns)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    try:
        migrate(url)
        yield url
    finally:
        for attempt in (1, 2):
            try:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                break
            except psycopg.OperationalError as e:  # a scratch database left behind is no test failure
                if attempt == 2:
                    warnings.warn(f"could not drop the scratch database {name}: {e}", stacklevel=1)
                time.sleep(1)
