"""Opaque keyset cursors for the paged lists: (timestamp, id) of the last row shown.

The booking list pages by (created_at, id), newest first; the dead-letter list
by (dead_at, id), oldest first.  The cursor only carries the pair.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime

#: A cursor's alphabet: unpadded base64url (an empty cursor means the first page). Decoding checks it
#: first, since Python's base64 decoder skips characters outside the alphabet instead of refusing them.
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"


def encode_cursor(row: dict) -> str:
    """An opaque keyset cursor after the booking `row`."""
    return encode_keyset(row["created_at"], row["id"])


def encode_keyset(ts: datetime, ident: str) -> str:
    """An opaque keyset cursor after the row with this timestamp and id."""
    raw = json.dumps([ts.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
