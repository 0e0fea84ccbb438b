"""Opaque keyset cursors for the booking list: (created_at, id) of the last row shown."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime


def encode_cursor(row: dict) -> str:
    """An opaque keyset cursor after `row` (newest-first order)."""
    raw = json.dumps([row["created_at"].isoformat(), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; ValueError on anything it did not produce."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, ident = json.loads(raw)
        return datetime.fromisoformat(ts), str(uuid.UUID(ident))
    except Exception as e:  # noqa: BLE001 - any malformed cursor is the client's error
        raise ValueError("invalid cursor") from e
