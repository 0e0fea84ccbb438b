"""The ops endpoints' models: dead-letter filters, bulk actions, task retry, queue pauses, tenants' plans.

Kept apart from `contract.py` (the booking models) so each stays small; the
OpenAPI document is generated from these the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from booking_api.contract import MAX_TEXT, TEXT_PATTERN, PageQuery, Text, _Response, _schema, invalid, one_of
from booking_core.messaging.contracts import QUEUES, TASKS
from booking_core.model import plans
from booking_core.model.tenants import TENANT_NAME
from booking_core.ops import filters


def _shared(check):
    """A check of booking_core.ops.filters as a pydantic validator: its message is the client's."""

    def run(value: object) -> object:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as e:
            raise invalid(str(e)) from None

    return run


#: RFC 3339 with its zone (`format: date-time`), checked by the filter contract's own rule.
AwareTime = Annotated[datetime, BeforeValidator(_shared(filters.check_time)), _schema(format="date-time")]


_Queue = Annotated[str, AfterValidator(_shared(filters.check_queue)), _schema(enum=list(QUEUES))]
_TenantName = Annotated[str, AfterValidator(_shared(filters.check_tenant)), _schema(pattern=f"^{TENANT_NAME.pattern}$")]
_TenantId = Annotated[str, AfterValidator(_shared(filters.check_tenant_id)), _schema(format="uuid")]
_ErrorText = Annotated[str, AfterValidator(_shared(filters.check_error)),
                       _schema(minLength=1, maxLength=MAX_TEXT, pattern=TEXT_PATTERN)]


class DeadLetterFilter(BaseModel):
    """Which open dead letters: every given field narrows the selection.

    The rules and messages are booking_core.ops.filters', the ops console's too.
    """

    model_config = ConfigDict(extra="forbid")

    queue: _Queue | None = None
    tenant: Annotated[_TenantName | None, Field(description="Only the letters of the tenant of this name.")] = None
    tenant_id: Annotated[_TenantId | None, Field(description="Only this tenant's letters (not with `tenant`).")] = None
    error: Annotated[_ErrorText | None, Field(description="Only letters whose final error contains this text "
                                                          "(case-insensitive, taken literally).")] = None
    dead_since: Annotated[AwareTime | None, Field(description="Dead at or after this time.")] = None
    dead_before: Annotated[AwareTime | None, Field(description="Dead before this time; later than "
                                                                "`dead_since` when both are given.")] = None

    @field_validator("tenant_id")
    @classmethod
    def _one_tenant(cls, tenant_id: str | None, info: ValidationInfo) -> str | None:
        if tenant_id is not None and info.data.get("tenant") is not None:
            raise invalid(filters.BOTH_TENANTS_RULE)
        return tenant_id

    @field_validator("dead_before")
    @classmethod
    def _after_since(cls, dead_before: datetime | None, info: ValidationInfo) -> datetime | None:
        try:
            filters.check_range(info.data.get("dead_since"), dead_before)
        except ValueError as e:
            raise invalid(str(e)) from None
        return dead_before

    def shared(self) -> filters.DeadLetterFilter:
        """The checked filter, as booking_core.ops.filters holds it (the tenant still by name)."""
        return filters.DeadLetterFilter(**{name: getattr(self, name) for name in filters.FIELDS})


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


class DryRunResult(_Response):
    action: one_of(("requeue", "discard"))
    dry_run: Annotated[bool, Field(description="Always true: nothing was changed.")]
    count: Annotated[int, Field(ge=0, description="Letters that match now.")]


class JobCounts(_Response):
    done: Annotated[int, Field(ge=0, description="Letters acted on so far.")]
    total: Annotated[int, Field(ge=0, description="Letters that matched when the job was started (more may "
                                                  "die meanwhile and match too).")]


class BulkJob(_Response):
    """A bulk requeue or discard, run by a runner of the platform whoever started it (API or console)."""

    id: Annotated[str, _schema(format="uuid")]
    action: one_of(("requeue", "discard"))
    state: Annotated[str, Field(description="queued → running → finished, or failed."),
                     _schema(enum=["queued", "running", "finished", "failed"])]
    filter: Annotated[dict, Field(description="The filter as resolved when it was started (tenant by id).")]
    actor: Annotated[str, Field(description="Who started it; each letter's audit entry names them.")]
    counts: JobCounts
    errors: Annotated[list[str], Field(description="Why it failed (empty unless failed).")]
    stalled: Annotated[bool, Field(description="Running, but its runner stopped reporting: another runner "
                                               "resumes it.")]
    created_at: Annotated[str, _schema(format="date-time")]
    updated_at: Annotated[str, _schema(format="date-time")]
    finished_at: Annotated[str | None, _schema(format="date-time")] = None


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


class TenantBacklog(_Response):
    """One tenant's tasks of a queue waiting in the outbox."""

    tenant_id: Annotated[str, Field(description="The tenant's id as the outbox rows carry it (at most 40 "
                                                "characters; empty for rows of no tenant).")]
    name: Annotated[str | None, Field(description="The tenant's name, as its operator set it (untrusted text); "
                                                  "null when the id is no tenant's.")]
    waiting: Annotated[int, Field(ge=0, description="Due now, waiting for their turn.")]
    later: Annotated[int, Field(ge=0, description="Waiting out a retry's backoff.")]
    oldest_waiting_age_seconds: Annotated[float, Field(ge=0, description="Age of its oldest due task (0 when "
                                                                         "none is due).")]


class OtherTenants(_Response):
    """What the tenants after the top ones hold together."""

    tenants: Annotated[int, Field(ge=0)]
    messages: Annotated[int, Field(ge=0, description="Their tasks in the outbox, due or later.")]
    oldest_waiting_age_seconds: Annotated[float, Field(ge=0)]


class QueueTenants(_Response):
    """Who is filling a queue: the tenants with the most tasks in the outbox, most first, and the rest summed."""

    top_tenants: Annotated[list[TenantBacklog], Field(max_length=10, description="At most 10, most tasks "
                                                                                 "first, ties by tenant id.")]
    other_tenants: OtherTenants


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
