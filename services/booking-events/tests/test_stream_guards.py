"""What bounds an open stream, on the real `booking-events` process: caps per link and per client,
and the token it was opened with (revoking it ends the stream within the 2 s recheck)."""

from __future__ import annotations

import json

import pytest

from booking_core.model import tenants
from booking_events.admission import StreamLimits, StreamsFull, StreamSlots, client_address
from e2e_helpers import wait_until

OPEN = "booking_events_open_streams"


def api_path(booking_id: str) -> str:
    return f"/api/v1/bookings/{booking_id}/events"


def bearer(token: str, **more) -> dict:
    return {"Authorization": f"Bearer {token}", **more}


def assert_refused(s, scope_words: str) -> None:
    assert s.resp.status == 429
    assert s.resp.getheader("Content-Type").startswith("application/problem+json")
    assert s.resp.getheader("Retry-After") == "10"
    body = json.loads(s.resp.read())
    assert body["status"] == 429 and body["type"].endswith("/too-many-streams")
    assert scope_words in body["detail"]


def test_revoking_the_token_ends_its_open_stream_within_the_recheck(events_process, connect_stream, db_conn,
                                                                     tenant, make_booking, set_task):
    # Given a stream opened with a token, its booking's work still going on
    service = events_process(BOOKING_EVENTS_HEARTBEAT_MS="200")
    made = tenants.create_token(db_conn, tenant["id"])
    booking_id = make_booking()
    s = connect_stream(service.port, api_path(booking_id), bearer(made["token"]), timeout=15)
    assert [e.data["state"] for e in s.take(3)] == ["pending"] * 3
    # When the token is revoked, and the booking goes on changing
    tenants.revoke_token(db_conn, made["id"])
    set_task(booking_id, "email", "running", attempts=1)
    # Then the server ends the stream within the 2 s recheck (plus a query), not hours later ...
    assert s.closed_within(4.0), "the stream outlived its revoked token"
    wait_until(lambda: service.metric(OPEN) == 0, timeout=5, what="the stream to be freed")
    # ... and the browser's reconnect is refused
    again = connect_stream(service.port, api_path(booking_id), bearer(made["token"]))
    assert again.resp.status == 401


def test_a_stream_on_a_live_token_is_not_ended_by_the_recheck(events_process, connect_stream, db_conn, tenant,
                                                              make_booking, set_task):
    service = events_process(BOOKING_EVENTS_HEARTBEAT_MS="200")
    keep, drop = (tenants.create_token(db_conn, tenant["id"]) for _ in range(2))
    booking_id = make_booking()
    kept = connect_stream(service.port, api_path(booking_id), bearer(keep["token"]), timeout=15)
    ended = connect_stream(service.port, api_path(booking_id), bearer(drop["token"]), timeout=15)
    kept.take(3), ended.take(3)
    tenants.revoke_token(db_conn, drop["id"])
    assert ended.closed_within(4.0)
    # The other token's stream went through the same recheck and is still delivering
    set_task(booking_id, "email", "running", attempts=1)
    assert kept.next().data["task"] == "email"


def test_streams_per_link_are_capped_with_a_429_and_a_freed_slot_is_reused(events_process, connect_stream,
                                                                           make_booking, page_link, token):
    service = events_process(BOOKING_EVENTS_MAX_STREAMS_PER_LINK="3", BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT="50")
    booking_id = make_booking()
    page = f"/status/{page_link(booking_id)}/events"
    # Given three streams open on one progress link
    held = [connect_stream(service.port, page) for _ in range(3)]
    assert all(s.resp.status == 200 for s in held)
    # Then a fourth is refused before any work is done for it
    assert_refused(connect_stream(service.port, page), "this link")
    # ... while the booking's API stream is another link, and another booking's page is too
    assert connect_stream(service.port, api_path(booking_id), bearer(token)).resp.status == 200
    assert connect_stream(service.port, f"/status/{page_link(make_booking())}/events").resp.status == 200
    # When one of the three closes, its slot is free at once
    held[0].close()
    wait_until(lambda: service.metric(OPEN) == 4, timeout=5, what="the closed stream to be freed")
    assert connect_stream(service.port, page).resp.status == 200
    assert service.metric('booking_events_streams_refused_total{scope="link"}') == 1


def test_streams_per_client_address_are_capped_whatever_x_forwarded_for_says(events_process, connect_stream,
                                                                           make_booking, page_link):
    # Given a service that does not trust X-Forwarded-For (the default), and one client with two streams
    service = events_process(BOOKING_EVENTS_MAX_STREAMS_PER_LINK="10", BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT="2")
    links = [f"/status/{page_link(make_booking())}/events" for _ in range(3)]
    assert connect_stream(service.port, links[0]).resp.status == 200
    assert connect_stream(service.port, links[1]).resp.status == 200
    # Then a third on a fresh link is refused, and a forged header buys no new budget
    assert_refused(connect_stream(service.port, links[2]), "your address")
    assert_refused(connect_stream(service.port, links[2], {"X-Forwarded-For": "192.0.2.7"}), "your address")


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_cap(events_process, connect_stream,
                                                                      make_booking, page_link):
    # Given a service behind one trusted proxy (the Ingress), which appends the address it saw
    service = events_process(BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT="1", BOOKING_FORWARDED_FOR_HOPS="1")
    links = [f"/status/{page_link(make_booking())}/events" for _ in range(3)]
    first = {"X-Forwarded-For": "192.0.2.1"}
    assert connect_stream(service.port, links[0], first).resp.status == 200
    # Then that client is at its cap, however it prefixes the header ...
    assert_refused(connect_stream(service.port, links[1], first), "your address")
    assert_refused(connect_stream(service.port, links[1], {"X-Forwarded-For": "198.51.100.9, 192.0.2.1"}),
                   "your address")
    # ... while another client behind the same proxy is not
    assert connect_stream(service.port, links[2], {"X-Forwarded-For": "192.0.2.2"}).resp.status == 200


@pytest.mark.parametrize(("peer", "headers", "hops", "client"), [
    ("10.1.0.5", ["192.0.2.1"], 0, "10.1.0.5"),                      # not trusted: the header is ignored
    ("10.1.0.5", ["192.0.2.1"], 1, "192.0.2.1"),                     # the Ingress saw 192.0.2.1
    ("10.1.0.5", ["203.0.113.9, 192.0.2.1"], 1, "192.0.2.1"),        # the client's own prefix is ignored
    ("10.1.0.5", ["203.0.113.9", "192.0.2.1"], 1, "192.0.2.1"),      # two header lines are one list
    ("10.1.0.5", ["192.0.2.1, 10.0.0.2"], 2, "192.0.2.1"),           # a load balancer, then the Ingress
    ("10.1.0.5", [], 1, "10.1.0.5"),                                 # not through the proxy: the peer
    ("10.1.0.5", ["192.0.2.1"], 2, "10.1.0.5"),                      # fewer entries than hops: the peer
    ("10.1.0.5", ["not-an-address"], 1, "10.1.0.5"),
    ("10.1.0.5", ["2001:db8:1:2:3:4:5:6"], 1, "2001:db8:1:2::/64"),  # an IPv6 subscriber's whole /64
    ("::ffff:192.0.2.1", [], 0, "192.0.2.1"),
    (None, [], 0, "unknown"),
])
def test_the_client_address(peer, headers, hops, client):
    assert client_address(peer, headers, hops) == client


def test_slots_are_counted_per_scope_and_key_and_given_back():
    slots = StreamSlots(StreamLimits(per_link=2, per_client=3))
    with slots.hold("link", "a"), slots.hold("link", "a"):
        with pytest.raises(StreamsFull) as full:
            with slots.hold("link", "a"):
                pass
        assert (full.value.scope, full.value.cap) == ("link", 2)
        with slots.hold("link", "b"):
            assert slots.count("link", "b") == 1
    assert slots.count("link", "a") == 0


@pytest.mark.parametrize(("env", "name"), [({"BOOKING_EVENTS_MAX_STREAMS_PER_LINK": "0"}, "PER_LINK"),
                                           ({"BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT": "many"}, "PER_CLIENT"),
                                           ({"BOOKING_FORWARDED_FOR_HOPS": "-1"}, "HOPS"),
                                           ({"BOOKING_EVENTS_STREAM_SETUPS": "0"}, "SETUPS")])
def test_bad_limits_name_their_variable(env, name):
    with pytest.raises(ValueError, match=name):
        StreamLimits.from_env(env)
