"""Ops endpoints on real Postgres and Redis: queue depth, dead letters (list, filter, requeue,
discard, one or all that match, audited) and retrying a dead task."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from dramatiq import Message

from booking_core import db
from booking_core.messaging.contracts import QUEUES
from booking_core.tasks import deadletters
from booking_core.worker.broker import make_broker
from e2e_helpers import wait_until

DEAD = "/api/v1/ops/dead-letters"


def dead_letter(settings, booking_id: str, tenant_id: str, queue: str = "email", *,
                error: str = "SMTPRecipientsRefused: 550 no such user", in_redis: bool = True) -> dict:
    """A real dead letter: in Redis the way Dramatiq puts it there (enqueue, fetch, nack), and
    recorded in Postgres with the task marked dead, in one transaction, as the worker's middleware does.

    Returns {'id': the record's id, 'redis_id': the broker's id, 'message_id': Dramatiq's id}.
    `in_redis=False` then deletes the Redis copy, as an expiry or a flush would.
    """
    broker = make_broker(settings)
    try:
        sent = broker.enqueue(Message(
            queue_name=queue, actor_name="send_confirmation_email", args=(),
            kwargs={"task": queue, "booking_id": booking_id, "tenant_id": tenant_id},
            options={"traceback": "Traceback (most recent call last):\n"
                                  "smtplib.SMTPRecipientsRefused: 550 no such user"},
        ))
        consumer = broker.consume(queue, prefetch=1, timeout=100)
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = next(consumer)
        assert message is not None, "the enqueued message never arrived"
        consumer.nack(message)
        consumer.close()
        with db.connect(settings.database_url, autocommit=True) as conn, conn.transaction():
            mark_task_dead(conn, booking_id, queue)
            deadletters.record(conn, message, error=error)
            [record] = deadletters.list_dead(conn, deadletters.Filter(booking_id=booking_id, queue=queue))
        redis_id = sent.options["redis_message_id"]
        if not in_redis:
            r = redis.Redis.from_url(settings.redis_url)
            r.zrem(f"{settings.redis_namespace}:{queue}.XQ", redis_id)
            r.hdel(f"{settings.redis_namespace}:{queue}.XQ.msgs", redis_id)
        return {"id": record.id, "redis_id": redis_id, "message_id": sent.message_id}
    finally:
        broker.close()


@pytest.fixture
def booking(client, auth, booking_body) -> dict:
    resp = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert resp.status_code == 201
    return resp.get_json()


@pytest.fixture
def letter(settings, booking, tenant) -> dict:
    """The booking's email message, dead-lettered."""
    return dead_letter(settings, booking["id"], tenant["id"])


def audit_events(db_conn, kind: str, booking_id: str) -> list[dict]:
    return db_conn.execute(
        "SELECT payload FROM outbox WHERE queue = 'audit' AND payload->>'kind' = %s"
        " AND payload->>'booking_id' = %s", (kind, booking_id)).fetchall()


def mark_task_dead(db_conn, booking_id: str, task: str = "email") -> None:
    db_conn.execute("UPDATE booking_tasks SET state = 'dead', attempts = 13,"
                    " last_error = 'SMTPRecipientsRefused' WHERE booking_id = %s AND task = %s",
                    (booking_id, task))


def task_row(db_conn, booking_id: str, task: str = "email") -> dict:
    return db_conn.execute("SELECT state, last_error FROM booking_tasks WHERE booking_id = %s"
                           " AND task = %s", (booking_id, task)).fetchone()


# --- queues -------------------------------------------------------------------------------


def test_queues_lists_the_three_queues_with_integer_depths(client, admin_auth):
    # Given an admin token and an empty namespace
    resp = client.get("/api/v1/ops/queues", headers=admin_auth)
    # Then every queue is listed with four integer depths, the age of its oldest message, and not paused
    assert resp.status_code == 200
    queues = resp.get_json()["queues"]
    assert [q["queue"] for q in queues] == list(QUEUES) == ["email", "invoice", "audit", "webhook"]
    for q in queues:
        assert set(q) == {"queue", "ready", "in_flight", "delayed", "dead", "oldest_ready_age_ms", "paused",
                          "top_tenants", "other_tenants"}
        assert q["paused"] is False
        assert all(type(q[k]) is int and q[k] == 0 for k in ("ready", "in_flight", "delayed",
                                                             "dead", "oldest_ready_age_ms"))


def test_queues_count_ready_and_dead_messages(client, admin_auth, settings, booking, tenant):
    # Given one dead letter in email and one ready message in invoice
    dead_letter(settings, booking["id"], tenant["id"], "email")
    broker = make_broker(settings)
    broker.enqueue(Message(queue_name="invoice", actor_name="issue_invoice", args=(),
                           kwargs={}, options={}))
    broker.close()
    # Then the snapshot shows them
    depth = {q["queue"]: q for q in
             client.get("/api/v1/ops/queues", headers=admin_auth).get_json()["queues"]}
    assert (depth["email"]["dead"], depth["email"]["ready"]) == (1, 0)
    assert (depth["invoice"]["ready"], depth["invoice"]["dead"]) == (1, 0)
    assert {k: v for k, v in depth["audit"].items() if "tenants" not in k} == {
        "queue": "audit", "ready": 0, "in_flight": 0, "delayed": 0, "dead": 0, "oldest_ready_age_ms": 0,
        "paused": False}


def test_queues_with_client_token_is_403(client, auth):
    resp = client.get("/api/v1/ops/queues", headers=auth)
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"


# --- dead letters -------------------------------------------------------------------------


def listed(client, admin_auth, **query) -> list[dict]:
    resp = client.get(DEAD, query_string=query, headers=admin_auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"]


def in_redis(settings, letter, queue: str = "email") -> bool:
    r = redis.Redis.from_url(settings.redis_url)
    return r.zscore(f"{settings.redis_namespace}:{queue}.XQ", letter["redis_id"]) is not None


def outbox_rows(db_conn, message_id: str) -> list[dict]:
    return db_conn.execute("SELECT queue, actor, payload, options FROM outbox WHERE message_id = %s",
                           (message_id,)).fetchall()


def test_dead_letters_lists_the_postgres_record(client, admin_auth, letter, booking, tenant):
    # Given a dead-lettered email message, when an admin lists the tenant's dead letters
    [item] = listed(client, admin_auth, tenant_id=tenant["id"])
    # Then it is there, with its queue, actor, ids and final error
    assert item["id"] == letter["id"]
    assert item["message_id"] == letter["message_id"]
    assert (item["queue"], item["actor"]) == ("email", "send_confirmation_email")
    assert item["booking_id"] == booking["id"]
    assert item["last_error"] == "SMTPRecipientsRefused: 550 no such user"
    assert item["dead_since"].endswith("+00:00")


def test_a_letter_redis_lost_is_still_listed_and_requeued(client, admin_auth, db_conn, settings, booking,
                                                          tenant):
    # Given a dead letter whose Redis copy is gone (expired, flushed)
    letter = dead_letter(settings, booking["id"], tenant["id"], in_redis=False)
    assert not in_redis(settings, letter)
    # Then it is listed from Postgres, and a requeue sends it through the outbox
    assert [d["id"] for d in listed(client, admin_auth, tenant_id=tenant["id"])] == [letter["id"]]
    assert client.post(f"{DEAD}/{letter['id']}/requeue", headers=admin_auth).status_code == 200
    assert len(outbox_rows(db_conn, letter["message_id"])) == 1
    assert task_row(db_conn, booking["id"])["state"] == "pending"


@pytest.mark.parametrize(("query", "expected"), [
    ({"queue": "email"}, {"email"}),
    ({"queue": "invoice"}, {"invoice"}),
    ({"error": "smtp"}, {"email"}),  # any case
    ({"error": "WeasyPrint"}, {"invoice"}),
    ({"error": "%"}, set()),  # a LIKE wildcard is taken literally
    ({"error": "_"}, {"invoice"}),
    ({"dead_since": "2000-01-01T00:00:00Z"}, {"email", "invoice"}),
    ({"dead_before": "2000-01-01T00:00:00Z"}, set()),
], ids=["queue-email", "queue-invoice", "error-any-case", "error-other", "error-percent-literal",
        "error-underscore-literal", "since", "before"])
def test_filters_select_by_queue_error_text_and_time(client, admin_auth, settings, booking, tenant, query,
                                                     expected):
    # Given two dead letters of one tenant: an email refused, an invoice that failed to render
    dead_letter(settings, booking["id"], tenant["id"], "email")
    dead_letter(settings, booking["id"], tenant["id"], "invoice", error="RenderError: weasyprint_failed")
    # When listed with a filter, then exactly the matching ones come back
    assert {d["queue"] for d in listed(client, admin_auth, tenant_id=tenant["id"], **query)} == expected


def test_tenant_filter_keeps_other_tenants_letters_out(client, admin_auth, settings, booking, tenant):
    dead_letter(settings, booking["id"], tenant["id"])
    assert listed(client, admin_auth, tenant_id=str(uuid.uuid4())) == []
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 1


def test_the_list_is_paged_oldest_first_by_cursor(client, admin_auth, settings, tenant, booking_body, auth):
    # Given five dead letters of one tenant, each a booking's email
    ids = []
    for _ in range(5):
        made = client.post("/api/v1/bookings", json=booking_body(), headers=auth).get_json()
        ids.append(dead_letter(settings, made["id"], tenant["id"], in_redis=False)["id"])
    # When listed two at a time
    pages, cursor = [], None
    for _ in range(10):  # a cursor that never ends fails below instead of looping for ever
        query = {"tenant_id": tenant["id"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        resp = client.get(DEAD, query_string=query, headers=admin_auth)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        pages.append([d["id"] for d in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Then three pages of 2, 2 and 1 hold every letter once, in the order they died
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == ids
    # And without a limit, all five fit the default page of 20
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 5


@pytest.mark.parametrize(("query", "field"), [
    ({"queue": "sms"}, "queue"), ({"tenant_id": "nope"}, "tenant_id"),
    ({"dead_since": "yesterday"}, "dead_since"), ({"error": "a\x00b"}, "error"), ({"error": " "}, "error"),
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"cursor": "not*base64"}, "cursor"),
    ({"cursor": "bm90IGpzb24"}, "cursor"),
])
def test_a_bad_filter_is_422_naming_the_parameter(client, admin_auth, query, field):
    resp = client.get(DEAD, query_string=query, headers=admin_auth)
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]


def test_requeue_sends_the_message_back_through_the_outbox_and_audits_it(
        client, admin_auth, admin_token, db_conn, settings, letter, booking, tenant):
    # When an admin requeues the dead letter
    resp = client.post(f"{DEAD}/{letter['id']}/requeue", headers=admin_auth)
    # Then 200 naming the letter; it is no longer listed, and Redis' cached copy is gone
    assert resp.status_code == 200
    assert resp.get_json()["requeued"]["id"] == letter["id"]
    assert listed(client, admin_auth, tenant_id=tenant["id"]) == []
    assert not in_redis(settings, letter)
    # And the message is in the outbox with the same message id, its retries reset
    [row] = outbox_rows(db_conn, letter["message_id"])
    assert (row["queue"], row["actor"]) == ("email", "send_confirmation_email")
    assert row["payload"]["booking_id"] == booking["id"]
    assert not {"retries", "redis_message_id", "traceback", "max_retries", "db_outages"} & set(row["options"])
    # And the requeue is audited, naming the admin token's prefix
    [event] = audit_events(db_conn, "deadletter.requeued", booking["id"])
    assert admin_token[:10] in event["payload"]["actor"]
    assert event["payload"]["details"]["dead_letter_id"] == letter["id"]
    assert event["payload"]["details"]["message_id"] == letter["message_id"]
    # And the record says who resolved it, and the task is pending again
    rec = db_conn.execute("SELECT resolution, resolved_by FROM dead_letters WHERE id = %s",
                          (letter["id"],)).fetchone()
    assert rec["resolution"] == "requeued" and admin_token[:10] in rec["resolved_by"]
    assert task_row(db_conn, booking["id"])["state"] == "pending"
    # And requeueing it again is 404
    assert client.post(f"{DEAD}/{letter['id']}/requeue", headers=admin_auth).status_code == 404


def test_discard_closes_the_letter_and_audits_it(client, admin_auth, admin_token, db_conn, settings, letter,
                                                booking, tenant):
    # When an admin discards it
    resp = client.delete(f"{DEAD}/{letter['id']}", headers=admin_auth)
    # Then 204, the letter is gone from the list and from Redis, and nothing is sent again
    assert resp.status_code == 204
    assert resp.data == b""
    assert listed(client, admin_auth, tenant_id=tenant["id"]) == []
    assert not in_redis(settings, letter)
    assert outbox_rows(db_conn, letter["message_id"]) == []
    # And the discard is audited, naming the admin token's prefix
    [event] = audit_events(db_conn, "deadletter.discarded", booking["id"])
    assert admin_token[:10] in event["payload"]["actor"]
    # And the task stays dead, its last error saying who discarded it
    row = task_row(db_conn, booking["id"])
    assert row["state"] == "dead"
    assert row["last_error"].startswith(f"discarded by token:{admin_token[:10]}")
    # And discarding it again is 404
    assert client.delete(f"{DEAD}/{letter['id']}", headers=admin_auth).status_code == 404


def test_requeue_with_the_wrong_queue_filter_is_404_and_keeps_the_letter(client, admin_auth, letter, tenant):
    resp = client.post(f"{DEAD}/{letter['id']}/requeue", query_string={"queue": "invoice"},
                       headers=admin_auth)
    assert resp.status_code == 404
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 1


@pytest.mark.parametrize("dead_id", [str(uuid.uuid4()), "not-an-id", "x" * 36],
                         ids=["unknown", "malformed", "not-hex"])
def test_unknown_dead_letter_is_404(client, admin_auth, db_conn, dead_id):
    before = db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]
    for resp in (client.post(f"{DEAD}/{dead_id}/requeue", headers=admin_auth),
                 client.delete(f"{DEAD}/{dead_id}", headers=admin_auth)):
        assert resp.status_code == 404
        assert resp.mimetype == "application/problem+json"
    assert db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == before


def test_dead_letter_endpoints_with_client_token_are_403_and_keep_the_letter(client, auth, admin_auth, letter,
                                                                            tenant):
    for resp in (client.get(DEAD, headers=auth),
                 client.post(f"{DEAD}/{letter['id']}/requeue", headers=auth),
                 client.delete(f"{DEAD}/{letter['id']}", headers=auth),
                 client.post(f"{DEAD}/requeue", json={"tenant_id": tenant["id"]}, headers=auth)):
        assert resp.status_code == 403
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 1


# --- bulk ---------------------------------------------------------------------------------


@pytest.fixture
def bookings3(client, auth, booking_body) -> list[dict]:
    out = []
    for _ in range(3):
        resp = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
        assert resp.status_code == 201
        out.append(resp.get_json())
    return out


def finished_job(client, admin_auth, resp) -> dict:
    """The job a 202 started, once the runner has finished it (as its Location shows it)."""
    assert resp.status_code == 202 and resp.headers["Location"] == f"/api/v1/ops/jobs/{resp.get_json()['id']}"

    def ended() -> dict | None:
        job = client.get(resp.headers["Location"], headers=admin_auth).get_json()
        return job if job["state"] in ("finished", "failed") else None

    return wait_until(ended, timeout=30, what="the job to end")


def test_bulk_requeue_counts_with_dry_run_then_requeues_all_that_match(
        client, admin_auth, db_conn, settings, bookings3, tenant, bulk_runner):
    # Given three dead emails (one no longer in Redis) and one dead invoice of the tenant
    letters = [dead_letter(settings, b["id"], tenant["id"], in_redis=i != 0) for i, b in enumerate(bookings3)]
    dead_letter(settings, bookings3[0]["id"], tenant["id"], "invoice", error="RenderError: boom")
    f = {"tenant_id": tenant["id"], "queue": "email"}
    # When an admin asks for a dry run: the count, and nothing changes
    resp = client.post(f"{DEAD}/requeue", json={**f, "dry_run": True}, headers=admin_auth)
    assert (resp.status_code, resp.get_json()) == (200, {"action": "requeue", "dry_run": True, "count": 3})
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 4
    assert all(outbox_rows(db_conn, d["message_id"]) == [] for d in letters)
    # When it runs for real: a job, done by the runner in batches, its progress at its Location
    resp = client.post(f"{DEAD}/requeue", json=f, headers=admin_auth)
    started = resp.get_json()
    assert (started["action"], started["counts"]["total"], started["filter"]) == (
        "requeue", 3, {"queue": "email", "tenant_id": tenant["id"]})
    job = finished_job(client, admin_auth, resp)
    assert (job["state"], job["counts"], job["errors"]) == ("finished", {"done": 3, "total": 3}, [])
    assert job["actor"].startswith("token:")
    # Then the three emails are in the outbox, each audited, their tasks pending; the invoice is untouched
    assert all(len(outbox_rows(db_conn, d["message_id"])) == 1 for d in letters)
    assert all(not in_redis(settings, d) for d in letters)
    assert all(task_row(db_conn, b["id"])["state"] == "pending" for b in bookings3)
    assert sum(len(audit_events(db_conn, "deadletter.requeued", b["id"])) for b in bookings3) == 3
    assert [d["queue"] for d in listed(client, admin_auth, tenant_id=tenant["id"])] == ["invoice"]


def test_bulk_discard_by_error_text(client, admin_auth, db_conn, settings, bookings3, tenant, bulk_runner):
    dead_letter(settings, bookings3[0]["id"], tenant["id"], error="SMTPRecipientsRefused: 550 gone")
    dead_letter(settings, bookings3[1]["id"], tenant["id"], error="TimeoutError: timed out")
    body = {"tenant_id": tenant["id"], "error": "550"}
    assert client.post(f"{DEAD}/discard", json={**body, "dry_run": True},
                       headers=admin_auth).get_json()["count"] == 1
    job = finished_job(client, admin_auth, client.post(f"{DEAD}/discard", json=body, headers=admin_auth))
    assert job["counts"] == {"done": 1, "total": 1}
    [left] = listed(client, admin_auth, tenant_id=tenant["id"])
    assert left["booking_id"] == bookings3[1]["id"]
    assert len(audit_events(db_conn, "deadletter.discarded", bookings3[0]["id"])) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"dry_run": "yes"}, "dry_run"), ({"queue": "sms"}, "queue"), ({"surprise": 1}, "surprise"),
    ({"dead_before": "soon"}, "dead_before"), ({"error": "\udfff"}, "error"), ([], ""),
    ({"tenant": "no-such-tenant"}, "tenant"), ({"tenant_id": "42"}, "tenant_id"),
])
def test_a_bad_bulk_body_is_422_and_changes_nothing(client, admin_auth, db_conn, letter, tenant, body, field):
    resp = client.post(f"{DEAD}/requeue", json=body, headers=admin_auth)
    assert resp.status_code == 422
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 1
    assert db_conn.execute("SELECT count(*) AS n FROM ops_bulk_jobs WHERE actor LIKE %s",
                           (f"%{tenant['name']}%",)).fetchone()["n"] == 0, "no job was started"


def test_an_unknown_job_is_404_and_jobs_need_an_admin_token(client, admin_auth, auth):
    assert client.get(f"/api/v1/ops/jobs/{uuid.uuid4()}", headers=admin_auth).status_code == 404
    assert client.get(f"/api/v1/ops/jobs/{uuid.uuid4()}", headers=auth).status_code == 403


@pytest.mark.parametrize("window", [("2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z"),
                                    ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"),
                                    ("2026-12-01T01:00:00+01:00", "2026-12-01T00:00:00Z")],
                         ids=["inverted", "empty", "same-instant-other-zone"])
@pytest.mark.parametrize("call", ["list", "requeue", "discard", "dry-run"])
def test_a_time_range_that_selects_nothing_by_construction_is_422_naming_dead_before(
        client, admin_auth, letter, tenant, window, call):
    """One rule for the list and the bulk actions: an inverted range is a mistake, not "0 letters"."""
    since, before = window
    if call == "list":
        resp = client.get(DEAD, query_string={"dead_since": since, "dead_before": before}, headers=admin_auth)
    else:
        body = {"dead_since": since, "dead_before": before, "dry_run": call == "dry-run"}
        resp = client.post(f"{DEAD}/{'discard' if call == 'discard' else 'requeue'}", json=body, headers=admin_auth)
    assert resp.status_code == 422
    [error] = resp.get_json()["errors"]
    assert error["field"] == "dead_before" and "later than dead_since" in error["message"]
    assert len(listed(client, admin_auth, tenant_id=tenant["id"])) == 1


# --- retry a task -------------------------------------------------------------------------


def retry_url(booking_id: str, task: str = "email") -> str:
    return f"/api/v1/ops/bookings/{booking_id}/tasks/{task}/retry"


def test_retry_without_any_dead_letter_rebuilds_the_message_with_its_trace(
        client, admin_auth, admin_token, db_conn, booking):
    # Given a dead task with no dead-letter record and nothing in Redis
    mark_task_dead(db_conn, booking["id"])
    db_conn.execute("UPDATE booking_tasks SET trace_id = %s WHERE booking_id = %s", ("ab" * 16, booking["id"]))
    db_conn.execute("DELETE FROM outbox WHERE payload->>'booking_id' = %s", (booking["id"],))
    # When an admin retries it
    resp = client.post(retry_url(booking["id"]), headers=admin_auth)
    # Then 202 with the message sent, which is in the outbox with fresh retries and the trace kept
    assert resp.status_code == 202, resp.get_json()
    got = resp.get_json()
    assert (got["booking_id"], got["task"]) == (booking["id"], "email")
    [row] = outbox_rows(db_conn, got["message_id"])
    assert (row["queue"], row["actor"]) == ("email", "send_confirmation_email")
    assert row["payload"] == {"task": "email", "booking_id": booking["id"], "tenant_id": row["payload"]["tenant_id"]}
    assert row["options"]["trace_context"]["traceparent"].startswith("00-" + "ab" * 16 + "-")
    assert "retries" not in row["options"]
    # And the task is pending, and the retry is audited with who did it
    assert task_row(db_conn, booking["id"])["state"] == "pending"
    [event] = audit_events(db_conn, "deadletter.requeued", booking["id"])
    assert admin_token[:10] in event["payload"]["actor"]
    assert event["payload"]["details"]["task"] == "email"
    # And a second retry is 409: the task is no longer dead
    again = client.post(retry_url(booking["id"]), headers=admin_auth)
    assert again.status_code == 409 and "pending" in again.get_json()["detail"]


def test_retry_uses_and_resolves_the_dead_letter_record(client, admin_auth, db_conn, settings, letter, booking,
                                                        tenant):
    resp = client.post(retry_url(booking["id"]), headers=admin_auth)
    assert resp.status_code == 202
    assert resp.get_json()["message_id"] == letter["message_id"]
    assert len(outbox_rows(db_conn, letter["message_id"])) == 1
    assert listed(client, admin_auth, tenant_id=tenant["id"]) == []
    assert not in_redis(settings, letter)


@pytest.mark.parametrize(("path", "status"), [
    (retry_url(str(uuid.uuid4())), 404), (retry_url("not-a-uuid"), 404),
], ids=["unknown-booking", "malformed-id"])
def test_retry_of_an_unknown_booking_is_404(client, admin_auth, path, status):
    assert client.post(path, headers=admin_auth).status_code == status


def test_retry_of_a_live_task_or_unknown_task_changes_nothing(client, admin_auth, auth, db_conn, booking):
    before = db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]
    assert client.post(retry_url(booking["id"]), headers=admin_auth).status_code == 409
    assert client.post(retry_url(booking["id"], "sms"), headers=admin_auth).status_code == 404
    assert client.post(retry_url(booking["id"]), headers=auth).status_code == 403
    assert db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == before
