"""`bookingctl queues` / `booking-admin queues` against real Postgres: list, pause, resume."""

from __future__ import annotations

import json
import uuid

import pytest

from booking_core.model import tenants
from booking_core.ops import admin
from booking_core.queues import pauses
from relay_helpers import fill_outbox

pytestmark = pytest.mark.usefixtures("no_queue_pauses")  # a pause is per queue: none before or after


def test_pause_list_and_resume_a_queue_as_the_command_line_user(env, db_conn, admin_cli):
    assert admin_cli("queues", "pause", "invoice", "--reason", "template fix") == (0, "paused invoice\n", "")
    assert admin_cli("queues", "pause", "invoice")[1] == "invoice was already paused\n"
    # The list shows each queue, the paused one with who, since when and why
    code, out, _ = admin_cli("queues")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["QUEUE", "STATE"]
    assert lines[1].split() == ["email", "running"] and lines[3].split() == ["audit", "running"]
    assert lines[2].startswith("invoice  paused") and lines[2].endswith("template fix")
    assert admin.who()[:30] in lines[2]
    code, out, _ = admin_cli("queues", "--json")
    listed = {q["queue"]: q for q in json.loads(out)}
    assert listed["invoice"]["paused"] is True and listed["invoice"]["paused_by"] == admin.who()
    assert {k: v for k, v in listed["email"].items() if "tenants" not in k} == {"queue": "email", "paused": False}
    # The change is audited as the command line's user
    (payload,) = [r["payload"] for r in db_conn.execute(
        "SELECT payload FROM outbox WHERE payload->>'kind' = 'queue.paused' AND payload->'details'->>'reason'"
        " = 'template fix' ORDER BY id DESC LIMIT 1")]
    assert payload["actor"] == admin.who()
    assert admin_cli("queues", "resume", "invoice")[:2] == (0, "resumed invoice\n")
    assert admin_cli("queues", "resume", "invoice")[1] == "invoice was not paused\n"
    assert pauses.paused(db_conn) == {}


def test_an_unknown_queue_or_a_bad_reason_is_refused_and_changes_nothing(env, db_conn, admin_cli):
    code, _, err = admin_cli("queues", "pause", "sms")
    assert code == 2 and "invalid choice: 'sms'" in err
    code, _, err = admin_cli("queues", "pause", "email", "--reason", "x" * 201)
    assert code == 2 and "reason must be at most 200 characters" in err
    assert pauses.paused(db_conn) == {}


def test_queues_show_who_is_filling_each_queue_bounded_and_escaped(env, db_conn, admin_cli):
    db_conn.execute("DELETE FROM outbox")
    try:
        name = f"flood-{uuid.uuid4().hex[:8]}"
        hostile = tenants.ensure_tenant(db_conn, name)["id"]
        # An outbox row's tenant id is payload text, not a tenant's (names are slugs): escapes, a bell, bidi
        fill_outbox(db_conn, hostile, "email", 30)
        fill_outbox(db_conn, "no-tenant\x07\x1b]0;pwned\u202e", "email", 20)
        for _ in range(12):  # more tenants than the top: the rest are one line
            fill_outbox(db_conn, str(uuid.uuid4()), "email", 1)
        code, out, _ = admin_cli("queues")
        assert code == 0
        assert not {"\x1b", "\x07", "\u202e"} & set(out), "no control character reaches the terminal"
        tenant_lines = [line for line in out.splitlines() if line.startswith("email ") and "running" not in line]
        assert len(tenant_lines) == 10 + 1
        first = tenant_lines[0].split()
        assert first[1] == name and first[2:4] == ["30", "0"]
        assert "(unknown tenant 'no-tenant\\x07\\x1b]0;pwn" in tenant_lines[1]  # escaped, cut to 40
        assert tenant_lines[-1].split()[1:5] == ["(and", "4", "more)", "4"]
        # --json: the names exactly as stored, JSON-encoded
        listed = {q["queue"]: q for q in json.loads(admin_cli("queues", "--json")[1])}
        top = listed["email"]["top_tenants"]
        assert (top[0]["name"], top[0]["waiting"], top[0]["tenant_id"]) == (name, 30, hostile)
        assert (top[1]["name"], top[1]["tenant_id"]) == (None, "no-tenant\x07\x1b]0;pwned\u202e") and len(top) == 10
        assert listed["email"]["other_tenants"]["tenants"] == 4 and listed["email"]["other_tenants"]["messages"] == 4
        assert listed["audit"]["top_tenants"] == [] and listed["audit"]["other_tenants"]["tenants"] == 0
    finally:
        db_conn.execute("DELETE FROM outbox")
