"""The ops endpoints' dead-letter models: filters, bulk actions, task retry.

Kept apart from `contract.py` (the booking models) so each stays small; the
OpenAPI document is generated from these the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from booking_api.contract import Text, _Response, _schema, one_of
from booking_core.contracts import QUEUES, TASKS


def _aware(value: datetime) -> datetime:
    """A time without a zone is read as UTC (the API answers in UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


AwareTime = Annotated[datetime, AfterValidator(_aware), _schema(format="date-time")]


class DeadLetterFilter(BaseModel):
    """Which open dead letters: every given field narrows the selection."""

    model_config = ConfigDict(extra="forbid")

    queue: one_of(QUEUES) | None = None
    tenant_id: Annotated[UUID | None, Field(description="Only this tenant's letters.")] = None
    error: Annotated[Text | None, Field(description="Only letters whose final error contains this text "
                                                    "(case-insensitive, taken literally).")] = None
    dead_since: Annotated[AwareTime | None, Field(description="Dead at or after this time.")] = None
    dead_before: Annotated[AwareTime | None, Field(description="Dead before this time.")] = None


class DeadLetterQuery(DeadLetterFilter):
    """Query of the dead-letter list (unknown parameters are ignored, as for the other lists)."""

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
