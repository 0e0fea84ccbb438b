"""Bad input of every kind: the right problem+json, field by field, and nothing written.

"Nothing written" is checked by counting the rows of bookings, booking_tasks,
outbox and idempotency_keys (all tenants) before and after; tests run one at a
time on the session's database, so any change is the request's doing.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from booking_api import create_app
from booking_api.settings import ApiSettings
from booking_core.model import tenants

URL = "/api/v1/bookings"
TABLES = ("bookings", "booking_tasks", "outbox", "idempotency_keys")
OPS = [("get", "/api/v1/ops/queues"), ("get", "/api/v1/ops/dead-letters"),
       ("post", f"/api/v1/ops/dead-letters/{uuid.uuid4()}/requeue"),
       ("delete", f"/api/v1/ops/dead-letters/{uuid.uuid4()}")]


def row_counts(db_conn) -> dict[str, int]:
    return {t: db_conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in TABLES}


def assert_problem(resp, status: int) -> dict:
    """The response is an RFC 9457 problem with `status`; return its body."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = json.loads(resp.get_data())
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    return body


def error_fields(body: dict) -> set[str]:
    assert all(set(e) == {"field", "message"} and e["message"] for e in body["errors"])
    return {e["field"] for e in body["errors"]}


# --- 400 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b'{"customer": ', b"", b"{'single': 'quotes'}", b'{"a": 1,}', b"\xff\xfe{}",
    b"[" * 60_000,  # valid prefix nested deeper than the parser's recursion limit
], ids=["truncated", "empty", "single-quotes", "trailing-comma", "not-utf8", "deeply-nested"])
def test_malformed_json_is_400_and_writes_nothing(client, auth, db_conn, raw):
    # Given a body that is not JSON
    before = row_counts(db_conn)
    # When it is posted as application/json
    resp = client.post(URL, data=raw, content_type="application/json", headers=auth)
    # Then 400 problem, and nothing is written
    body = assert_problem(resp, 400)
    assert body["type"].endswith("/malformed-json")
    assert row_counts(db_conn) == before


# --- 401 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token bk_whatever",
    "Bearer bk_not-a-real-token", "Bearer not-even-our-prefix", "Bearer " + "bk_" + "x" * 300,
], ids=["missing", "empty", "scheme-only", "blank-token", "basic", "other-scheme", "unknown",
        "foreign", "too-long"])
def test_missing_or_wrong_token_is_401_with_challenge(client, db_conn, booking_body, header):
    # Given a request without a usable bearer token
    before = row_counts(db_conn)
    headers = {} if header is None else {"Authorization": header}
    # When it posts a valid booking or reads bookings
    post = client.post(URL, json=booking_body(), headers=headers)
    get = client.get(URL, headers=headers)
    # Then both are 401 problems with a Bearer challenge, and nothing is written
    for resp in (post, get):
        assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_counts(db_conn) == before


def test_revoked_token_is_401(settings, db_conn, tenant, booking_body):
    # Given a token that worked, then was revoked, on an API that caches no identity
    client = create_app({"TESTING": True, "API": ApiSettings(core=settings, token_cache_seconds=0)}).test_client()
    made = tenants.create_token(db_conn, tenant["id"])
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert client.get(URL, headers=headers).status_code == 200
    assert tenants.revoke_token(db_conn, made["id"])
    before = row_counts(db_conn)
    # When it is used again
    resp = client.post(URL, json=booking_body(), headers=headers)
    # Then 401, and nothing is written
    assert "revoked" in assert_problem(resp, 401)["detail"]
    assert row_counts(db_conn) == before


def test_a_revoked_token_stops_working_when_its_cached_identity_expires(settings, db_conn, tenant):
    # Given an API that keeps identities 0.5 s, and a token it has just seen
    client = create_app({"TESTING": True, "API": ApiSettings(core=settings, token_cache_seconds=0.5)}).test_client()
    made = tenants.create_token(db_conn, tenant["id"])
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert client.get(URL, headers=headers).status_code == 200
    # When the token is revoked
    assert tenants.revoke_token(db_conn, made["id"])
    # Then it may still work inside the documented window, and is refused once it has passed
    time.sleep(0.6)
    assert_problem(client.get(URL, headers=headers), 401)


def test_bearer_scheme_is_case_insensitive(client, token):
    assert client.get(URL, headers={"Authorization": f"bearer {token}"}).status_code == 200


# --- 403 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPS, ids=[f"{m}-{p.split('/')[4]}" for m, p in OPS])
def test_client_token_on_ops_endpoint_is_403(client, auth, db_conn, method, path):
    # Given a valid client (non-admin) token
    before = row_counts(db_conn)
    # When it calls an admin endpoint
    resp = getattr(client, method)(path, headers=auth)
    # Then 403 problem, and nothing is written
    assert assert_problem(resp, 403)["type"].endswith("/forbidden")
    assert row_counts(db_conn) == before


# --- 404 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("booking_id", [
    str(uuid.uuid4()), "not-a-uuid", "1", "%00", f"{{{uuid.uuid4()}}}", uuid.uuid4().hex,
    f"urn:uuid:{uuid.uuid4()}",
], ids=["unknown-uuid", "not-a-uuid", "number", "nul", "braces", "hex", "urn"])
def test_unknown_booking_and_its_invoice_are_404(client, auth, booking_id):
    for path in (f"{URL}/{booking_id}", f"{URL}/{booking_id}/invoice"):
        assert assert_problem(client.get(path, headers=auth), 404)["type"].endswith("/not-found")


def test_another_tenants_booking_and_invoice_are_404(client, auth, db_conn, booking_body):
    # Given a booking of this tenant and a token of another tenant
    booking = client.post(URL, json=booking_body(), headers=auth).get_json()
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    other_auth = {"Authorization": f"Bearer {tenants.create_token(db_conn, other['id'])['token']}"}
    # When the other tenant asks for it and its invoice
    # Then both are 404, exactly as for a booking that does not exist
    assert_problem(client.get(f"{URL}/{booking['id']}", headers=other_auth), 404)
    assert_problem(client.get(f"{URL}/{booking['id']}/invoice", headers=other_auth), 404)


def test_unknown_path_is_a_404_problem(client, auth):
    assert_problem(client.get("/api/v1/nothing-here", headers=auth), 404)


def test_wrong_method_is_a_405_problem_with_allow(client, auth):
    resp = client.put(URL, json={}, headers=auth)
    assert_problem(resp, 405)
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


# --- 415 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "application/xml",
    "application/jsonx", "multipart/form-data; boundary=x",
])
def test_body_not_sent_as_json_is_415(client, auth, db_conn, booking_body, content_type):
    # Given a valid booking sent with another (or no) content type
    before = row_counts(db_conn)
    kwargs = {"content_type": content_type} if content_type else {}
    resp = client.post(URL, data=json.dumps(booking_body()), headers=auth, **kwargs)
    # Then 415 problem, and nothing is written
    assert assert_problem(resp, 415)["type"].endswith("/unsupported-media-type")
    assert row_counts(db_conn) == before


def test_json_with_a_charset_parameter_is_accepted(client, auth, booking_body):
    resp = client.post(URL, data=json.dumps(booking_body()), headers=auth,
                       content_type="application/json; charset=utf-8")
    assert resp.status_code == 201


# --- 422 ---------------------------------------------------------------------------------

_INVALID = {
    # name: (overrides or whole body, expected fields)
    "email-not-an-address": ({"customer": {"name": "Ada", "email": "not-an-email"}},
                             {"customer.email"}),
    "email-two-ats": ({"customer": {"name": "Ada", "email": "a@b@example.com"}},
                      {"customer.email"}),
    "email-number": ({"customer": {"name": "Ada", "email": 42}}, {"customer.email"}),
    "customer-name-missing": ({"customer": {"email": "ada@example.com"}}, {"customer.name"}),
    "customer-both-missing": ({"customer": {}}, {"customer.name", "customer.email"}),
    "customer-not-object": ({"customer": "Ada <ada@example.com>"}, {"customer"}),
    "customer-null": ({"customer": None}, {"customer"}),
    "customer-unknown-field": ({"customer": {"name": "Ada", "email": "ada@example.com",
                                             "phone": "1"}}, {"customer.phone"}),
    "name-blank": ({"customer": {"name": "   ", "email": "ada@example.com"}}, {"customer.name"}),
    "name-too-long": ({"customer": {"name": "A" * 201, "email": "ada@example.com"}},
                      {"customer.name"}),
    "name-control-char": ({"customer": {"name": "Ada\nLovelace", "email": "ada@example.com"}},
                          {"customer.name"}),
    "name-bidi-override": ({"customer": {"name": "Ada \u202eecalevoL", "email": "ada@example.com"}},
                           {"customer.name"}),
    "name-bidi-isolate": ({"customer": {"name": "Ada \u2067x\u2069", "email": "ada@example.com"}},
                          {"customer.name"}),
    "name-next-line": ({"customer": {"name": "Ada\u0085Lovelace", "email": "ada@example.com"}},
                       {"customer.name"}),
    "item-bell": ({"item": "Room\x0712"}, {"item"}),
    "item-line-separator": ({"item": "Room\u202812"}, {"item"}),
    "email-non-ascii-local-part": ({"customer": {"name": "Zoë", "email": "zoë@example.com"}},
                                   {"customer.email"}),
    "email-quoted-local-part": ({"customer": {"name": "Ada", "email": '"ada l"@example.com'}},
                                {"customer.email"}),
    "email-domain-literal": ({"customer": {"name": "Ada", "email": "ada@[192.0.2.1]"}}, {"customer.email"}),
    "email-display-name": ({"customer": {"name": "Ada", "email": "Ada <ada@example.com>"}},
                           {"customer.email"}),
    "email-localhost": ({"customer": {"name": "Ada", "email": "ada@localhost"}}, {"customer.email"}),
    "item-number": ({"item": 5}, {"item"}),
    "item-empty": ({"item": ""}, {"item"}),
    "check-in-bad-month": ({"check_in": "2027-13-01"}, {"check_in"}),
    "check-in-feb-30": ({"check_in": "2027-02-30"}, {"check_in"}),
    "check-in-other-format": ({"check_in": "01/03/2027"}, {"check_in"}),
    "check-in-datetime": ({"check_in": "2027-03-01T12:00:00"}, {"check_in"}),
    "check-out-before-check-in": ({"check_out": "2027-02-27"}, {"check_out"}),
    "check-out-same-day": ({"check_out": "2027-03-01"}, {"check_out"}),
    "stay-too-long": ({"check_out": "2028-03-02"}, {"check_out"}),
    "amount-three-decimals": ({"amount": "1.005"}, {"amount"}),
    "amount-zero": ({"amount": "0"}, {"amount"}),
    "amount-zero-decimals": ({"amount": "0.00"}, {"amount"}),
    "amount-negative": ({"amount": "-5.00"}, {"amount"}),
    "amount-number-not-string": ({"amount": 360.0}, {"amount"}),
    "amount-integer-not-string": ({"amount": 360}, {"amount"}),
    "amount-exponent": ({"amount": "1e3"}, {"amount"}),
    "amount-leading-zero": ({"amount": "0360.00"}, {"amount"}),
    "amount-trailing-newline": ({"amount": "360\n"}, {"amount"}),
    "amount-non-ascii-digits": ({"amount": "3٦٠"}, {"amount"}),
    "amount-too-large": ({"amount": "10000000000.00"}, {"amount"}),
    "amount-decimals-for-jpy": ({"amount": "100.50", "currency": "JPY"}, {"amount"}),
    "currency-lowercase": ({"currency": "eur"}, {"currency"}),
    "currency-unknown": ({"currency": "ABC"}, {"currency"}),
    "currency-long": ({"currency": "EURO"}, {"currency"}),
    "currency-number": ({"currency": 978}, {"currency"}),
    "unknown-top-level-field": ({"check_outt": "2027-03-05"}, {"check_outt"}),
    "several-at-once": ({"customer": {"name": "", "email": "x"}, "amount": "-1",
                         "currency": "usd"},
                        {"customer.name", "customer.email", "amount", "currency"}),
}


@pytest.mark.parametrize(("overrides", "fields"), list(_INVALID.values()), ids=list(_INVALID))
def test_invalid_field_is_422_naming_the_field(client, auth, db_conn, booking_body, overrides,
                                              fields):
    # Given a booking with invalid fields
    before = row_counts(db_conn)
    # When it is posted
    resp = client.post(URL, json=booking_body(**overrides), headers=auth)
    # Then 422 problem naming exactly those fields, and nothing is written
    body = assert_problem(resp, 422)
    assert body["type"].endswith("/invalid-booking")
    assert error_fields(body) == fields
    assert row_counts(db_conn) == before


def test_every_missing_field_is_named(client, auth, db_conn):
    before = row_counts(db_conn)
    body = assert_problem(client.post(URL, json={}, headers=auth), 422)
    assert error_fields(body) == {"customer", "item", "check_in", "check_out", "amount",
                                  "currency"}
    assert {e["message"] for e in body["errors"]} == {"is required"}
    assert row_counts(db_conn) == before


@pytest.mark.parametrize("payload", [[], ["booking"], "booking", 42, None, True],
                         ids=["empty-list", "list", "string", "number", "null", "bool"])
def test_body_that_is_not_an_object_is_422(client, auth, db_conn, payload):
    before = row_counts(db_conn)
    resp = client.post(URL, data=json.dumps(payload), content_type="application/json",
                       headers=auth)
    body = assert_problem(resp, 422)
    assert body["errors"] == [{"field": "", "message": "request body must be a JSON object"}]
    assert row_counts(db_conn) == before


def test_valid_edge_values_are_accepted(client, auth, booking_body):
    # Given values at the edges of what is allowed
    for overrides in ({"amount": "0.01"}, {"amount": "9999999999.99"}, {"amount": "7"},
                      {"amount": "100", "currency": "JPY"}, {"check_out": "2028-03-01"},
                      {"customer": {"name": "A" * 200, "email": "a+b@sub.example.co"}}):
        # Then each is created
        resp = client.post(URL, json=booking_body(**overrides), headers=auth)
        assert resp.status_code == 201, (overrides, resp.get_json())


@pytest.mark.parametrize("query", [
    "limit=0", "limit=101", "limit=abc", "limit=-1", "limit=1.5", "limit=%C2%B2",
    "limit=%D9%A1%D9%A0", "state=lost", "task=email", "state=done&task=sms",
    "cursor=not-a-cursor", "cursor=W10",
], ids=lambda q: q.replace("%", ""))
def test_invalid_list_query_is_422_naming_the_parameter(client, auth, query):
    # Given an invalid query parameter, when bookings are listed
    body = assert_problem(client.get(f"{URL}?{query}", headers=auth), 422)
    # Then the problem names it
    assert error_fields(body) == {query.split("&")[-1].split("=")[0]}


# --- 413 ---------------------------------------------------------------------------------


def test_body_over_64_kib_is_413_and_writes_nothing(client, auth, db_conn, booking_body):
    # Given a body just over 64 KiB
    raw = json.dumps(booking_body(item="x" * (64 * 1024)))
    assert len(raw) > 64 * 1024
    before = row_counts(db_conn)
    # When it is posted
    resp = client.post(URL, data=raw, content_type="application/json", headers=auth)
    # Then 413 problem, and nothing is written
    assert assert_problem(resp, 413)["type"].endswith("/too-large")
    assert row_counts(db_conn) == before


def test_body_of_exactly_64_kib_is_read(client, auth, db_conn, booking_body):
    # Given a body of exactly 64 KiB (padded with JSON whitespace)
    raw = json.dumps(booking_body(item="x" * 201))
    raw = raw + " " * (64 * 1024 - len(raw))
    # Then it is parsed and validated (422 for the long item), not refused as too large
    resp = client.post(URL, data=raw, content_type="application/json", headers=auth)
    assert error_fields(assert_problem(resp, 422)) == {"item"}


# --- hostile text and money (issue 10, sections 7 and 8) -------------------------------------


@pytest.mark.parametrize(("where", "field"), [
    ("item", "item"), ("name", "customer.name"), ("email", "customer.email"),
    ("top-level key", ""), ("customer key", "customer"),
])
def test_lone_surrogate_is_422_naming_the_field_and_writes_nothing(client, auth, db_conn, booking_body,
                                                                   where, field):
    # Given JSON whose escape "\udfff" decodes to a lone UTF-16 surrogate (valid JSON, not UTF-8)
    body = booking_body(customer={"name": "Ada Lovelace", "email": "ada@example.com"})
    mark = "LONE-SURROGATE"
    if where == "item":
        body["item"] = f"Room {mark}"
    elif where == "name":
        body["customer"]["name"] = f"Ada {mark}"
    elif where == "email":
        body["customer"]["email"] = f"ada{mark}@example.com"
    elif where == "top-level key":
        body[mark] = 1
    else:
        body["customer"][mark] = 1
    raw = json.dumps(body).replace(mark, "\\udfff")
    assert json.loads(raw) != body  # the surrogate really is in the request
    before = row_counts(db_conn)
    # When it is posted
    resp = client.post(URL, data=raw, content_type="application/json", headers=auth)
    # Then 422 naming the field (not a 500 from the database), and nothing is written
    problem = assert_problem(resp, 422)
    assert field in error_fields(problem)
    assert row_counts(db_conn) == before


@pytest.mark.parametrize(("name", "item"), [
    ("سارا\u200cمحمدی", "Room 12"),            # Persian name with U+200C ZERO WIDTH NON-JOINER
    ("Ada Lovelace", "Desk for 👩\u200d💻"),    # emoji ZWJ sequence (U+200D)
    ("Zoë 山田\u200f", "Family 👨\u200d👩\u200d👧 room"),  # U+200F RIGHT-TO-LEFT MARK, a ZWJ family
])
def test_joiners_and_marks_of_real_text_are_accepted_and_kept(client, auth, booking_body, name, item):
    # Given real names and emoji that need format characters (Unicode category Cf)
    resp = client.post(URL, json=booking_body(item=item, customer={"name": name, "email": "ada@example.com"}),
                       headers=auth)
    # Then the booking is created and reads back exactly as sent
    assert resp.status_code == 201, resp.get_json()
    got = client.get(resp.headers["Location"], headers=auth).get_json()
    assert (got["customer"]["name"], got["item"]) == (name, item)


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("100", "JPY", "100"), ("7", "EUR", "7.00"), ("7.5", "USD", "7.50"), ("120.50", "EUR", "120.50"),
    ("12000", "KRW", "12000"),
])
def test_amounts_come_back_with_the_currency_minor_units(client, auth, booking_body, amount, currency,
                                                         shown):
    # Given a booking in a currency with 0 or 2 minor units
    headers = {**auth, "Idempotency-Key": f"money-{currency}-{amount}-{uuid.uuid4()}"}
    created = client.post(URL, json=booking_body(amount=amount, currency=currency), headers=headers)
    assert created.status_code == 201, created.get_json()
    # Then the 201, its replay, the single read and the list all show exactly those decimals
    replay = client.post(URL, json=booking_body(amount=amount, currency=currency), headers=headers)
    got = client.get(created.headers["Location"], headers=auth).get_json()
    listed = client.get(f"{URL}?limit=1", headers=auth).get_json()["items"][0]
    assert [b["amount"] for b in (created.get_json(), replay.get_json(), got, listed)] == [shown] * 4


def test_email_is_checked_by_the_shared_rule_and_stored_normalised(client, auth, booking_body):
    # Given an address with an internationalised, mixed-case domain (sendable without SMTPUTF8)
    body = booking_body(customer={"name": "Zoë", "email": "  Zoe@Exämple.TEST "})
    # Then it is accepted and stored in its normalised form
    resp = client.post(URL, json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["customer"]["email"] == "Zoe@exämple.test"
