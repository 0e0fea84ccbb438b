"""One relay reads the backlog per interval, every relay reports it; the interval backs off when the read is slow."""

from __future__ import annotations

import threading
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from booking_core import db
from booking_core.model import tenants
from booking_scaling.outboxmirror import REPORT_SECONDS, TTL_MS, OutboxBacklog
from e2e_helpers import wait_until
from outbox_relay import Relay, backlog, report_turn
from outbox_relay.backlog import Report, TenantBacklog
from outbox_relay.metrics import BACKLOG
from outbox_relay.report_turn import BUDGET, MAX_INTERVAL_SECONDS, decode, encode, mirror_ttl_ms, next_interval
from relay_helpers import create_bookings


def test_a_fast_read_keeps_the_base_interval_and_a_slow_one_backs_off_to_its_budget():
    assert next_interval(0.0) == REPORT_SECONDS
    assert next_interval(0.04) == REPORT_SECONDS
    assert next_interval(0.1) == 0.1 / BUDGET  # 100 ms read: every 2 s
    assert next_interval(0.2) == 0.2 / BUDGET
    assert next_interval(5.0) == MAX_INTERVAL_SECONDS


@given(st.floats(min_value=0, max_value=60, allow_nan=False))
def test_the_read_takes_at_most_its_budget_of_the_time_below_the_cap(read):
    interval = next_interval(read)
    assert REPORT_SECONDS <= interval <= MAX_INTERVAL_SECONDS
    if read <= MAX_INTERVAL_SECONDS * BUDGET:
        assert read <= BUDGET * interval + 1e-9
    # The autoscalers' copy outlives a few intervals, however long they get.
    assert mirror_ttl_ms(interval) >= max(TTL_MS, 3 * interval * 1000 - 1)


def test_a_shared_reading_round_trips_and_a_malformed_one_is_none():
    rep = Report(1234, [OutboxBacklog("email", 3, 1, 1000)], {"email": 234},
                 [TenantBacklog("email", 'x"}\n', 3, 1000)])
    assert decode(encode(rep)) == rep
    for bad in (b"", b"{", b"[]", b'{"at_ms": 1}', b'{"at_ms": "x", "queues": [], "oldest_age_ms": {}, "tenants": []}',
                b'{"at_ms": 1, "queues": [{"nope": 1}], "oldest_age_ms": {}, "tenants": []}'):
        assert decode(bad) is None


def test_a_second_relay_takes_the_first_ones_reading_instead_of_reading(settings, db_conn, tenant, fair_start):
    create_bookings(settings.database_url, tenant["id"], 3)
    first, second = Relay(settings), Relay(settings)
    with db.connect(settings.database_url, autocommit=True) as a, \
            db.connect(settings.database_url, autocommit=True) as b:
        read = first.report(a)
        taken = second.report(b)
    assert read.read_seconds is not None and taken.read_seconds is None
    assert taken.report == read.report and BACKLOG.report == read.report
    assert [t.messages for t in taken.report.tenants if t.queue == "email"] == [3]
    # It looks again when the reading stops being fresh, not before.
    assert second.turn.next_at - time.monotonic() > 0.5 * REPORT_SECONDS


def test_a_relay_that_finds_the_reading_being_taken_does_not_read(settings, db_conn, tenant, fair_start, monkeypatch):
    create_bookings(settings.database_url, tenant["id"], 1)
    reads = []
    monkeypatch.setattr(backlog, "read", lambda *a: reads.append(a) or None)
    relay = Relay(settings)
    before = Report(1, [], {}, [])
    monkeypatch.setattr(BACKLOG, "report", before)  # and the process's own reading back after the test
    with db.connect(settings.database_url) as holder, \
            db.connect(settings.database_url, autocommit=True) as conn:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (report_turn.LOCK_KEY,))
        turn = relay.report(conn)
    assert (turn.report, turn.read_seconds, reads) == (None, None, [])
    assert BACKLOG.report is before  # the last reading stays on /metrics meanwhile
    assert relay.turn.next_at - time.monotonic() <= report_turn.RETRY_SECONDS


def test_two_running_relays_read_once_per_interval_and_the_other_takes_over_when_one_stops(
        settings, db_conn, fair_start, monkeypatch):
    quiet = tenants.ensure_tenant(db_conn, f"turn-{uuid.uuid4().hex[:6]}")
    create_bookings(settings.database_url, quiet["id"], 2)
    # Waiting out a retry's backoff: the relays publish none of them, and every reading counts them.
    db_conn.execute("UPDATE outbox SET available_at = clock_timestamp() + interval '1 hour' WHERE tenant_id = %s",
                    (quiet["id"],))
    reads: list[tuple[str, float]] = []
    real_read = backlog.read

    def counted(conn, depths, queues):
        reads.append((threading.current_thread().name, time.monotonic()))
        return real_read(conn, depths, queues)

    monkeypatch.setattr(backlog, "read", counted)
    relays = {name: Relay(settings) for name in ("relay-a", "relay-b")}
    threads = {name: threading.Thread(target=r.run, name=name, daemon=True) for name, r in relays.items()}
    for t in threads.values():
        t.start()
    try:
        wait_until(lambda: len(reads) >= 4, timeout=30, what="four readings")
        first = reads[:4]
        gaps = [later - earlier for (_, earlier), (_, later) in zip(first, first[1:], strict=False)]
        assert min(gaps) >= 0.8 * REPORT_SECONDS, reads  # one reading per interval between both relays
        stopping = reads[-1][0]
        other = next(n for n in relays if n != stopping)
        relays[stopping].stop()
        threads[stopping].join(10)
        stopped_at = time.monotonic()
        wait_until(lambda: any(n == other and at > stopped_at for n, at in reads), timeout=10,
                   what=f"{other} to read after {stopping} stopped")
        assert BACKLOG.report is not None and any(t.messages == 2 for t in BACKLOG.report.tenants)
    finally:
        for r in relays.values():
            r.stop()
        for t in threads.values():
            t.join(10)
