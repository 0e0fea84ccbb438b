"""Schema migrations: numbered SQL files applied once each, in order.

Safe to run from several processes at once (a Helm hook and `bookingctl up`):
an advisory lock serialises them and each file commits with its record.
"""

from __future__ import annotations

from importlib import resources

import psycopg

_LOCK_KEY = 0x626F6F6B  # "book"


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every bundled migration, sorted by name."""
    folder = resources.files("booking_core.db") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def migrate(url: str) -> list[str]:
    """Apply pending migrations to the database at `url`; return the names applied."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
