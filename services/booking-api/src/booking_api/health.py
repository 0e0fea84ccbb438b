"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint

from booking_api.database import get_db, get_redis
from booking_api.problems import ApiError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready when Postgres and Redis both answer."""
    checks = {}
    try:
        get_db().execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = type(e).__name__
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["redis"] = type(e).__name__
    if any(v != "ok" for v in checks.values()):
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        raise ApiError(503, "not-ready", f"Not ready: {failing} unreachable.")
    return {"status": "ready", "checks": checks}
