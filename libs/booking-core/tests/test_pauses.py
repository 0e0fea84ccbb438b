"""Pausing and resuming a queue (booking_core.queues.pauses) against real Postgres.

Each change is one row and one audit message in one transaction; the audit
entry names the operator and lands in the platform tenant's chain.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from booking_core.audit import chain
from booking_core.messaging.contracts import QUEUES
from booking_core.queues import pauses


@pytest.fixture
def conn(no_queue_pauses):
    return no_queue_pauses


def audit_messages(conn, actor: str) -> list[dict]:
    """The outbox audit payloads written for `actor`, oldest first."""
    return [r["payload"] for r in conn.execute(
        "SELECT payload FROM outbox WHERE queue = 'audit' AND payload->>'actor' = %s ORDER BY id", (actor,))]


def test_pause_then_resume_changes_the_row_once_each_and_audits_each_change(conn):
    actor = f"cli:ops-{uuid.uuid4().hex[:8]}@host"
    # Given a running queue, when it is paused twice
    assert pauses.pause(conn, "email", actor=actor, reason="SMTP provider incident") is True
    assert pauses.pause(conn, "email", actor="someone-else", reason="again") is False
    # Then the first pause stands, with who and why
    (p,) = pauses.paused(conn).values()
    assert (p.queue, p.paused_by, p.reason) == ("email", actor, "SMTP provider incident")
    assert p.as_dict()["paused_at"] == p.paused_at.isoformat()
    assert pauses.state(conn) == {"email": p, "invoice": None, "audit": None, "webhook": None}
    # When it is resumed twice, only the first resume changes anything
    assert pauses.resume(conn, "email", actor=actor) is True
    assert pauses.resume(conn, "email", actor=actor) is False
    assert pauses.paused(conn) == {}
    # And exactly one audit message per change names the operator, in the platform tenant's chain
    paused, resumed = audit_messages(conn, actor)
    assert (paused["kind"], resumed["kind"]) == ("queue.paused", "queue.resumed")
    assert paused["tenant_id"] == resumed["tenant_id"] == pauses.OPS_TENANT_ID
    assert paused["details"] == {"queue": "email", "reason": "SMTP provider incident"}
    assert resumed["details"]["queue"] == "email" and resumed["details"]["paused_by"] == actor
    assert audit_messages(conn, "someone-else") == []


def test_only_own_resumes_a_pause_of_the_same_actor_and_never_a_persons(conn):
    """The local runner's yield lifts its own pauses; a queue a person paused stays paused."""
    runner = f"bookingctl-autoscaler-{uuid.uuid4().hex[:6]}"
    assert pauses.pause(conn, "invoice", actor="cli:ops@host", reason="bad template") is True
    assert pauses.resume(conn, "invoice", actor=runner, only_own=True) is False
    assert set(pauses.paused(conn)) == {"invoice"}
    assert audit_messages(conn, runner) == []
    assert pauses.pause(conn, "audit", actor=runner, reason="yield") is True
    assert pauses.resume(conn, "audit", actor=runner, only_own=True) is True
    assert set(pauses.paused(conn)) == {"invoice"}
    assert [m["kind"] for m in audit_messages(conn, runner)] == ["queue.paused", "queue.resumed"]
    assert pauses.resume(conn, "invoice", actor="cli:ops@host") is True


def test_every_queue_of_the_platform_can_be_paused_the_webhook_queue_too(conn):
    for queue in QUEUES:
        assert pauses.pause(conn, queue, actor="token:test", reason="drill") is True
    assert set(pauses.paused(conn)) == set(QUEUES) and "webhook" in QUEUES
    for queue in QUEUES:
        assert pauses.resume(conn, queue, actor="token:test") is True


def test_the_audit_message_is_recorded_in_the_platform_chain_and_verifies(conn):
    actor = f"token:bk_{uuid.uuid4().hex[:7]} (tenant ops)"
    assert pauses.pause(conn, "invoice", actor=actor)
    (payload,) = audit_messages(conn, actor)
    # When the audit worker's own append records it
    with conn.transaction():
        assert chain.append(conn, payload) is True
    row = conn.execute("SELECT kind, actor, tenant_id::text FROM audit_log WHERE event_id = %s",
                       (payload["event_id"],)).fetchone()
    assert row == {"kind": "queue.paused", "actor": actor, "tenant_id": pauses.OPS_TENANT_ID}
    (report,) = chain.verify(conn, pauses.OPS_TENANT_ID)
    assert report.ok and report.entries >= 1


@pytest.mark.parametrize("call", [
    lambda c: pauses.pause(c, "emails", actor="a"),
    lambda c: pauses.resume(c, "'; DROP TABLE queue_pauses; --", actor="a"),
])
def test_an_unknown_queue_is_refused_naming_the_queues_and_changes_nothing(conn, call):
    with pytest.raises(ValueError, match="queues are email, invoice, audit"):
        call(conn)
    assert pauses.paused(conn) == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"actor": "", "reason": ""}, "actor"),
    ({"actor": "a", "reason": "x" * 201}, "at most 200"),
    ({"actor": "a", "reason": "line one\nline two"}, "printable"),
])
def test_a_bad_actor_or_reason_is_refused_and_changes_nothing(conn, kwargs, message):
    before = conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]
    with pytest.raises(ValueError, match=message):
        pauses.pause(conn, "audit", **kwargs)
    assert pauses.paused(conn) == {}
    assert conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == before


def test_the_table_itself_refuses_a_queue_that_does_not_exist(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO queue_pauses (queue, paused_by) VALUES ('sms', 'a')")


def test_a_long_actor_is_cut_to_what_the_audit_trail_accepts(conn):
    assert pauses.pause(conn, "email", actor="x" * 500)
    assert pauses.paused(conn)["email"].paused_by == "x" * chain.MAX_ACTOR_CHARS
