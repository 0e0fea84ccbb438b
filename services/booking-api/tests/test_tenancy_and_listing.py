"""Tenants see only their own bookings; listing is newest first and pages by cursor."""

from __future__ import annotations

import logging
import uuid

import pytest

from booking_core.model import tenants

URL = "/api/v1/bookings"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def other_tenant_auth(db_conn) -> dict:
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    return {"Authorization": f"Bearer {tenants.create_token(db_conn, other['id'])['token']}"}


def create(client, auth, booking_body, n: int) -> list[str]:
    """Create n bookings, returning their ids in creation order."""
    ids = []
    for i in range(n):
        resp = client.post(URL, json=booking_body(item=f"Room {i}"), headers=auth)
        assert resp.status_code == 201
        ids.append(resp.get_json()["id"])
    return ids


def issue_invoice(db_conn, tenant_id: str, booking_id: str) -> None:
    """What the invoice worker leaves behind: the invoice row with its PDF, task done."""
    db_conn.execute("INSERT INTO invoices (booking_id, tenant_id, number, pdf, issued_at)"
                    " VALUES (%s, %s, %s, %s, now())", (booking_id, tenant_id, "INV-000001", PDF))
    db_conn.execute("UPDATE booking_tasks SET state = 'done', attempts = 1"
                    " WHERE booking_id = %s AND task = 'invoice'", (booking_id,))


def test_other_tenant_gets_404_for_booking_and_invoice(client, auth, db_conn, tenant,
                                                        booking_body):
    # Given tenant A's booking with its invoice issued, and tenant B's token
    [booking_id] = create(client, auth, booking_body, 1)
    issue_invoice(db_conn, tenant["id"], booking_id)
    assert client.get(f"{URL}/{booking_id}/invoice", headers=auth).status_code == 200
    b_auth = other_tenant_auth(db_conn)
    # When B asks for A's booking and invoice
    for path in (f"{URL}/{booking_id}", f"{URL}/{booking_id}/invoice"):
        resp = client.get(path, headers=b_auth)
        # Then 404, the same as for a booking that does not exist
        assert resp.status_code == 404
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["detail"] == "No such booking."
    # And B's list does not show it
    assert client.get(URL, headers=b_auth).get_json() == {"items": [], "next_cursor": None}


def test_list_is_newest_first(client, auth, booking_body):
    # Given three bookings created one after another
    ids = create(client, auth, booking_body, 3)
    # When listed
    body = client.get(URL, headers=auth).get_json()
    # Then newest first, all of them, no next page
    assert [b["id"] for b in body["items"]] == ids[::-1]
    assert body["next_cursor"] is None
    assert [b["item"] for b in body["items"]] == ["Room 2", "Room 1", "Room 0"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
def test_cursor_pagination_visits_every_booking_exactly_once(client, auth, booking_body, limit):
    # Given seven bookings
    ids = create(client, auth, booking_body, 7)
    # When pages of `limit` are followed by their cursors
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = client.get(URL, query_string=query, headers=auth)
        assert resp.status_code == 200
        body = resp.get_json()
        assert len(body["items"]) <= limit
        seen += [b["id"] for b in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 20, "pagination does not end"
    # Then every booking appears exactly once, newest first
    assert seen == ids[::-1]
    assert pages == -(-7 // limit)


def test_bookings_created_after_a_page_do_not_disturb_its_cursor(client, auth, booking_body):
    # Given a first page of two out of four bookings
    old = create(client, auth, booking_body, 4)
    page = client.get(URL, query_string={"limit": 2}, headers=auth).get_json()
    # When new bookings arrive before the next page is read
    create(client, auth, booking_body, 2)
    rest = client.get(URL, query_string={"limit": 10, "cursor": page["next_cursor"]},
                      headers=auth).get_json()
    # Then the next page continues where the first ended
    assert [b["id"] for b in rest["items"]] == old[:2][::-1]


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4IiwgInkiXQ", "!!!"],
                         ids=["garbage", "empty-list", "not-a-timestamp", "not-base64"])
def test_bad_cursor_is_422(client, auth, cursor):
    resp = client.get(URL, query_string={"cursor": cursor}, headers=auth)
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"] == [
        {"field": "cursor", "message": "is not a cursor this API returned"}]


def test_another_tenants_cursor_shows_nothing_of_theirs(client, auth, db_conn, booking_body):
    # Given a cursor from tenant A's listing
    create(client, auth, booking_body, 3)
    cursor = client.get(URL, query_string={"limit": 1}, headers=auth).get_json()["next_cursor"]
    # When tenant B uses it
    body = client.get(URL, query_string={"cursor": cursor},
                      headers=other_tenant_auth(db_conn)).get_json()
    # Then B sees only B's bookings (none)
    assert body["items"] == []


def test_state_filter_selects_bookings_by_task_state(client, auth, db_conn, booking_body):
    # Given three bookings: one with its email done, one with its invoice dead
    a, b, c = create(client, auth, booking_body, 3)
    db_conn.execute("UPDATE booking_tasks SET state = 'done' WHERE booking_id = %s"
                    " AND task = 'email'", (a,))
    db_conn.execute("UPDATE booking_tasks SET state = 'dead', last_error = 'boom'"
                    " WHERE booking_id = %s AND task = 'invoice'", (b,))

    def ids(**query) -> list[str]:
        resp = client.get(URL, query_string=query, headers=auth)
        assert resp.status_code == 200
        return [x["id"] for x in resp.get_json()["items"]]

    # Then each filter selects exactly the matching bookings, newest first
    assert ids(state="done") == [a]
    assert ids(state="done", task="email") == [a]
    assert ids(state="done", task="invoice") == []
    assert ids(state="dead") == [b]
    assert ids(state="dead", task="invoice") == [b]
    assert ids(state="pending", task="email") == [c, b]
    assert ids(state="pending") == [c, b, a]
    assert ids(state="retrying") == []
    # And the listed booking shows the task's state and error
    [dead] = client.get(URL, query_string={"state": "dead"}, headers=auth).get_json()["items"]
    assert dead["tasks"]["invoice"]["state"] == "dead"
    assert dead["tasks"]["invoice"]["last_error"] == "boom"


def test_state_filter_pages_with_cursor(client, auth, db_conn, booking_body):
    ids = create(client, auth, booking_body, 5)
    for booking_id in ids[1::2]:
        db_conn.execute("UPDATE booking_tasks SET state = 'done' WHERE booking_id = %s"
                        " AND task = 'audit'", (booking_id,))
    first = client.get(URL, query_string={"state": "done", "task": "audit", "limit": 1},
                       headers=auth).get_json()
    rest = client.get(URL, query_string={"state": "done", "task": "audit", "limit": 1,
                                         "cursor": first["next_cursor"]}, headers=auth).get_json()
    assert [b["id"] for b in first["items"] + rest["items"]] == ids[1::2][::-1]
    assert rest["next_cursor"] is None


def test_invoice_is_409_until_ready_then_the_pdf(client, auth, db_conn, tenant, booking_body):
    # Given a fresh booking
    [booking_id] = create(client, auth, booking_body, 1)
    # When its invoice is asked for before the worker issued it
    resp = client.get(f"{URL}/{booking_id}/invoice", headers=auth)
    # Then 409 problem with Retry-After, naming the task's state
    assert resp.status_code == 409
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["type"].endswith("/invoice-not-ready")
    assert "pending" in resp.get_json()["detail"]
    assert int(resp.headers["Retry-After"]) > 0
    # And a numbered invoice without its PDF yet is still not ready
    db_conn.execute("INSERT INTO invoices (booking_id, tenant_id, number) VALUES (%s, %s, %s)",
                    (booking_id, tenant["id"], "INV-000001"))
    assert client.get(f"{URL}/{booking_id}/invoice", headers=auth).status_code == 409
    # When the PDF is there, then it is served as an attachment
    db_conn.execute("UPDATE invoices SET pdf = %s, issued_at = now() WHERE booking_id = %s",
                    (PDF, booking_id))
    resp = client.get(f"{URL}/{booking_id}/invoice", headers=auth)
    assert resp.status_code == 200
    assert resp.mimetype == "application/pdf"
    assert resp.data == PDF
    assert resp.headers["Content-Disposition"] == 'attachment; filename="INV-000001.pdf"'


def test_booking_shows_live_task_states(client, auth, db_conn, booking_body):
    [booking_id] = create(client, auth, booking_body, 1)
    db_conn.execute("UPDATE booking_tasks SET state = 'retrying', attempts = 2,"
                    " last_error = 'SMTP 451' WHERE booking_id = %s AND task = 'email'",
                    (booking_id,))
    email = client.get(f"{URL}/{booking_id}", headers=auth).get_json()["tasks"]["email"]
    assert (email["state"], email["attempts"], email["last_error"]) == ("retrying", 2, "SMTP 451")


def test_read_requests_return_their_connection_cleanly(client, auth, caplog):
    # Given reads that never commit (list, one booking, a 404)
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    client.get(URL, headers=auth)
    client.get(f"{URL}/{uuid.uuid4()}", headers=auth)
    # Then the pool gets its connections back idle, without warnings
    assert [r.getMessage() for r in caplog.records if r.name == "psycopg.pool"] == []
