"""The webhook endpoints' HTTP contract: the models the OpenAPI document shows and responses are shaped by.

Endpoint bodies are checked by `booking_core.webhooks.endpoints.check` (shared
with `bookingctl webhooks`), which names the field it refuses; the request
models here document the same rules.  A signing secret appears in exactly two
responses, creation and rotation, and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from booking_api.contract import Timestamp, _Request, _Response, _schema, one_of, page_size
from booking_core.webhooks.addresses import URL_PATTERN
from booking_core.webhooks.deliveries import STATES
from booking_core.webhooks.endpoints import MAX_DESCRIPTION, MAX_URL
from booking_core.webhooks.payload import EVENT_TYPES

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
#: The longest rotation overlap a client may ask for: a week.
MAX_OVERLAP_SECONDS = 7 * 24 * 3600
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL, json_schema_extra={
    "format": "uri", "pattern": URL_PATTERN}, description="http or https, RFC 3986 characters only (an "
    "internationalised host in its xn-- form), no fragment. Private, loopback and link-local "
    "addresses are refused (the SSRF guard), at creation for an address literal, at each delivery for a name.")]
EventTypes = Annotated[list[EventType], Field(description="The event types sent; empty (the default): every type.")]


class WebhookEndpointRequest(_Request):
    url: Url
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""
    event_types: EventTypes = []
    enabled: bool = True


def _no_defaults(schema: dict) -> None:
    """Optional fields that must not be null: absent from the request, never `null` in the schema."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


def _at_least_one_field(schema: dict) -> None:
    """A patch changes something: the document says `{}` is refused (422 "Nothing to change"), as the API does."""
    _no_defaults(schema)
    schema["minProperties"] = 1


class WebhookEndpointPatch(_Request):
    """Any of the fields, none null: an absent field is left as it is; at least one is given."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_at_least_one_field)

    url: Annotated[Url, Field(default=None)]
    description: Annotated[str, Field(default=None, max_length=MAX_DESCRIPTION)]
    event_types: Annotated[EventTypes, Field(default=None)]
    enabled: Annotated[bool, Field(default=None, description="true also clears an automatic disabling.")]


def _whole(value: object) -> object:
    """JSON Schema's integer: 184.0 is one too (never a bool or a string)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RotateRequest(_Request):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_no_defaults)

    overlap_seconds: Annotated[int, BeforeValidator(_whole)] = Field(
        default=None, ge=0, le=MAX_OVERLAP_SECONDS, description=(
            "How long the previous secret keeps signing (both signatures are sent); default from "
            "BOOKING_WEBHOOKS_ROTATION_OVERLAP_SECONDS."))


#: The longest page of a delivery log.
MAX_DELIVERY_PAGE = 200


class DeliveryQuery(BaseModel):
    """Query of an endpoint's delivery log (checked by booking_api.validation.validate_query)."""

    state: Annotated[one_of(STATES) | None, BeforeValidator(lambda v: v or None)] = None  # ?state= is any
    limit: Annotated[int, Field(ge=1, le=MAX_DELIVERY_PAGE), BeforeValidator(page_size(1, MAX_DELIVERY_PAGE))] = 50


class ReplaySinceRequest(_Request):
    since: Annotated[str, _schema(format="date-time"), Field(description="Dead deliveries created at or after this.")]
    dry_run: bool = False


class WebhookEndpoint(_Response):
    id: Annotated[str, _schema(format="uuid")]
    url: str
    description: str
    event_types: list[EventType]
    enabled: bool
    disabled_reason: Annotated[str | None, Field(description="Why the platform disabled it (it kept failing).")]
    disabled_at: Timestamp | None
    failing_since: Annotated[Timestamp | None, Field(description="Start of the current run of failed attempts.")]
    previous_secret_until: Annotated[Timestamp | None, Field(
        description="Until then the previous secret signs too (a rotation's overlap).")]
    created_at: Timestamp
    updated_at: Timestamp


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: Annotated[str, _schema(pattern="^whsec_"), Field(
        description="The signing secret (Standard Webhooks). Shown only in this response: store it now.")]


class WebhookEndpointList(_Response):
    items: list[WebhookEndpoint]


class WebhookAttempt(_Response):
    attempt: int
    at: Timestamp
    status: int | None
    error: str | None
    latency_ms: int
    response: Annotated[str | None, Field(description="The start of the receiver's answer (truncated).")]
    next_attempt_at: Timestamp | None


class WebhookDelivery(_Response):
    id: Annotated[str, _schema(format="uuid")]
    event_id: Annotated[str, _schema(format="uuid")]
    webhook_id: Annotated[str, Field(description="The `webhook-id` header: the same on every attempt and replay.")]
    event_type: EventType
    booking_id: Annotated[str, _schema(format="uuid")]
    sequence: Annotated[int, Field(description="Per booking, from 1: receivers order events by it.")]
    state: Literal[STATES]  # type: ignore[valid-type]
    attempts: Annotated[int, Field(description="Attempts in the current round (a replay starts a new one).")]
    next_attempt_at: Timestamp | None
    last_status: int | None
    last_error: str | None
    last_response: str | None
    last_latency_ms: int | None
    created_at: Timestamp
    updated_at: Timestamp
    delivered_at: Timestamp | None


class WebhookDeliveryDetail(WebhookDelivery):
    endpoint_id: Annotated[str, _schema(format="uuid")]
    attempt_log: list[WebhookAttempt]


class WebhookDeliveryPage(_Response):
    items: list[WebhookDelivery]


class ReplayResult(_Response):
    status: Literal["replayed"]


class ReplaySinceResult(_Response):
    matched: Annotated[int, Field(description="Dead deliveries that match (replayed unless a dry run).")]
    dry_run: bool
