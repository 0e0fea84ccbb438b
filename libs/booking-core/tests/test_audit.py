"""The audit chain against a real Postgres: idempotent appends, and tampering shows."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from booking_core import db
from booking_core.audit import chain
from booking_core.messaging.contracts import audit_payload
from booking_core.model import tenants


def event(tenant: dict, *, kind: str = "booking.created", **overrides) -> dict:
    """An audit payload for `tenant`, as the producers build it."""
    fields = {
        "event_id": str(uuid.uuid4()),
        "kind": kind,
        "tenant_id": tenant["id"],
        "booking_id": str(uuid.uuid4()),
        "actor": "token:bk_test",
        "occurred_at": datetime.now(UTC).isoformat(),
        "details": {"note": "hello"},
    }
    fields.update(overrides)
    return audit_payload(**fields)


def append_events(conn, tenant: dict, n: int) -> list[dict]:
    """Append `n` events for `tenant`; return their payloads."""
    events = [event(tenant, details={"i": i}) for i in range(n)]
    for e in events:
        assert chain.append(conn, e) is True
    return events


def report_for(conn, tenant: dict) -> chain.ChainReport:
    (report,) = chain.verify(conn, tenant["id"])
    return report


def issues(report: chain.ChainReport) -> list[tuple[int | None, str]]:
    return [(p.seq, p.issue) for p in report.problems]


@pytest.fixture
def tamper(database_url):
    """A connection with the append-only trigger off (as only a superuser can); the
    chains it touched are wiped at teardown so no other test sees them broken."""
    touched: list[str] = []
    with db.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("tampering tests need a superuser (session_replication_role)")

        def touch(tenant: dict) -> psycopg.Connection:
            touched.append(tenant["id"])
            return conn

        yield touch
        for tenant_id in touched:
            conn.execute("DELETE FROM audit_log WHERE tenant_id = %s", (tenant_id,))
            conn.execute("DELETE FROM audit_heads WHERE tenant_id = %s", (tenant_id,))


# --- entry_hash: pure ------------------------------------------------------------------------

ENTRY = {
    "tenant_id": "0b7c7c8e-5f56-4c8e-9b0e-0f3a7f7c2d11",
    "seq": 1,
    "event_id": "7d3f8a52-2a5e-4e43-8a0e-3b3b5c6f1e01",
    "kind": "booking.created",
    "booking_id": None,
    "actor": "api",
    "details": {"b": 1, "a": "é"},
    "occurred_at": datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC),
}


def test_entry_hash_is_sha256_of_prev_and_canonical_json():
    canonical = (
        '{"actor":"api","booking_id":null,"details":{"a":"é","b":1},'
        '"event_id":"7d3f8a52-2a5e-4e43-8a0e-3b3b5c6f1e01","kind":"booking.created",'
        '"occurred_at":"2024-05-01T12:00:00.000005Z","seq":1,'
        '"tenant_id":"0b7c7c8e-5f56-4c8e-9b0e-0f3a7f7c2d11"}'
    )
    assert chain.canonical_json(ENTRY) == canonical
    expected = hashlib.sha256((chain.GENESIS_HASH + canonical).encode()).hexdigest()
    assert chain.entry_hash(chain.GENESIS_HASH, ENTRY) == expected
    assert chain.GENESIS_HASH == "0" * 64


def test_entry_hash_ignores_representation_but_not_content():
    base = chain.entry_hash(chain.GENESIS_HASH, ENTRY)
    same_instant = ENTRY["occurred_at"].astimezone(timezone(timedelta(hours=2)))
    as_uuids = {**ENTRY, "tenant_id": uuid.UUID(ENTRY["tenant_id"]),
                "event_id": uuid.UUID(ENTRY["event_id"]), "occurred_at": same_instant,
                "details": {"a": "é", "b": 1}, "recorded_at": "ignored"}
    assert chain.entry_hash(chain.GENESIS_HASH, as_uuids) == base
    for name, value in [("seq", 2), ("kind", "email.sent"), ("actor", "x"),
                        ("booking_id", str(uuid.uuid4())), ("details", {"b": 2, "a": "é"}),
                        ("occurred_at", ENTRY["occurred_at"] + timedelta(microseconds=1))]:
        assert chain.entry_hash(chain.GENESIS_HASH, {**ENTRY, name: value}) != base, name
    assert chain.entry_hash("1" * 64, ENTRY) != base


def test_entry_hash_refuses_naive_timestamps():
    with pytest.raises(ValueError):
        chain.entry_hash(chain.GENESIS_HASH, {**ENTRY, "occurred_at": datetime(2024, 1, 1)})


# --- append ----------------------------------------------------------------------------------

def test_append_twice_the_same_event_records_one_row(db_conn, tenant):
    e = event(tenant)
    assert chain.append(db_conn, e) is True
    assert chain.append(db_conn, e) is False
    rows = db_conn.execute(
        "SELECT seq FROM audit_log WHERE event_id = %s", (e["event_id"],)
    ).fetchall()
    assert [r["seq"] for r in rows] == [1]
    head = db_conn.execute(
        "SELECT seq FROM audit_heads WHERE tenant_id = %s", (tenant["id"],)
    ).fetchone()
    assert head["seq"] == 1


def test_chain_of_three_links_and_verifies_clean(db_conn, tenant):
    events = append_events(db_conn, tenant, 3)
    rows = db_conn.execute(
        "SELECT seq, event_id::text, prev_hash, hash FROM audit_log WHERE tenant_id = %s"
        " ORDER BY seq", (tenant["id"],)
    ).fetchall()
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in events]
    assert rows[0]["prev_hash"] == chain.GENESIS_HASH
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]
    head = db_conn.execute(
        "SELECT seq, hash FROM audit_heads WHERE tenant_id = %s", (tenant["id"],)
    ).fetchone()
    assert head == {"seq": 3, "hash": rows[2]["hash"]}
    report = report_for(db_conn, tenant)
    assert report.ok and report.problems == []
    assert (report.entries, report.head_seq, report.tenant) == (3, 3, tenant["name"])


def test_details_hash_as_postgres_stores_them(db_conn, tenant):
    """jsonb rewrites numbers (1e20, 1.10) and reorders keys; the hash must still agree."""
    details = {"big": 1e20, "scale": 1.10, "neg": -0.0, "int": 2**70, "text": "ünï 😀",
               "nested": {"z": [1, {"y": None}], "a": True}}
    assert chain.append(db_conn, event(tenant, details=details))
    assert chain.append(db_conn, event(tenant, details={}))
    assert report_for(db_conn, tenant).ok


def test_offsets_and_precision_of_occurred_at_verify(db_conn, tenant):
    for stamp in ("2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00Z",
                  "2024-01-01T08:00:00.1234567+00:00"):
        assert chain.append(db_conn, event(tenant, occurred_at=stamp))
    stored = db_conn.execute(
        "SELECT occurred_at FROM audit_log WHERE tenant_id = %s ORDER BY seq", (tenant["id"],)
    ).fetchall()
    assert stored[0]["occurred_at"] == stored[1]["occurred_at"]
    assert report_for(db_conn, tenant).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "booking.deleted"}, "unknown audit event kind"),
        ({"event_id": "not-a-uuid"}, "event_id is not a UUID"),
        ({"tenant_id": "42"}, "tenant_id is not a UUID"),
        ({"booking_id": "nope"}, "booking_id is not a UUID"),
        ({"occurred_at": "yesterday"}, "not an ISO-8601"),
        ({"occurred_at": "2024-01-01T00:00:00"}, "no time zone"),
        ({"actor": ""}, "actor must be"),
        ({"details": ["a"]}, "details must be a JSON object"),
        ({"details": {"x": float("nan")}}, "not plain JSON"),
        ({"details": {"x": "nul\x00"}}, "refused by Postgres"),
        ({"details": {"x": "\ud800"}}, "refused by Postgres"),
        ({"actor": "\ud800"}, "not valid Unicode"),
        ({"colour": "red"}, "unknown audit payload field"),
        ({"event_id": None}, "missing audit payload field"),
        ({"tenant_id": str(uuid.uuid4())}, "unknown tenant"),
    ],
)
def test_malformed_payloads_are_refused_permanently(db_conn, tenant, change, message):
    payload = {**event(tenant), **change}
    with pytest.raises(chain.InvalidAuditEvent, match=message):
        chain.append(db_conn, payload)
    assert db_conn.execute(
        "SELECT count(*) AS n FROM audit_log WHERE tenant_id = %s", (tenant["id"],)
    ).fetchone()["n"] == 0


def test_append_inside_a_caller_transaction_commits_with_it(database_url, tenant):
    with db.connect(database_url) as conn:  # not autocommit: the caller owns the commit
        conn.execute("SELECT 1")
        assert chain.append(conn, event(tenant))
        conn.rollback()
        assert chain.append(conn, event(tenant))
        conn.commit()
        assert report_for(conn, tenant).entries == 1


def test_tenants_have_separate_chains(db_conn, tenant, tamper):
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    for _ in range(3):
        chain.append(db_conn, event(tenant))
        chain.append(db_conn, event(other))
    for t in (tenant, other):
        seqs = db_conn.execute(
            "SELECT seq, prev_hash FROM audit_log WHERE tenant_id = %s ORDER BY seq", (t["id"],)
        ).fetchall()
        assert [r["seq"] for r in seqs] == [1, 2, 3]
        assert seqs[0]["prev_hash"] == chain.GENESIS_HASH
    tamper(other).execute(
        "UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = %s AND seq = 2", (other["id"],)
    )
    reports = {r.tenant_id: r for r in chain.verify(db_conn)}
    assert reports[tenant["id"]].ok
    assert [p.seq for p in reports[other["id"]].problems] == [2]
    assert reports[other["id"]].problems[0].tenant == other["name"]


# --- the trigger -----------------------------------------------------------------------------

def test_update_and_delete_are_refused_by_the_trigger(db_conn, tenant):
    append_events(db_conn, tenant, 1)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db_conn.execute("UPDATE audit_log SET actor = 'x' WHERE tenant_id = %s", (tenant["id"],))
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db_conn.execute("DELETE FROM audit_log WHERE tenant_id = %s", (tenant["id"],))
    assert report_for(db_conn, tenant).ok


# --- verify detects tampering ----------------------------------------------------------------

def test_edited_details_are_reported_at_their_seq(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 3)
    tamper(tenant).execute(
        "UPDATE audit_log SET details = '{\"i\": 99}' WHERE tenant_id = %s AND seq = 2",
        (tenant["id"],),
    )
    report = report_for(db_conn, tenant)
    assert not report.ok
    assert issues(report) == [
        (2, "hash does not match the entry's content: the entry was altered")
    ]
    assert str(report.problems[0]).startswith(f"tenant {tenant['name']}: seq 2: ")


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 3)
    row = db_conn.execute(
        "SELECT tenant_id::text, seq, event_id::text, kind, booking_id::text, actor, details,"
        " occurred_at, prev_hash FROM audit_log WHERE tenant_id = %s AND seq = 2", (tenant["id"],)
    ).fetchone()
    forged = {**row, "actor": "mallory"}
    tamper(tenant).execute(
        "UPDATE audit_log SET actor = 'mallory', hash = %s WHERE tenant_id = %s AND seq = 2",
        (chain.entry_hash(row["prev_hash"], forged), tenant["id"]),
    )
    assert [p.seq for p in report_for(db_conn, tenant).problems] == [3]
    assert "prev_hash" in report_for(db_conn, tenant).problems[0].issue


def test_a_deleted_middle_row_is_reported(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 4)
    tamper(tenant).execute(
        "DELETE FROM audit_log WHERE tenant_id = %s AND seq IN (2, 3)", (tenant["id"],)
    )
    report = report_for(db_conn, tenant)
    assert issues(report) == [(2, "seqs 2..3 missing: entries were deleted")]
    assert report.entries == 2


def test_a_deleted_last_row_is_reported_against_the_head(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 3)
    tamper(tenant).execute(
        "DELETE FROM audit_log WHERE tenant_id = %s AND seq = 3", (tenant["id"],)
    )
    report = report_for(db_conn, tenant)
    assert [p.seq for p in report.problems] == [3]
    assert "last entries were deleted" in report.problems[0].issue
    assert (report.entries, report.head_seq) == (2, 3)


def test_a_chain_emptied_but_its_head_kept_is_reported(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 2)
    tamper(tenant).execute("DELETE FROM audit_log WHERE tenant_id = %s", (tenant["id"],))
    reports = {r.tenant_id: r for r in chain.verify(db_conn)}
    assert [p.seq for p in reports[tenant["id"]].problems] == [1]


def test_a_deleted_head_is_reported_and_append_refuses_to_fork(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 2)
    tamper(tenant).execute("DELETE FROM audit_heads WHERE tenant_id = %s", (tenant["id"],))
    assert [p.seq for p in report_for(db_conn, tenant).problems] == [None]
    with pytest.raises(chain.AuditChainBroken):
        chain.append(db_conn, event(tenant))


def test_a_rewritten_head_is_reported(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 2)
    tamper(tenant).execute(
        "UPDATE audit_heads SET hash = %s WHERE tenant_id = %s", ("f" * 64, tenant["id"])
    )
    assert [p.seq for p in report_for(db_conn, tenant).problems] == [2]


def test_appends_after_a_deleted_tail_keep_the_gap_visible(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 3)
    tamper(tenant).execute(
        "DELETE FROM audit_log WHERE tenant_id = %s AND seq = 3", (tenant["id"],)
    )
    append_events(db_conn, tenant, 1)
    assert issues(report_for(db_conn, tenant)) == [(3, "seq 3 missing: entries were deleted")]


@pytest.mark.parametrize("table", ["audit_log", "audit_heads"])
def test_truncate_and_head_rewrites_are_refused(db_conn, tenant, table):
    append_events(db_conn, tenant, 2)
    with pytest.raises(psycopg.errors.RaiseException):
        db_conn.execute(f"TRUNCATE {table} CASCADE")
    with pytest.raises(psycopg.errors.RaiseException, match="may only advance"):
        db_conn.execute("UPDATE audit_heads SET seq = 1 WHERE tenant_id = %s", (tenant["id"],))
    with pytest.raises(psycopg.errors.RaiseException, match="may only advance"):
        db_conn.execute("DELETE FROM audit_heads WHERE tenant_id = %s", (tenant["id"],))


def test_truncate_with_triggers_off_is_still_caught_by_the_head(database_url, tenant):
    with db.connect(database_url) as conn:
        append_events(conn, tenant, 2)
        conn.commit()
        conn.execute("SET session_replication_role = replica")  # a superuser's way round the triggers
        conn.execute("TRUNCATE audit_log")  # rolled back below
        (report,) = chain.verify(conn, tenant["id"])
        conn.rollback()
    assert [p.seq for p in report.problems] == [1] and report.entries == 0


def test_problems_are_capped_but_counted(db_conn, tenant, tamper):
    append_events(db_conn, tenant, 5)
    tamper(tenant).execute("UPDATE audit_log SET actor = 'x' WHERE tenant_id = %s", (tenant["id"],))
    (report,) = chain.verify(db_conn, tenant["id"], max_problems=2, itersize=2)
    assert len(report.problems) == 2 and report.problem_count == 5


def test_verify_works_with_tuple_rows_and_an_open_transaction(database_url, tenant):
    with psycopg.connect(database_url) as conn:
        append_events(conn, tenant, 2)
        conn.commit()
        conn.execute("SELECT 1")  # a transaction is open: verify runs inside it
        (report,) = chain.verify(conn, tenant["id"])
        assert report.ok and report.entries == 2
    with db.connect(database_url) as conn, pytest.raises(ValueError, match="not a uuid"):
        chain.verify(conn, "acme")


# --- concurrency -----------------------------------------------------------------------------

def test_concurrent_appends_give_one_contiguous_chain(database_url, db_conn, tenant):
    events = [event(tenant, details={"i": i}) for i in range(60)]
    threads, errors = 6, []
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            with db.connect(database_url, autocommit=True) as conn:
                barrier.wait()
                # Each thread sends its share, plus a redelivery of a neighbour's share.
                mine = events[n::threads] + events[(n + 1) % threads::threads]
                for e in mine:
                    chain.append(conn, e)
        except Exception as exc:  # surfaced by the assert below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    seqs = [r["seq"] for r in db_conn.execute(
        "SELECT seq FROM audit_log WHERE tenant_id = %s ORDER BY seq", (tenant["id"],)
    )]
    assert seqs == list(range(1, len(events) + 1))
    report = report_for(db_conn, tenant)
    assert report.ok and report.entries == len(events) == report.head_seq


def test_a_bookings_audit_entries_in_chain_order(db_conn, tenant):
    booking_id = str(uuid.uuid4())
    for kind in ("booking.created", "deadletter.requeued"):
        chain.append(db_conn, event(tenant, kind=kind, booking_id=booking_id, actor="ops:Ada"))
    assert [e["kind"] for e in chain.entries_for_booking(db_conn, booking_id)] == ["booking.created",
                                                                                 "deadletter.requeued"]
    with pytest.raises(ValueError, match="not a uuid"):
        chain.entries_for_booking(db_conn, "x")
