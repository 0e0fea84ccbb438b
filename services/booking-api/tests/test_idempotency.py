"""`Idempotency-Key` on POST /api/v1/bookings (IETF httpapi idempotency-key draft)."""

from __future__ import annotations

import json
import uuid

import pytest

from booking_core import db
from booking_core.model import tenants

URL = "/api/v1/bookings"


def count(db_conn, table: str, tenant_id: str) -> int:
    return db_conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s",
                           (tenant_id,)).fetchone()["n"]


def other_tenant_auth(db_conn) -> tuple[dict, dict]:
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    token = tenants.create_token(db_conn, other["id"])["token"]
    return other, {"Authorization": f"Bearer {token}"}


def test_same_key_and_body_replays_the_same_booking(client, auth, db_conn, tenant, booking_body):
    # Given a booking created with an Idempotency-Key
    headers = {**auth, "Idempotency-Key": "order-42"}
    first = client.post(URL, json=booking_body(), headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    # When the same request is sent again (keys in another order, other spacing)
    raw = json.dumps(dict(reversed(list(booking_body().items()))), indent=3)
    again = client.post(URL, data=raw, content_type="application/json", headers=headers)
    # Then the stored response is replayed: same status, booking, Location; one booking row
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert count(db_conn, "bookings", tenant["id"]) == 1
    assert count(db_conn, "idempotency_keys", tenant["id"]) == 1
    n = db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'booking_id' = %s",
                        (first.get_json()["id"],)).fetchone()["n"]
    assert n == 3


def test_quoted_key_is_the_same_key(client, auth, db_conn, tenant, booking_body):
    # Given a key sent bare, then as a structured-field string
    first = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": "k-1"})
    again = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": '"k-1"'})
    # Then the second is a replay of the first
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count(db_conn, "bookings", tenant["id"]) == 1


def test_same_key_with_another_body_is_422_and_writes_nothing(client, auth, db_conn, tenant,
                                                             booking_body):
    # Given a key already used for one booking
    headers = {**auth, "Idempotency-Key": "order-43"}
    first = client.post(URL, json=booking_body(), headers=headers)
    assert first.status_code == 201
    # When it is sent with a different body
    resp = client.post(URL, json=booking_body(amount="361.00"), headers=headers)
    # Then 422 problem, and no second booking
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["type"].endswith("/idempotency-key-reused")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert count(db_conn, "bookings", tenant["id"]) == 1
    # And the original request still replays
    assert client.post(URL, json=booking_body(), headers=headers).get_json() == first.get_json()


def test_key_is_scoped_per_tenant(client, auth, db_conn, tenant, booking_body):
    # Given two tenants using the same key for the same body
    other, other_auth = other_tenant_auth(db_conn)
    a = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": "shared"})
    b = client.post(URL, json=booking_body(), headers={**other_auth, "Idempotency-Key": "shared"})
    # Then each gets its own booking, neither a replay
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers
    assert a.get_json()["id"] != b.get_json()["id"]
    assert count(db_conn, "bookings", tenant["id"]) == count(db_conn, "bookings", other["id"]) == 1
    # And tenant A cannot see tenant B's booking
    assert client.get(b.headers["Location"], headers=auth).status_code == 404


def test_request_still_in_flight_is_409(client, auth, db_conn, database_url, tenant,
                                        booking_body):
    # Given another transaction holding the key's advisory lock (a request in flight)
    key = "order-in-flight"
    with db.connect(database_url) as holder:
        holder.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s || ':' || %s, 0))",
                       (tenant["id"], key))
        # When the same key is posted
        resp = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": key})
        # Then 409 problem with Retry-After, and nothing is written
        assert resp.status_code == 409
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["type"].endswith("/idempotency-in-flight")
        assert int(resp.headers["Retry-After"]) >= 1
        assert count(db_conn, "bookings", tenant["id"]) == 0
        assert count(db_conn, "idempotency_keys", tenant["id"]) == 0
        holder.rollback()
    # And once the lock is released, the request goes through
    resp = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": key})
    assert resp.status_code == 201


def test_other_keys_are_not_blocked_by_a_request_in_flight(client, auth, database_url, tenant,
                                                           booking_body):
    with db.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s || ':' || %s, 0))",
                       (tenant["id"], "busy"))
        resp = client.post(URL, json=booking_body(), headers={**auth, "Idempotency-Key": "free"})
        assert resp.status_code == 201


def test_expired_key_creates_a_new_booking(client, auth, db_conn, tenant, booking_body):
    # Given a key used 25 hours ago (TTL is 24 h)
    headers = {**auth, "Idempotency-Key": "order-old"}
    first = client.post(URL, json=booking_body(), headers=headers)
    db_conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
                    " WHERE tenant_id = %s AND key = %s", (tenant["id"], "order-old"))
    # When the same request is sent again
    again = client.post(URL, json=booking_body(), headers=headers)
    # Then it is a new booking, and the key now remembers the new one
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    assert count(db_conn, "bookings", tenant["id"]) == 2
    row = db_conn.execute("SELECT body->>'id' AS id FROM idempotency_keys WHERE tenant_id = %s",
                          (tenant["id"],)).fetchall()
    assert row == [{"id": again.get_json()["id"]}]


def test_key_younger_than_the_ttl_still_replays(client, auth, db_conn, tenant, booking_body):
    headers = {**auth, "Idempotency-Key": "order-recent"}
    first = client.post(URL, json=booking_body(), headers=headers)
    db_conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '23 hours'"
                    " WHERE tenant_id = %s", (tenant["id"],))
    again = client.post(URL, json=booking_body(), headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize("key", ["", "   ", "has space", "x" * 256, "tab\there", "clé", '""'],
                         ids=["empty", "blank", "space", "too-long", "tab", "non-ascii",
                              "empty-quoted"])
def test_malformed_key_is_400_and_writes_nothing(client, auth, db_conn, tenant, booking_body,
                                                 key):
    # Given a malformed Idempotency-Key
    resp = client.post(URL, json=booking_body(),
                       headers={**auth, "Idempotency-Key": key.encode().decode("latin-1")})
    # Then 400 problem naming the header, and nothing is written
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"][0]["field"] == "Idempotency-Key"
    assert count(db_conn, "bookings", tenant["id"]) == 0
    assert count(db_conn, "idempotency_keys", tenant["id"]) == 0


def test_rejected_body_stores_no_key(client, auth, db_conn, tenant, booking_body):
    # Given an invalid body sent with a key
    headers = {**auth, "Idempotency-Key": "order-bad-first"}
    assert client.post(URL, json=booking_body(amount="0"), headers=headers).status_code == 422
    # Then the key is not consumed: a valid request with it creates a booking
    assert count(db_conn, "idempotency_keys", tenant["id"]) == 0
    resp = client.post(URL, json=booking_body(), headers=headers)
    assert resp.status_code == 201
    assert "Idempotent-Replayed" not in resp.headers
