"""The ops endpoints' models: dead-letter filters, bulk actions, task retry, queue pauses, tenants' plans.

Kept apart from `contract.py` (the booking models) so each stays small; the
OpenAPI document is generated from these the same way.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from booking_api.contract import PageQuery, Text, _Response, _schema, invalid, one_of
from booking_core.messaging.contracts import QUEUES, TASKS
from booking_core.model import plans
from booking_core.tasks import deadletters

#: RFC 3339, as `format: date-time` means: a date, a time and a zone (pydantic alone would
#: also take a bare number as a Unix time, or a time without a zone).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 string (or an already parsed aware time) goes on to pydantic."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    raise ValueError("must be a date-time with its zone, e.g. 2026-11-30T12:00:00Z")


AwareTime = Annotated[datetime, BeforeValidator(_rfc3339), _schema(format="date-time")]


class DeadLetterFilter(BaseModel):
    """Which open dead letters: every given field narrows the selection."""

    model_config = ConfigDict(extra="forbid")

    queue: one_of(QUEUES) | None = None
    tenant_id: Annotated[UUID | None, Field(description="Only this tenant's letters.")] = None
    error: Annotated[Text | None, Field(description="Only letters whose final error contains this text "
                                                    "(case-insensitive, taken literally).")] = None
    dead_since: Annotated[AwareTime | None, Field(description="Dead at or after this time.")] = None
    dead_before: Annotated[AwareTime | None, Field(description="Dead before this time; later than "
                                                                "`dead_since` when both are given.")] = None

    @field_validator("dead_before")
    @classmethod
    def _after_since(cls, dead_before: datetime | None, info: ValidationInfo) -> datetime | None:
        if deadletters.empty_range(info.data.get("dead_since"), dead_before):
            raise invalid(deadletters.RANGE_RULE)
        return dead_before


class DeadLetterQuery(DeadLetterFilter, PageQuery):
    """Query of the dead-letter list, paged like the booking list (unknown parameters are ignored).

    Paged because the list is longest exactly when it is needed: an outage can
    leave thousands of letters, and one response holding them all would be
    megabytes and could run past the statement timeout.
    """

    model_config = ConfigDict(extra="ignore")


class BulkDeadLetterRequest(DeadLetterFilter):
    """A bulk requeue or discard of every open letter that matches; `dry_run` only counts them."""

    dry_run: Annotated[StrictBool, Field(description="Only count the letters that match; change nothing.")] = False


class BulkResult(_Response):
    action: one_of(("requeue", "discard"))
    dry_run: bool
    count: Annotated[int, Field(ge=0, description="Letters that match (dry run) or were acted on.")]


class TaskRetryResult(_Response):
    booking_id: Annotated[str, _schema(format="uuid")]
    task: one_of(TASKS)
    message_id: Annotated[str, _schema(format="uuid")]


class PauseRequest(BaseModel):
    """The optional body of a pause: why, for the other operators."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text | None, Field(description="Why the queue is paused; shown wherever the pause "
                                                     "is.")] = None


class QueuePause(_Response):
    """Whether a queue is paused; while it is, by whom, since when and why."""

    paused: Annotated[bool, Field(description="While true, workers start none of its messages; they wait in "
                                              "the queue, none lost.")]
    paused_by: Annotated[str | None, Field(description="Who paused it (only while paused).")] = None
    paused_at: Annotated[AwareTime | None, Field(description="Since when (only while paused).")] = None
    reason: Annotated[str | None, Field(description="Why, as given, possibly empty (only while paused).")] = None


class QueuePauseResult(QueuePause):
    """A queue's pause state after a pause or a resume."""

    queue: one_of(QUEUES)
    changed: Annotated[bool, Field(description="False when the queue already was in that state (nothing "
                                               "changed, nothing audited).")]


# --- tenants' plans -------------------------------------------------------------------------------

_PLAN_NAME_PATTERN = plans.PLAN_NAME.pattern


def _whole(value: object) -> object:
    """A JSON integer, as JSON Schema counts them (5 and 5.0), never a string or a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise invalid("must be a whole number")
        return int(value)
    return value




class PlanBody(BaseModel):
    """A plan: how fast a tenant's bookings are admitted, and its share of the workers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Annotated[StrictStr, Field(pattern=f"^{_PLAN_NAME_PATTERN}$",
                                     description="1-63 characters: a-z, 0-9, '-', '_'.")]
    rate_per_second: Annotated[float, Field(strict=True, gt=0, le=plans.MAX_RATE, description=(
        "Bookings admitted per second, sustained (the bucket's refill rate)."))]
    # The bounds of burst and weight are checked by plans.check (which names the field); here for the schema.
    burst: Annotated[int, BeforeValidator(_whole), _schema(minimum=1, maximum=plans.MAX_BURST), Field(description=(
        "Bookings admitted at once after a quiet spell (the bucket's size)."))]
    weight: Annotated[int, BeforeValidator(_whole), _schema(minimum=1, maximum=plans.MAX_WEIGHT), Field(description=(
        "Share of the workers while several tenants have work waiting."))]


class PlanOut(PlanBody):
    model_config = ConfigDict(extra="forbid")


class TenantPlan(_Response):
    """A tenant and the plan it is on: its own, or the default."""

    tenant_id: Annotated[str, _schema(format="uuid")]
    tenant: str
    own: Annotated[bool, Field(description="False: on the default plan (the deployment's BOOKING_PLAN_DEFAULT_*).")]
    plan: PlanOut
    updated_at: Annotated[AwareTime | None, Field(description="When its own plan was set (only when `own`).")] = None
    updated_by: Annotated[str | None, Field(description="Who set it (only when `own`).")] = None


class TenantPlanResult(TenantPlan):
    changed: Annotated[bool, Field(description="False when the tenant already was on that plan (nothing changed, "
                                               "nothing audited).")]


class TenantList(_Response):
    items: list[TenantPlan]
    next_after: Annotated[str | None, Field(description="Pass as `after` for the next page; null on the last.")]


class TenantQuery(BaseModel):
    """Tenants by name, paged by the last name seen (unknown parameters are ignored)."""

    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=500)] = 100
    after: Annotated[Text | None, Field(description="`next_after` of the previous page.")] = None
