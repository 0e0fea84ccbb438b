"""Validation of a booking request: pure, field by field, nothing trusted.

Returns a `NewBooking` or the list of problems, each naming its field as a
dotted path.  Unknown fields are refused rather than ignored, so a client's
typo ("check_outt") fails loudly instead of being silently dropped.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal

from booking_api.currencies import minor_unit
from booking_core.bookings import NewBooking

MAX_TEXT = 200
MAX_NIGHTS = 366
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?\Z")
_TOP = {"customer", "item", "check_in", "check_out", "amount", "currency"}
_CUSTOMER = {"name", "email"}


def _text(value, field: str, errors: list[dict]) -> str | None:
    """A non-empty single-line string of at most MAX_TEXT characters."""
    if not isinstance(value, str):
        errors.append({"field": field, "message": "must be a string"})
        return None
    value = value.strip()
    if not value:
        errors.append({"field": field, "message": "must not be empty"})
    elif len(value) > MAX_TEXT:
        errors.append({"field": field, "message": f"must be at most {MAX_TEXT} characters"})
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        errors.append({"field": field, "message": "must not contain control characters"})
    else:
        return value
    return None


def _date(value, field: str, errors: list[dict]) -> date | None:
    if not isinstance(value, str) or not _DATE.match(value):
        errors.append({"field": field, "message": "must be a date as YYYY-MM-DD"})
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append({"field": field, "message": "is not a valid calendar date"})
        return None


def _unknown(data: dict, allowed: set[str], prefix: str, errors: list[dict]) -> None:
    for key in sorted(set(data) - allowed, key=str):
        errors.append({"field": prefix + str(key)[:50], "message": "unknown field"})


def validate_booking(data) -> tuple[NewBooking | None, list[dict]]:
    """Check a parsed JSON body; return (booking, []) or (None, errors)."""
    errors: list[dict] = []
    if not isinstance(data, dict):
        return None, [{"field": "", "message": "request body must be a JSON object"}]
    _unknown(data, _TOP, "", errors)
    for key in sorted(_TOP - set(data)):
        errors.append({"field": key, "message": "is required"})
    customer = data.get("customer")
    name = email = None
    if "customer" in data:
        if not isinstance(customer, dict):
            errors.append({"field": "customer", "message": "must be an object with name and email"})
        else:
            _unknown(customer, _CUSTOMER, "customer.", errors)
            for key in sorted(_CUSTOMER - set(customer)):
                errors.append({"field": f"customer.{key}", "message": "is required"})
            if "name" in customer:
                name = _text(customer["name"], "customer.name", errors)
            if "email" in customer:
                email = customer["email"]
                if not isinstance(email, str) or not _EMAIL.match(email.strip()):
                    errors.append({"field": "customer.email", "message": "must be an email address"})
                    email = None
                else:
                    email = email.strip()
    item = _text(data["item"], "item", errors) if "item" in data else None
    check_in = _date(data["check_in"], "check_in", errors) if "check_in" in data else None
    check_out = _date(data["check_out"], "check_out", errors) if "check_out" in data else None
    if check_in and check_out:
        nights = (check_out - check_in).days
        if nights <= 0:
            errors.append({"field": "check_out", "message": "must be after check_in"})
        elif nights > MAX_NIGHTS:
            errors.append({"field": "check_out", "message": f"stay must be at most {MAX_NIGHTS} nights"})
    currency = None
    if "currency" in data:
        currency = data["currency"]
        if not isinstance(currency, str) or minor_unit(currency) is None:
            errors.append({"field": "currency", "message": "must be an ISO 4217 currency code, e.g. EUR"})
            currency = None
    amount = None
    if "amount" in data:
        raw = data["amount"]
        if not isinstance(raw, str) or not _AMOUNT.match(raw):
            errors.append({"field": "amount",
                           "message": 'must be a decimal string with at most two decimals, e.g. "120.50"'})
        elif Decimal(raw) <= 0:
            errors.append({"field": "amount", "message": "must be above zero"})
        else:
            amount = Decimal(raw)
            if currency and "." in raw and len(raw.split(".")[1]) > minor_unit(currency):
                errors.append({"field": "amount",
                               "message": f"{currency} allows {minor_unit(currency)} decimals"})
                amount = None
    if errors:
        return None, errors
    return NewBooking(name, email, item, check_in, check_out, amount, currency), []
