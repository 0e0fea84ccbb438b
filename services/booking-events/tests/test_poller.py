"""The poller's high-water mark and gaps (pure), and its fan-out: one query for every open stream."""

from __future__ import annotations

import asyncio

from booking_events.poller import Poller, advance


def test_ids_read_past_a_hole_leave_the_hole_as_a_gap():
    last, gaps = advance(10, {}, [11, 14], now=100.0, grace=10)
    assert last == 14 and gaps == {12: 100.0, 13: 100.0}


def test_a_gap_that_commits_later_is_filled_and_forgotten():
    last, gaps = advance(14, {12: 100.0, 13: 100.0}, [12], now=101.0, grace=10)
    assert last == 14 and gaps == {13: 100.0}


def test_a_gap_that_never_fills_is_given_up_after_the_grace():
    last, gaps = advance(14, {13: 100.0}, [], now=110.0, grace=10)
    assert last == 14 and gaps == {}


def test_no_new_ids_change_nothing():
    assert advance(5, {}, [], now=1.0, grace=10) == (5, {})


def test_one_query_serves_every_open_stream(db_conn, database_url, make_booking, set_task, monkeypatch):
    """Two hundred subscribers across bookings: one poll reads once and wakes the right queues."""
    from booking_events import eventlog

    calls = []
    real = eventlog.since
    monkeypatch.setattr(eventlog, "since", lambda *a, **k: calls.append(1) or real(*a, **k))

    async def run():
        a, b = make_booking(), make_booking()
        poller = Poller(database_url)  # not started: this test polls by hand
        poller.last_id = eventlog.newest_id(database_url)
        queues_a = [poller.subscribe(a) for _ in range(100)]
        queues_b = [poller.subscribe(b) for _ in range(100)]
        set_task(a, "email", "running", attempts=1)
        await poller.poll_once()
        return queues_a, queues_b

    queues_a, queues_b = asyncio.run(run())
    assert len(calls) == 1
    assert all(q.qsize() == 1 and q.get_nowait()["state"] == "running" for q in queues_a)
    assert all(q.qsize() == 0 for q in queues_b)
