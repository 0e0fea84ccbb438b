"""Server-Sent Events framing and the stream's end condition: pure functions, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from booking_core.messaging.contracts import TASKS

#: How long a browser waits before reconnecting after a dropped connection (ms).
RETRY_MS = 2000


def frame(event: str, data: Mapping, event_id: int | None = None) -> bytes:
    """One SSE message; JSON never contains a raw newline, so `data:` is one line."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    """A comment line: ignored by clients, but keeps proxies from closing an idle stream."""
    return f": {text}\n\n".encode()


def retry_hint() -> bytes:
    return f"retry: {RETRY_MS}\n\n".encode()


def is_complete(states: Mapping[str, str]) -> bool:
    """All three tasks done, or one dead: nothing more will happen without a human."""
    return all(states.get(t) == "done" for t in TASKS) or any(s == "dead" for s in states.values())


#: An event id as `frame` writes it: ASCII digits, at most a bigint's 19.  Not `int()`,
#: which also reads `+5`, `1_0`, ` 7 ` and other scripts' digits (`٣`).
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def parse_last_event_id(raw: str | None) -> int:
    """The `Last-Event-ID` header as an event id (0 = from the start); ValueError unless ASCII digits."""
    if raw is None or raw == "":
        return 0
    if not _EVENT_ID.fullmatch(raw):
        raise ValueError("Last-Event-ID must be ASCII digits")
    return int(raw)
