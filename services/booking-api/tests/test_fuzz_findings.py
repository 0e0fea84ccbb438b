"""Regression tests for places where the OpenAPI document and the API disagreed about the same input.

The schemathesis run (test_fuzz_openapi.py) found the amount of zero and the
control characters in text (the document called them valid, the API refused
them); checking each documented pattern against the code that reads it, while
setting that run up, found the other two (cursor characters the decoder
skipped, Idempotency-Key values the pattern allowed). Each test pins both
sides on the values that showed it.
"""

from __future__ import annotations

import re

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking_api import idempotency
from booking_api.contract import AMOUNT_RULE, IDEMPOTENCY_HEADER_PATTERN
from booking_api.openapi_doc import document
from booking_api.problems import ApiError


def _document_accepts(schema_name: str, prop: str, value: str) -> bool:
    """Whether the document's schema of `schema_name.prop` accepts `value`."""
    schema = document()["components"]["schemas"][schema_name]["properties"][prop]
    return jsonschema.Draft202012Validator(schema).is_valid(value)


ZERO = "must be above zero"
SHAPE = AMOUNT_RULE


@pytest.mark.parametrize(("amount", "refusal"), [
    ("0", ZERO), ("0.0", ZERO), ("0.00", ZERO),  # found: the document's pattern allowed zero
    ("0.01", None), ("0.5", None), ("0.50", None), ("1", None), ("360.00", None),
    ("01", SHAPE), ("1.234", SHAPE), ("-1", SHAPE),
])
def test_the_document_and_the_api_agree_on_amounts(client, auth, booking_body, amount, refusal):
    # Given an amount, when the document judges it and the API is sent it
    resp = client.post("/api/v1/bookings", json=booking_body(amount=amount), headers=auth)
    # Then both say the same: valid and 201, or invalid and 422 saying why
    assert _document_accepts("BookingRequest", "amount", amount) is (refusal is None)
    assert resp.status_code == (201 if refusal is None else 422)
    if refusal:
        assert resp.get_json()["errors"] == [{"field": "amount", "message": refusal}]


@pytest.mark.parametrize(("name", "valid"), [
    ("Ada\x1cLovelace", False),  # found: a C0 control the document's pattern (`\S`) allowed
    ("Ada\x85Lovelace", False),  # C1 (NEL)
    ("Ada\u2028Lovelace", False),  # line separator
    ("Ada\u202eLovelace", False),  # bidi override
    ("\u00a0", False),  # only whitespace
    ("Ada Lovelace", True),
    ("\u0632\u0647\u0631\u0627\u200c\u06cc", True),  # a Persian name with ZWNJ
    ("\U0001f469\u200d\U0001f4bb", True),  # an emoji ZWJ sequence
])
def test_the_document_and_the_api_agree_on_text(client, auth, booking_body, name, valid):
    # Given a customer name, when the document judges it and the API is sent it
    resp = client.post("/api/v1/bookings", json=booking_body(customer={"name": name, "email": "ada@example.com"}),
                       headers=auth)
    # Then both say the same
    assert _document_accepts("BookingRequest", "item", name) is valid
    assert resp.status_code == (201 if valid else 422)
    if not valid:
        assert [e["field"] for e in resp.get_json()["errors"]] == ["customer.name"]


def test_a_cursor_with_a_character_outside_base64url_is_refused(client, auth, booking_body):
    # Given a real cursor of a tenant with two bookings
    for _ in range(2):
        assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 201
    cursor = client.get("/api/v1/bookings?limit=1", headers=auth).get_json()["next_cursor"]
    assert client.get(f"/api/v1/bookings?limit=1&cursor={cursor}", headers=auth).status_code == 200
    # When one character outside base64url is slipped in (Python's decoder used to skip it and accept)
    tampered = cursor[:4] + "!" + cursor[4:]
    resp = client.get(f"/api/v1/bookings?limit=1&cursor={tampered}", headers=auth)
    # Then it is refused, by the API and by the document's pattern
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == [{"field": "cursor", "message": "is not a cursor this API returned"}]
    (param,) = [p for p in document()["paths"]["/api/v1/bookings"]["get"]["parameters"] if p["name"] == "cursor"]
    assert not jsonschema.Draft202012Validator(param["schema"]).is_valid(tampered)
    assert jsonschema.Draft202012Validator(param["schema"]).is_valid(cursor)


@pytest.mark.parametrize(("header", "valid"), [
    ('""', False),  # found: the document's pattern (`^"?[!-~]{1,255}"?$`) allowed an empty quoted key
    ("k" * 255 + '"', False),  # and a bare key of 256 characters ending with a quote
    ('"', True), ('"k', True), ('k"', True), ('"k"', True), ("k" * 255, True), ('"' + "k" * 255 + '"', True),
    ("k" * 256, False), ('"' + "k" * 256 + '"', False), ("k k", False),
])
def test_the_document_and_the_api_agree_on_idempotency_keys(client, auth, booking_body, header, valid):
    # Given an Idempotency-Key header, when the document judges it and the API is sent it
    resp = client.post("/api/v1/bookings", json=booking_body(), headers={**auth, "Idempotency-Key": header})
    # Then both say the same: valid and 201, or invalid and 400 naming the header
    (param,) = [p for p in document()["paths"]["/api/v1/bookings"]["post"]["parameters"]
                if p["name"] == "Idempotency-Key"]
    assert jsonschema.Draft202012Validator(param["schema"]).is_valid(header) is valid
    assert resp.status_code == (201 if valid else 400)
    if not valid:
        assert [e["field"] for e in resp.get_json()["errors"]] == ["Idempotency-Key"]


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(alphabet='"k~é', max_size=260)
       | st.builds(lambda n, quote: quote + "k" * n + quote, st.integers(253, 258), st.sampled_from(["", '"'])))
def test_the_documented_key_pattern_is_exactly_what_the_api_reads(header):
    # Given any header value near the edges (quotes at the ends, lengths around 255, non-ASCII)
    try:
        idempotency.parse_key(header)
        accepted = True
    except ApiError:
        accepted = False
    # Then the document's pattern accepts it exactly when the API does
    assert bool(re.fullmatch(IDEMPOTENCY_HEADER_PATTERN, header)) is accepted
