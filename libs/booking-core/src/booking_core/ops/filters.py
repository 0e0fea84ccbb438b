"""The dead-letter filter's one contract: its fields, their rules and their messages.

The API (its pydantic models call these checks, so its OpenAPI document and
its 422s say the same), the ops console (its URL and form fields) and the bulk
jobs (the filter stored with each job) all read a filter through this module,
so a value one of them refuses the others refuse too, naming the same field
with the same message.  Every value is untrusted client text; the checks here
are pure, and only `resolve` touches the database (a tenant given by name).

Transport conventions stay with each surface: an HTML form sends its empty
fields, which the console drops as "not filled in" before calling `parse`, and
its `datetime-local` inputs carry no zone, which the console reads as UTC
(`local_time_as_utc`).  The API takes JSON and RFC 3339 as its document says.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg

from booking_core.messaging.contracts import QUEUES
from booking_core.model import tenants
from booking_core.model.text import check_text
from booking_core.tasks import deadletters

#: The filter's fields, in the order they are checked and reported.
FIELDS = ("queue", "tenant", "tenant_id", "error", "dead_since", "dead_before")
QUEUE_RULE = f"must be one of {', '.join(QUEUES)}"
TIME_RULE = "must be a date-time with its zone, e.g. 2026-11-30T12:00:00Z"
TENANT_RULE = f"must be a tenant name: {tenants.TENANT_NAME_RULE}"
TENANT_ID_RULE = "must be a tenant id (a UUID)"
BOTH_TENANTS_RULE = "give tenant or tenant_id, not both"
#: The time rule's message is deadletters' own, which Filter itself enforces.
RANGE_RULE = deadletters.RANGE_RULE

#: RFC 3339, as `format: date-time` means: a date, a time and a zone (Python alone would also
#: take a date without a time, or a time without a zone).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
#: What a browser's `<input type="datetime-local">` sends: no zone, seconds optional.
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


class FieldError(ValueError):
    """One field of a filter is invalid: `field` names it, `message` says what it must be."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidFilter(ValueError):
    """A filter with invalid fields; `errors` holds every one, in `FIELDS` order."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    def as_list(self) -> list[dict]:
        """The API's `errors` list: `[{"field": ..., "message": ...}]`."""
        return [{"field": e.field, "message": e.message} for e in self.errors]


def check_queue(value: object) -> str:
    if not isinstance(value, str) or value not in QUEUES:
        raise ValueError(QUEUE_RULE)
    return value


def check_tenant(value: object) -> str:
    if not isinstance(value, str) or not tenants.TENANT_NAME.fullmatch(value):
        raise ValueError(TENANT_RULE)
    return value


def check_tenant_id(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and len(value) == 36:  # the canonical form only, not {…} or urn:uuid:…
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValueError(TENANT_ID_RULE)


def check_error(value: object) -> str:
    """The error text to look for: the platform's one text rule (taken literally, any case)."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    return check_text(value)


def check_time(value: object) -> datetime:
    """An RFC 3339 date-time with its zone (or an already parsed aware one)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper().replace(" ", "T"))
        except ValueError:  # the shape is right but the date is not (2026-02-30)
            pass
    raise ValueError(TIME_RULE)


def check_range(dead_since: datetime | None, dead_before: datetime | None) -> None:
    """The range rule, reported on `dead_before`: an empty range selects nothing by construction."""
    if deadletters.empty_range(dead_since, dead_before):
        raise ValueError(RANGE_RULE)


_CHECKS = {"queue": check_queue, "tenant": check_tenant, "tenant_id": check_tenant_id, "error": check_error,
           "dead_since": check_time, "dead_before": check_time}


@dataclass(frozen=True)
class DeadLetterFilter:
    """A checked filter; `tenant` (a name) is still to be resolved to an id (`resolve`)."""

    queue: str | None = None
    tenant: str | None = None
    tenant_id: str | None = None
    error: str | None = None
    dead_since: datetime | None = None
    dead_before: datetime | None = None


def parse(raw: Mapping[str, object]) -> DeadLetterFilter:
    """The filter fields of `raw` (other keys are the caller's), checked; InvalidFilter names every bad one."""
    values: dict[str, object] = {}
    errors: list[FieldError] = []
    for name in FIELDS:
        if raw.get(name) is None:
            continue
        try:
            values[name] = _CHECKS[name](raw[name])
        except ValueError as e:
            errors.append(FieldError(name, str(e)))
    if "tenant" in values and "tenant_id" in values:
        errors.append(FieldError("tenant_id", BOTH_TENANTS_RULE))
    try:
        check_range(values.get("dead_since"), values.get("dead_before"))
    except ValueError as e:
        errors.append(FieldError("dead_before", str(e)))
    if errors:
        raise InvalidFilter(sorted(errors, key=lambda e: FIELDS.index(e.field)))
    return DeadLetterFilter(**values)


def local_time_as_utc(value: str) -> str:
    """A browser's zone-less `datetime-local` value as RFC 3339 UTC; any other text is returned as is."""
    if _LOCAL_TIME.fullmatch(value):
        return value + (":00Z" if value.count(":") == 1 else "Z")
    return value


def resolve(conn: psycopg.Connection, f: DeadLetterFilter) -> deadletters.Filter:
    """The filter booking_core's dead-letter functions take; InvalidFilter when `tenant` names no tenant."""
    tenant_id = f.tenant_id
    if f.tenant is not None:
        found = tenants.find_tenant(conn, f.tenant)
        if found is None:
            raise InvalidFilter([FieldError("tenant", f"no tenant is called “{f.tenant}”")])
        tenant_id = found["id"]
    return deadletters.Filter(queue=f.queue, tenant_id=tenant_id, error=f.error, dead_since=f.dead_since,
                              dead_before=f.dead_before)


def to_json(f: deadletters.Filter) -> dict:
    """A resolved filter as JSON (times as ISO-8601), to store with a bulk job and show on its page."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(f).items() if v is not None}


def from_json(doc: dict) -> deadletters.Filter:
    return deadletters.Filter(**{k: (datetime.fromisoformat(v) if k in ("dead_since", "dead_before") else v)
                                 for k, v in doc.items()})
