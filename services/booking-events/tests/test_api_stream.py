"""GET /api/v1/bookings/{id}/events over real HTTP, on real Postgres, with states changed by SQL."""

from __future__ import annotations

import time

import pytest

from booking_core.model import tenants


def path(booking_id: str) -> str:
    return f"/api/v1/bookings/{booking_id}/events"


def bearer(token: str, **more) -> dict:
    return {"Authorization": f"Bearer {token}", **more}


def test_the_stream_sends_history_then_live_changes_then_complete_and_closes(open_stream, token, make_booking,
                                                                              set_task):
    booking_id = make_booking()
    s = open_stream(path(booking_id), bearer(token))
    assert s.resp.status == 200
    assert s.resp.getheader("Content-Type").startswith("text/event-stream")
    assert s.resp.getheader("Cache-Control") == "no-cache"
    assert s.resp.getheader("X-Accel-Buffering") == "no"
    history = s.take(3)
    assert [(e.event, e.data["task"], e.data["state"]) for e in history] == [
        ("task", "audit", "pending"), ("task", "email", "pending"), ("task", "invoice", "pending")]
    assert set(history[0].data) == {"task", "state", "attempts", "last_error", "at"}

    set_task(booking_id, "email", "running", attempts=1)
    live = s.next()
    assert (live.data["task"], live.data["state"], live.data["attempts"]) == ("email", "running", 1)
    assert live.id > history[-1].id
    for task in ("email", "invoice", "audit"):
        set_task(booking_id, task, "done", attempts=1)
    rest = [s.next() for _ in range(4)]
    assert [(e.event, e.data.get("task")) for e in rest] == [("task", "email"), ("task", "invoice"),
                                                            ("task", "audit"), ("complete", None)]
    assert rest[-1].data["tasks"] == {"email": "done", "invoice": "done", "audit": "done"}
    assert s.next() is None, "the stream must close after `complete`"


def test_a_late_subscriber_gets_the_whole_history_at_once(open_stream, token, make_booking, set_task):
    booking_id = make_booking()
    set_task(booking_id, "email", "running", attempts=1)
    set_task(booking_id, "email", "retrying", last_error="SMTP 451: try later")
    set_task(booking_id, "email", "dead", last_error="SMTP 451: try later")
    s = open_stream(path(booking_id), bearer(token))
    got = [s.next() for _ in range(7)]
    assert [(e.event, e.data.get("task"), e.data.get("state")) for e in got] == [
        ("task", "audit", "pending"), ("task", "email", "pending"), ("task", "invoice", "pending"),
        ("task", "email", "running"), ("task", "email", "retrying"), ("task", "email", "dead"),
        ("complete", None, None)]
    assert got[4].data["last_error"] == "SMTP 451: try later"
    assert s.next() is None


def test_reconnecting_with_last_event_id_replays_exactly_the_missed_events(open_stream, token, make_booking,
                                                                           set_task):
    booking_id = make_booking()
    first = open_stream(path(booking_id), bearer(token))
    seen = first.take(3)
    first.close()  # the connection drops here
    set_task(booking_id, "email", "running", attempts=1)
    set_task(booking_id, "invoice", "running", attempts=1)
    set_task(booking_id, "email", "done")

    again = open_stream(path(booking_id), bearer(token, **{"Last-Event-ID": str(seen[-1].id)}))
    missed = again.take(3)
    assert [(e.data["task"], e.data["state"]) for e in missed] == [
        ("email", "running"), ("invoice", "running"), ("email", "done")]
    assert all(e.id > seen[-1].id for e in missed)
    # and nothing else: the next thing on the stream is the next change, not a repeat
    set_task(booking_id, "audit", "running", attempts=1)
    assert again.next().data["task"] == "audit"

    mid = open_stream(path(booking_id), bearer(token, **{"Last-Event-ID": str(missed[0].id)}))
    assert [(e.data["task"], e.data["state"]) for e in mid.take(3)] == [
        ("invoice", "running"), ("email", "done"), ("audit", "running")]


def test_an_idle_stream_sends_heartbeat_comments(open_stream, token, make_booking):
    s = open_stream(path(make_booking()), bearer(token))
    s.take(3)
    started = time.monotonic()
    s.resp.fp.readline()  # blank line or comment; keep reading until a heartbeat arrives
    while "heartbeat" not in s.comments and time.monotonic() - started < 5:
        line = s.resp.fp.readline().decode()
        if line.startswith(":"):
            s.comments.append(line[1:].strip())
    assert "heartbeat" in s.comments
    assert time.monotonic() - started < 2, "heartbeat interval is 0.3 s in these tests"


def test_another_tenants_booking_is_not_found(open_stream, other_token, make_booking):
    s = open_stream(path(make_booking()), bearer(other_token))
    assert s.resp.status == 404
    assert s.resp.getheader("Content-Type").startswith("application/problem+json")


def test_missing_unknown_or_revoked_tokens_are_refused(open_stream, db_conn, tenant, make_booking):
    booking_id = make_booking()
    revoked = tenants.create_token(db_conn, tenant["id"])
    tenants.revoke_token(db_conn, revoked["id"])
    for headers in ({}, bearer("bk_unknown"), bearer(revoked["token"]), {"Authorization": "Basic abc"}):
        s = open_stream(path(booking_id), headers)
        assert s.resp.status == 401, headers
        assert s.resp.getheader("WWW-Authenticate") == 'Bearer realm="bookings"'


@pytest.mark.parametrize("raw", ["yesterday", "1_0", "+5", "-1", "0x10", "1e3", "\u0663".encode(),
                                 "\uff15".encode(), "9" * 20], ids=repr)
def test_a_last_event_id_other_than_ascii_digits_is_a_clear_400(open_stream, token, make_booking, raw):
    s = open_stream(path(make_booking()), bearer(token, **{"Last-Event-ID": raw}))
    assert s.resp.status == 400
    assert b"Last-Event-ID" in s.resp.read()


def test_a_booking_id_that_is_not_a_uuid_is_not_found(open_stream, token):
    s = open_stream(path("not-a-uuid"), bearer(token))
    assert s.resp.status == 404
