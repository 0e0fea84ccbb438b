"""The polling fallback: a strong ETag on GET /api/v1/bookings/{id}, If-None-Match answered 304.

And the 201's `links.status_page`: a capability URL that booking_core's verifier
opens for that booking only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from booking_api import create_app
from booking_core.model.status_links import verify


def create(client, auth, body) -> dict:
    resp = client.post("/api/v1/bookings", json=body, headers=auth)
    assert resp.status_code == 201
    return resp.get_json()


def test_a_booking_has_a_strong_etag_of_its_body(client, auth, booking_body):
    booking = create(client, auth, booking_body())
    resp = client.get(booking["links"]["self"], headers=auth)
    etag = resp.headers["ETag"]
    assert etag == '"' + hashlib.sha256(resp.data).hexdigest()[:32] + '"'  # strong: no W/ prefix
    assert resp.headers["Cache-Control"] == "private, no-cache"
    assert client.get(booking["links"]["self"], headers=auth).headers["ETag"] == etag, "stable while unchanged"


def test_if_none_match_with_the_current_etag_is_a_bodiless_304(client, auth, booking_body):
    booking = create(client, auth, booking_body())
    etag = client.get(booking["links"]["self"], headers=auth).headers["ETag"]
    resp = client.get(booking["links"]["self"], headers={**auth, "If-None-Match": etag})
    assert resp.status_code == 304 and resp.data == b"" and resp.headers["ETag"] == etag
    star = client.get(booking["links"]["self"], headers={**auth, "If-None-Match": f'"other", {etag}'})
    assert star.status_code == 304


def test_a_task_change_changes_the_etag_and_the_old_one_gets_the_new_body(client, auth, booking_body, db_conn):
    booking = create(client, auth, booking_body())
    etag = client.get(booking["links"]["self"], headers=auth).headers["ETag"]
    db_conn.execute("UPDATE booking_tasks SET state = 'running', attempts = 1, updated_at = clock_timestamp()"
                    " WHERE booking_id = %s AND task = 'email'", (booking["id"],))
    resp = client.get(booking["links"]["self"], headers={**auth, "If-None-Match": etag})
    assert resp.status_code == 200 and resp.headers["ETag"] != etag
    assert resp.get_json()["tasks"]["email"]["state"] == "running"


def test_another_tenants_booking_is_404_whatever_the_etag(client, auth, booking_body, db_conn):
    from booking_core.model import tenants

    booking = create(client, auth, booking_body())
    other = tenants.create_token(db_conn, tenants.ensure_tenant(db_conn, f"o-{time.time_ns()}")["id"])["token"]
    resp = client.get(booking["links"]["self"], headers={"Authorization": f"Bearer {other}", "If-None-Match": "*"})
    assert resp.status_code == 404


def test_the_201_links_a_status_page_that_opens_this_booking_only(settings, booking_body, auth):
    secret = "s3cret-" + "y" * 24
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(
        settings, status_secret=secret, events_base_url="http://events.test")})
    client = app.test_client()
    booking = create(client, auth, booking_body())
    url = booking["links"]["status_page"]
    assert url.startswith("http://events.test/status/")
    assert booking["links"]["events"] == f"http://events.test/api/v1/bookings/{booking['id']}/events"
    assert verify(secret, url.rsplit("/", 1)[1], now=time.time()) == booking["id"]
    got = client.get(booking["links"]["self"], headers=auth).get_json()
    assert got["links"]["status_page"] == url, "the same link every time (expiry follows the booking)"


def test_without_a_secret_there_is_no_status_page_link(client, auth, booking_body):
    assert create(client, auth, booking_body())["links"]["status_page"] is None
