"""The HTTP contract, written once: the models the API validates with and documents.

Every request, query, response and problem body is a pydantic v2 model here;
`validation.py` runs the request and query models and maps their errors to the
API's `errors: [{field, message}]` list, and `openapi_doc.py` generates the
OpenAPI 3.1 document from the same models' JSON Schema.  Each limit and
pattern is one constant below, used by the check and by the schema alike.

Why pydantic's own JSON Schema and a thin path table rather than a Flask
integration (spectree, flask-openapi3, apiflask): those validate inside their
own decorators and answer with their own error bodies, so keeping our RFC 9457
problems, the dotted-path error list and the 413/415/400/422 order would mean
overriding each of them; they also want their own blueprint or app class.
Pydantic alone adds one dependency, keeps the blueprints as they are, and its
JSON Schema (2020-12) is what OpenAPI 3.1 uses for schemas.

Checks that need a custom message raise `PydanticCustomError("invalid", msg)`;
that message is what the client reads.  A value the rules refuse never reaches
SQL: that includes lone UTF-16 surrogates (JSON allows `"\\udfff"`, UTF-8 and
Postgres do not), which every text rule refuses.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from booking_api.cursors import CURSOR_PATTERN, decode_cursor
from booking_core.messaging.contracts import QUEUES, TASK_STATES, TASKS
from booking_core.model.currencies import currency_codes, minor_unit
from booking_core.model.emails import InvalidEmail, check_email
from booking_core.model.text import MAX_TEXT, TEXT_PATTERN, check_text
from booking_core.tasks.deadletters import DeadLetter
from booking_scaling.depth import QueueDepth

MAX_BODY_BYTES = 64 * 1024
MAX_BODY_TEXT = f"{MAX_BODY_BYTES // 1024} KiB"
MAX_NIGHTS = 366
PAGE_MIN, PAGE_MAX, PAGE_DEFAULT = 1, 100, 20
#: A decimal string above zero: no sign, exponent or leading zeros, at most two decimals. Zero itself
#: ("0", "0.0", "0.00") is left out here too, so the document does not call a refused amount valid.
AMOUNT_PATTERN = r"^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$"
_ZERO_AMOUNT = re.compile(r"0(\.0{1,2})?")
AMOUNT_RULE = 'must be a decimal string with at most two decimals, e.g. "120.50"'
IDEMPOTENCY_KEY_MAX = 255
#: The key itself: printable ASCII; the header may wrap it in quotes (a structured-field string).
IDEMPOTENCY_KEY_CHARS = f"[!-~]{{1,{IDEMPOTENCY_KEY_MAX}}}"
IDEMPOTENCY_KEY_PATTERN = f"^{IDEMPOTENCY_KEY_CHARS}$"
#: The header as `idempotency.parse_key` reads it: a value quoted at both ends is a quoted key, any other
#: value is the key itself. So `""` (an empty quoted key) is refused, and a bare key may hold a quote
#: anywhere but at both ends.
IDEMPOTENCY_HEADER_PATTERN = (
    f'^(?:"{IDEMPOTENCY_KEY_CHARS}"'  # quoted
    f'|[!#-~][!-~]{{0,{IDEMPOTENCY_KEY_MAX - 1}}}'  # bare, not starting with a quote
    f'|[!-~]{{0,{IDEMPOTENCY_KEY_MAX - 1}}}[!#-~]'  # bare, not ending with one
    '|")$'  # a lone quote
)
#: DeadLetter fields the API does not show (`DeadLetter.as_dict` leaves them out).
DEAD_LETTER_HIDDEN = ("tenant_id", "kwargs", "options")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def invalid(message: str) -> PydanticCustomError:
    """An error whose message is shown to the client as is."""
    return PydanticCustomError("invalid", message.replace("{", "{{").replace("}", "}}"))


def _text(value: str) -> str:
    try:
        return check_text(value)
    except ValueError as e:
        raise invalid(str(e)) from None


def _email(value: str) -> str:
    try:
        return check_email(value).normalized
    except InvalidEmail as e:
        raise invalid(f"must be an email address: {e}") from None


def _date(value: str) -> date:
    if not _DATE.fullmatch(value):
        raise invalid("must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid("is not a valid calendar date") from None


def _currency(value: str) -> str:
    if minor_unit(value) is None:
        raise invalid("must be an ISO 4217 currency code, e.g. EUR")
    return value


def _amount(value: str) -> Decimal:
    if not re.fullmatch(AMOUNT_PATTERN, value):
        raise invalid("must be above zero" if _ZERO_AMOUNT.fullmatch(value) else AMOUNT_RULE)
    return Decimal(value)


def page_size(low: int, high: int):
    """The check of a `limit` query parameter from `low` to `high`: ASCII digits only (`int()` also takes
    other scripts' digits, which `str.isdigit` admits, and '²', which it cannot parse)."""

    def check(value: object) -> int:
        if isinstance(value, str) and value.isascii() and value.isdigit() and low <= int(value) <= high:
            return int(value)
        raise invalid(f"must be an integer from {low} to {high}")

    return check


_page_size = page_size(PAGE_MIN, PAGE_MAX)


def _cursor(value: str) -> tuple[datetime, str]:
    try:
        return decode_cursor(value)
    except ValueError:
        raise invalid("is not a cursor this API returned") from None


def one_of(values: tuple[str, ...]) -> object:
    """A string that must be one of `values` (an enum in the schema)."""

    def check(value: str) -> str:
        if value not in values:
            raise invalid(f"must be one of {', '.join(values)}")
        return value

    return Annotated[str, AfterValidator(check), Field(json_schema_extra={"enum": list(values)})]


def _schema(**extra) -> FieldInfo:
    """Keywords for the JSON Schema only (formats the checks above already enforce, or that document)."""
    return Field(json_schema_extra=extra)


Text = Annotated[str, AfterValidator(_text), Field(
    json_schema_extra={"minLength": 1, "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN},
    description=f"Trimmed; 1-{MAX_TEXT} characters; no control characters (joiners such as "
                "U+200C/U+200D are fine), no bidi overrides.")]
Email = Annotated[str, AfterValidator(_email), Field(
    json_schema_extra={"format": "email"}, examples=["ada@example.com"],
    description="One address (no display name); ASCII before the @, the domain may be "
                "internationalised. Stored normalised.")]
IsoDate = Annotated[str, AfterValidator(_date), _schema(format="date")]
Currency = Annotated[str, AfterValidator(_currency), Field(
    json_schema_extra={"enum": currency_codes()}, examples=["EUR"],
    description="An active ISO 4217 currency code.")]
Amount = Annotated[str, AfterValidator(_amount), Field(
    json_schema_extra={"pattern": AMOUNT_PATTERN}, examples=["360.00"],
    description="A decimal string above zero, with at most as many decimals as the currency "
                "has (at most two).")]
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"})]


class _Request(BaseModel):
    """Client input: no coercion (a number is not a string), unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ---------------------------------------------------------------------------


class Customer(_Request):
    name: Text
    email: Email


class BookingRequest(_Request):
    """A booking to confirm. Unknown fields are refused (422), not ignored."""

    customer: Customer
    item: Text
    check_in: Annotated[IsoDate, Field(examples=["2027-03-01"])]
    check_out: Annotated[IsoDate, Field(examples=["2027-03-04"],
                                        description=f"After check_in, by at most {MAX_NIGHTS} nights.")]
    currency: Currency
    amount: Amount

    @field_validator("check_out")
    @classmethod
    def _stay(cls, check_out: date, info: ValidationInfo) -> date:
        check_in = info.data.get("check_in")
        if check_in is not None:
            nights = (check_out - check_in).days
            if nights <= 0:
                raise invalid("must be after check_in")
            if nights > MAX_NIGHTS:
                raise invalid(f"stay must be at most {MAX_NIGHTS} nights")
        return check_out

    @field_validator("amount")
    @classmethod
    def _decimals(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is not None and -amount.as_tuple().exponent > minor_unit(currency):
            raise invalid(f"{currency} allows {minor_unit(currency)} decimals")
        return amount


class PageQuery(BaseModel):
    """`limit` and `cursor`, the paging of every list."""

    limit: Annotated[int, Field(ge=PAGE_MIN, le=PAGE_MAX), BeforeValidator(_page_size)] = PAGE_DEFAULT
    cursor: Annotated[str | None, Field(description="`next_cursor` of the previous page.",
                                        json_schema_extra={"pattern": CURSOR_PATTERN})] = None

    @field_validator("cursor")
    @classmethod
    def _check_cursor(cls, cursor: str | None) -> str | None:
        if cursor:
            _cursor(cursor)
        return cursor or None


class BookingQuery(PageQuery):
    """Query of the booking list (unknown parameters are ignored, as HTTP caches expect)."""

    state: Annotated[one_of(TASK_STATES) | None,
                     Field(description="Only bookings with a task in this state.")] = None
    task: Annotated[one_of(TASKS) | None,
                    Field(description="With `state`: only that task must be in the state.")] = None

    @field_validator("task")
    @classmethod
    def _needs_state(cls, task: str | None, info: ValidationInfo) -> str | None:
        if task is not None and "state" in info.data and info.data["state"] is None:
            raise invalid("needs state")
        return task


class QueueQuery(BaseModel):
    queue: one_of(QUEUES) | None = None


# --- responses --------------------------------------------------------------------------


class Task(_Response):
    """One side effect of a booking and where it stands."""

    state: one_of(TASK_STATES)
    attempts: Annotated[int, Field(ge=0)]
    last_error: str | None
    updated_at: Timestamp | None
    trace_id: str | None = None


Tasks = create_model("Tasks", __base__=_Response, **{t: (Task, ...) for t in TASKS})


class Contact(_Response):
    name: str
    email: Annotated[str, _schema(format="email")]


class Links(_Response):
    self_: Annotated[str, Field(alias="self"), _schema(format="uri-reference")]
    invoice: Annotated[str, _schema(format="uri-reference")]
    events: Annotated[str, _schema(format="uri-reference"), Field(
        description="The booking's progress as Server-Sent Events (served by the booking-events service).")]
    status_page: Annotated[str | None, _schema(format="uri-reference"), Field(
        description="The customer's progress page: a capability URL (no API token needed) that opens this "
                    "booking only and expires; null when the platform has no status-page secret.")] = None


class Booking(_Response):
    id: Annotated[str, _schema(format="uuid")]
    customer: Contact
    item: str
    check_in: date
    check_out: date
    amount: Annotated[str, Field(json_schema_extra={"pattern": AMOUNT_PATTERN}, examples=["360.00", "100"],
                                 description="With exactly the currency's minor units.")]
    currency: Annotated[str, _schema(pattern="^[A-Z]{3}$")]
    status: Annotated[str, Field(examples=["confirmed"])]
    created_at: Timestamp
    trace_id: str | None = None
    tasks: Tasks
    links: Links


class BookingPage(_Response):
    items: list[Booking]
    next_cursor: Annotated[str | None, Field(description="Pass as `cursor` for the next page; null on "
                                                         "the last page.")]


class FieldError(BaseModel):
    field: Annotated[str, Field(description="Dotted path of the field, e.g. `customer.email`; empty for "
                                            "the body as a whole.")]
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: Annotated[str, _schema(format="uri-reference")]
    title: str
    status: Annotated[int, Field(ge=400, le=599)]
    detail: str
    instance: Annotated[str | None, _schema(format="uri-reference")] = None
    errors: Annotated[list[FieldError] | None, Field(description="Field by field, for invalid input.")] = None


class QueueDepths(_Response):
    queues: list[QueueDepth]


class DeadLetterList(_Response):
    items: list[DeadLetter]
    next_cursor: Annotated[str | None, Field(description="Pass as `cursor` for the next page; null on "
                                                         "the last page.")]


class RequeueResult(_Response):
    requeued: DeadLetter


class Health(BaseModel):
    status: Literal["ok"]


class ReadinessChecks(BaseModel):
    postgres: str
    redis: str


class Readiness(BaseModel):
    #: `degraded`: still ready (Postgres answers), but a dependency the accept path can do without does not.
    status: Literal["ready", "degraded"]
    checks: ReadinessChecks
    #: The dependencies that do not answer while the API stays ready (`redis`).
    degraded: list[Literal["redis"]]
