"""The dead-letter filter as it travels in the console's URLs and forms: booking_core.ops.filters' contract.

Filter state lives in the query string (GET form), so a view can be
bookmarked and shared.  What this module adds to the shared contract is only
the HTML form's transport: empty fields mean "not filled in", and the
browser's `datetime-local` inputs (no zone) are read as UTC.  The rules and
their messages are the API's own, so a value the API refuses is refused here
by the same field with the same words.  The page number is the console's own
paging (the API pages by cursor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from booking_core.ops import bulkjobs, filters
from booking_core.ops.filters import FieldError, InvalidFilter

PAGE_SIZE = 50
#: The form fields that carry the filter (the contract's `tenant_id` is the API's; the console picks by name).
FORM_FIELDS = ("queue", "error", "tenant", "dead_since", "dead_before")


@dataclass(frozen=True)
class LetterQuery:
    """The filter fields as the operator typed them, the checked filter, and the page number."""

    queue: str = ""
    error: str = ""
    tenant: str = ""
    dead_since: str = ""
    dead_before: str = ""
    page: int = 1
    checked: filters.DeadLetterFilter = filters.DeadLetterFilter()

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


def parse(args: Mapping[str, str]) -> LetterQuery:
    """A LetterQuery from a query string or form; InvalidFilter names every bad field, as the API would."""
    def text(name: str) -> str:
        value = args.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    typed = {name: text(name) for name in FORM_FIELDS}
    given: dict[str, str] = {name: value for name, value in typed.items() if value}
    for name in ("dead_since", "dead_before"):
        if name in given:
            given[name] = filters.local_time_as_utc(given[name])
    errors: list[FieldError] = []
    checked = filters.DeadLetterFilter()
    try:
        checked = filters.parse(given)
    except InvalidFilter as e:
        errors = list(e.errors)
    raw_page = text("page") or "1"
    if not raw_page.isascii() or not raw_page.isdigit() or not 1 <= int(raw_page) <= 100_000:
        errors.append(FieldError("page", "must be a whole number from 1"))
    if errors:
        raise InvalidFilter(errors)
    return LetterQuery(**typed, page=int(raw_page), checked=checked)


def parse_action(raw: str | None) -> str:
    if raw not in bulkjobs.ACTIONS:
        raise InvalidFilter([FieldError("action", "must be requeue or discard")])
    return raw
