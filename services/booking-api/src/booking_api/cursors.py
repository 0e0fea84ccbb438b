"""Opaque keyset cursors for the paged lists: (timestamp, id) of the last row shown.

The booking list pages by (created_at, id), newest first; the dead-letter list
by (dead_at, id), oldest first.  The cursor only carries the pair.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

#: A cursor's alphabet: unpadded base64url (an empty cursor means the first page). Decoding checks it
#: first, since Python's base64 decoder skips characters outside the alphabet instead of refusing them.
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"

T = TypeVar("T")


def encode_cursor(ts: datetime, ident: str) -> str:
    """An opaque keyset cursor after the row with this timestamp and id."""
    raw = json.dumps([ts.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page(rows: list[T], limit: int, keyset: Callable[[T], tuple[datetime, str]]) -> tuple[list[T], str | None]:
    """The first `limit` of `rows` (read with `limit + 1`, so one more says there is a next page), and its cursor."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*keyset(rows[limit - 1]))


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; ValueError on anything it did not produce."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, ident = json.loads(raw)
        return datetime.fromisoformat(ts), str(uuid.UUID(ident))
    except Exception as e:  # noqa: BLE001 - any malformed cursor is the client's error
        raise ValueError("invalid cursor") from e
