"""Run the contract's models on client input; their errors become the API's field list.

The rules live in `contract.py`; this module only turns pydantic's errors
into `[{"field": "customer.email", "message": ...}]`, each naming its field
as a dotted path ("" for the body as a whole), with the API's own wording for
pydantic's built-in checks.  Unknown fields are refused rather than ignored,
so a client's typo ("check_outt") fails loudly instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from booking_api.contract import BookingRequest
from booking_api.problems import ApiError
from booking_core.model.bookings import NewBooking
from booking_core.model.text import LONE_SURROGATE

M = TypeVar("M", bound=BaseModel)

#: Field names echoed back are cut to this length (an unknown key can be any size).
MAX_FIELD_ECHO = 50

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    # A key that is a lone surrogate: pydantic reports it on the object that holds it.
    "string_unicode": LONE_SURROGATE,
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
}


def field_errors(error: ValidationError) -> list[dict]:
    """pydantic's errors as the API's `errors` list."""
    out = []
    for e in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in e["loc"])[:MAX_FIELD_ECHO]
        if e["type"] == "invalid":
            message = e["msg"]
        elif not field and e["type"] in ("model_type", "model_attributes_type"):
            message = "request body must be a JSON object"
        else:
            message = _MESSAGES.get(e["type"], "is invalid")
        out.append({"field": field, "message": message})
    return out


def validate_booking(data: object) -> tuple[NewBooking | None, list[dict]]:
    """Check a parsed JSON body; return (booking, []) or (None, errors)."""
    try:
        req = BookingRequest.model_validate(data)
    except ValidationError as e:
        return None, field_errors(e)
    return NewBooking(req.customer.name, req.customer.email, req.item, req.check_in, req.check_out,
                      req.amount, req.currency), []


def validate_query(model: type[M], args: Mapping[str, str]) -> M:
    """Query parameters (first value of each) checked against `model`; ApiError 422 naming each bad one."""
    try:
        return model.model_validate(dict(args.items()))
    except ValidationError as e:
        raise ApiError(422, "invalid-query", "Some query parameters are invalid.", errors=field_errors(e)) from None
