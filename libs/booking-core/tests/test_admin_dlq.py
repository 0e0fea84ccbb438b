"""`bookingctl dlq` / `booking-admin dlq` and `tasks retry` against real Postgres and Redis.

Dead letters are read from their Postgres record: a letter Redis no longer
holds is still listed, discarded or requeued; `--all --dry-run` only counts.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from dramatiq import Message

from booking_core.ops import admin
from booking_core.tasks import deadletters
from relay_helpers import booking_without_relay


@pytest.fixture
def env(settings, monkeypatch):
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("BOOKING_REDIS_NAMESPACE", settings.redis_namespace)):
        monkeypatch.setenv(name, value)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        admin.main(list(argv))
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def make_booking(conn, tenant: dict) -> str:
    return booking_without_relay(conn, tenant["id"])[0]


def die(conn, settings, booking_id: str | None, tenant_id: str | None, *, error: str, queue: str = "email",
        in_redis: bool = True) -> dict:
    """A dead letter as the worker leaves it: task dead and record written in one transaction, and
    (unless `in_redis` is False) the message in Dramatiq's `.XQ` set."""
    message = Message(queue_name=queue, actor_name="send_confirmation_email", args=(),
                      kwargs={"task": queue, "booking_id": booking_id, "tenant_id": tenant_id},
                      options={"retries": 3, "redis_message_id": str(uuid.uuid4()),
                               "trace_context": {"traceparent": "00-" + "cd" * 16 + "-" + "ef" * 8 + "-01"}})
    with conn.transaction():
        if booking_id:
            conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = %s",
                         (booking_id, queue))
        deadletters.record(conn, message, error=error)
    if in_redis:
        client = redis.Redis.from_url(settings.redis_url)
        rid = message.options["redis_message_id"]
        client.hset(f"{settings.redis_namespace}:{queue}.XQ.msgs", rid, message.encode())
        client.zadd(f"{settings.redis_namespace}:{queue}.XQ", {rid: time.time() * 1000})
    [letter] = [d for d in deadletters.list_dead(conn, deadletters.Filter(queue=queue))
                if d.message_id == message.message_id]
    return {"id": letter.id, "message_id": message.message_id, "redis_id": message.options["redis_message_id"]}


def test_discard_reports_each_letter_in_words_and_clears_the_redis_copy(settings, env, db_conn, capsys):
    # Given a dead letter without a tenant (nothing to audit), recorded and cached in Redis
    letter = die(db_conn, settings, None, None, error="Boom: refused")
    code, out, _ = run(capsys, "dlq", "discard", "--queue", "email", letter["id"])
    assert code == 0
    assert out.splitlines() == [f"discarded {letter['id']} (email)"]
    client = redis.Redis.from_url(settings.redis_url)
    assert client.zscore(f"{settings.redis_namespace}:email.XQ", letter["redis_id"]) is None
    # And a second discard names the letter as missing
    code, _, err = run(capsys, "dlq", "discard", letter["id"])
    assert code == 1 and f"no dead letter {letter['id']}" in err


def test_list_filters_by_tenant_and_error_text_and_shows_letters_redis_lost(settings, env, db_conn, tenant,
                                                                            capsys):
    booking_id = make_booking(db_conn, tenant)
    lost = die(db_conn, settings, booking_id, tenant["id"], error="SMTPRecipientsRefused: 550", in_redis=False)
    die(db_conn, settings, booking_id, tenant["id"], error="RenderError", queue="invoice")
    code, out, _ = run(capsys, "dlq", "list", "--json", "--tenant", tenant["name"], "--error", "smtp")
    assert code == 0
    [item] = json.loads(out)
    assert (item["id"], item["queue"], item["booking_id"]) == (lost["id"], "email", booking_id)
    code, _, err = run(capsys, "dlq", "list", "--tenant", "no-such-tenant")
    assert code == 2 and "no tenant named" in err


def test_requeue_all_dry_run_counts_then_requeues_through_the_outbox(settings, env, db_conn, tenant, capsys):
    # Given two dead emails of a tenant, one of which Redis lost
    ids = [make_booking(db_conn, tenant) for _ in range(2)]
    letters = [die(db_conn, settings, b, tenant["id"], error="SMTP down", in_redis=i == 0)
               for i, b in enumerate(ids)]
    # When a dry run is asked: a count, and nothing changes
    code, out, _ = run(capsys, "dlq", "requeue", "--all", "--dry-run", "--tenant", tenant["name"])
    assert (code, out.strip()) == (0, "would have requeued 2 dead letter(s)")
    assert db_conn.execute("SELECT count(*) AS n FROM outbox WHERE message_id = ANY(%s::uuid[])",
                           ([d["message_id"] for d in letters],)).fetchone()["n"] == 0
    # When run for real
    code, out, _ = run(capsys, "dlq", "requeue", "--all", "--tenant", tenant["name"])
    assert code == 0 and sorted(out.splitlines()) == sorted(f"requeued {d['id']} (email)" for d in letters)
    # Then both messages are in the outbox with fresh retries and their trace, tasks pending, audited
    rows = db_conn.execute("SELECT options FROM outbox WHERE message_id = ANY(%s::uuid[])",
                           ([d["message_id"] for d in letters],)).fetchall()
    assert len(rows) == 2
    assert all("retries" not in r["options"] and "redis_message_id" not in r["options"]
               and r["options"]["trace_context"]["traceparent"].startswith("00-" + "cd" * 16) for r in rows)
    assert {r["state"] for r in db_conn.execute(
        "SELECT state FROM booking_tasks WHERE task = 'email' AND booking_id = ANY(%s::uuid[])", (ids,))} == {"pending"}
    events = db_conn.execute("SELECT payload FROM outbox WHERE payload->>'kind' = 'deadletter.requeued'"
                             " AND payload->>'booking_id' = ANY(%s)", (ids,)).fetchall()
    assert len(events) == 2 and all(e["payload"]["actor"].startswith("cli:") for e in events)
    # And it was a bulk job like the API's and the console's, finished, visible to them
    job = db_conn.execute("SELECT state, done, matched, actor FROM ops_bulk_jobs WHERE filter->>'tenant_id' = %s",
                          (tenant["id"],)).fetchone()
    assert (job["state"], job["done"], job["matched"]) == ("finished", 2, 2) and job["actor"].startswith("cli:")
    # And nothing of that tenant is left to requeue
    code, out, _ = run(capsys, "dlq", "requeue", "--all", "--dry-run", "--tenant", tenant["name"])
    assert out.strip() == "would have requeued 0 dead letter(s)"


def test_tasks_retry_works_with_no_dead_letter_anywhere(settings, env, db_conn, tenant, capsys):
    booking_id = make_booking(db_conn, tenant)
    # A live task cannot be retried
    code, _, err = run(capsys, "tasks", "retry", booking_id, "invoice")
    assert code == 1 and "pending, not dead" in err
    db_conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'invoice'",
                    (booking_id,))
    code, out, _ = run(capsys, "tasks", "retry", booking_id, "invoice")
    assert code == 0 and out.startswith(f"retrying invoice of booking {booking_id}")
    [row] = db_conn.execute("SELECT queue, actor, payload FROM outbox WHERE queue = 'invoice'"
                            " AND payload->>'booking_id' = %s", (booking_id,)).fetchall()
    assert (row["queue"], row["actor"], row["payload"]["task"]) == ("invoice", "issue_invoice", "invoice")
    # A malformed id is a clear usage error
    code, _, err = run(capsys, "tasks", "retry", "nope", "email")
    assert code == 2 and "not a UUID" in err


def test_an_inverted_time_range_is_refused_by_the_same_rule_as_the_api(settings, env, db_conn, tenant, capsys):
    booking_id = make_booking(db_conn, tenant)
    die(db_conn, settings, booking_id, tenant["id"], error="SMTP down")
    code, out, err = run(capsys, "dlq", "requeue", "--all", "--tenant", tenant["name"],
                         "--since", "2026-12-01T00:00:00Z", "--before", "2026-11-01T00:00:00Z")
    assert (code, out) == (2, "")
    assert err.strip() == f"error: dead_before {deadletters.RANGE_RULE}"
    assert db_conn.execute("SELECT state FROM booking_tasks WHERE booking_id = %s AND task = 'email'",
                           (booking_id,)).fetchone()["state"] == "dead"
