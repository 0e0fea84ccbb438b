"""`bookingctl queues` / `booking-admin queues` against real Postgres: list, pause, resume."""

from __future__ import annotations

import json

import pytest

from booking_core.ops import admin
from booking_core.queues import pauses

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
    assert listed["email"] == {"queue": "email", "paused": False}
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
