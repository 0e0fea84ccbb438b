"""Per-request Postgres connection and per-process Redis client.

A request takes one pooled autocommit connection on first use and returns
it at teardown: authentication is one statement, the booking write another
(atomic on its own), and views that need more open an explicit transaction.
"""

from __future__ import annotations

import redis
from flask import Flask, current_app, g

from booking_core import db
from booking_core.config import Settings

_redis: dict[str, redis.Redis] = {}


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def get_db():
    """This request's connection (dict rows, autocommit)."""
    if "db" not in g:
        s = settings()
        g.db_pool = db.pool(s.database_url, max_size=s.db_pool_max, autocommit=True)
        g.db = g.db_pool.getconn(timeout=5)
    return g.db


def get_redis() -> redis.Redis:
    """A Redis client with short timeouts: ops views must fail fast, not hang."""
    url = settings().redis_url
    client = _redis.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        _redis[url] = client
    return client


def _close_db(exc: BaseException | None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        g.db_pool.putconn(conn)


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close_db)
