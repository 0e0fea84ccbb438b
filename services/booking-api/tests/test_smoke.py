"""Given a token, when a booking is POSTed, then it is stored with three pending tasks."""

from booking_core.web.headers import BASE_SECURITY_HEADERS


def test_post_booking_returns_201_with_location_and_pending_tasks(client, auth, db_conn, booking_body):
    resp = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert resp.headers["Location"] == f"/api/v1/bookings/{body['id']}"
    assert {t: v["state"] for t, v in body["tasks"].items()} == {
        "email": "pending", "invoice": "pending", "audit": "pending"}
    n = db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'booking_id' = %s",
                        (body["id"],)).fetchone()["n"]
    assert n == 3
    got = client.get(body["links"]["self"], headers=auth).get_json()
    assert got["customer"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert got["amount"] == "360.00"


def test_every_response_carries_the_platforms_security_headers(client, auth):
    """booking_core.web.headers' base set, as booking-events sends it: on JSON and on problems alike."""
    for resp in (client.get("/healthz"), client.get("/api/v1/bookings", headers=auth),
                 client.get("/api/v1/bookings/not-a-uuid", headers=auth)):
        assert {k: resp.headers.get(k) for k in BASE_SECURITY_HEADERS} == BASE_SECURITY_HEADERS, resp.status
