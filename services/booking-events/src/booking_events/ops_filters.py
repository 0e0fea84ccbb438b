"""The dead-letter filter as it travels in the URL: parsed and checked here, pure (no I/O).

Filter state lives in the query string (GET form), so a view can be
bookmarked and shared.  Every field is untrusted text: a bad one is reported
by name and nothing is listed or changed.  Times are typed in the browser's
`datetime-local` form (no zone) and read as UTC, or given with a zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from booking_core.messaging.contracts import QUEUES
from booking_core.tasks import deadletters

ACTIONS = ("requeue", "discard")
MAX_ERROR_TEXT = 200
MAX_TENANT_NAME = 63
PAGE_SIZE = 50


class FilterError(ValueError):
    """One field of the filter is invalid; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LetterQuery:
    """The filter fields as the operator typed them (tenant by name), plus the page number."""

    queue: str = ""
    error: str = ""
    tenant: str = ""
    dead_since: str = ""
    dead_before: str = ""
    page: int = 1

    def since(self) -> datetime | None:
        return parse_time("dead_since", self.dead_since)

    def before(self) -> datetime | None:
        return parse_time("dead_before", self.dead_before)

    def params(self, **override) -> dict[str, str]:
        """The non-empty filter fields (not the page), for links and hidden fields."""
        fields = {"queue": self.queue, "error": self.error, "tenant": self.tenant,
                  "dead_since": self.dead_since, "dead_before": self.dead_before, **override}
        return {k: str(v) for k, v in fields.items() if v not in ("", None)}

    def query_string(self, **override) -> str:
        return urlencode(self.params(**override))

    def describe(self) -> str:
        """The filter in words, for the confirmation page."""
        parts = [f"queue {self.queue}" if self.queue else "every queue"]
        if self.tenant:
            parts.append(f"tenant {self.tenant}")
        if self.error:
            parts.append(f"error containing “{self.error}”")
        if self.dead_since:
            parts.append(f"dead since {self.dead_since}")
        if self.dead_before:
            parts.append(f"dead before {self.dead_before}")
        return ", ".join(parts)


def parse_time(field: str, raw: str) -> datetime | None:
    """`2026-11-30T12:00` (UTC) or any ISO-8601 time with a zone; None when empty."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise FilterError(field, "must be a date and time, e.g. 2026-11-30T12:00 (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse(args) -> LetterQuery:
    """A LetterQuery from a query string or form (a mapping of str); FilterError names the bad field."""
    def text(name: str) -> str:
        value = args.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    queue = text("queue")
    if queue and queue not in QUEUES:
        raise FilterError("queue", f"must be one of {', '.join(QUEUES)}")
    error = text("error")
    if len(error) > MAX_ERROR_TEXT or "\x00" in error:
        raise FilterError("error", f"must be at most {MAX_ERROR_TEXT} characters of text")
    tenant = text("tenant")
    if len(tenant) > MAX_TENANT_NAME or "\x00" in tenant:
        raise FilterError("tenant", "is not a tenant name")
    raw_page = text("page") or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= 100_000:
        raise FilterError("page", "must be a whole number from 1")
    q = LetterQuery(queue, error, tenant, text("dead_since"), text("dead_before"), int(raw_page))
    if deadletters.empty_range(q.since(), q.before()):
        raise FilterError("dead_before", deadletters.RANGE_RULE)
    return q


def parse_action(raw: str | None) -> str:
    if raw not in ACTIONS:
        raise FilterError("action", "must be requeue or discard")
    return raw
