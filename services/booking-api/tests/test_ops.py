"""Ops endpoints on real Redis: queue depth and dead letters (list, requeue, discard, audited)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from dramatiq import Message

from booking_core.broker import make_broker
from booking_core.contracts import QUEUES

DEAD = "/api/v1/ops/dead-letters"


def dead_letter(settings, booking_id: str, tenant_id: str, queue: str = "email") -> dict:
    """Put a real dead letter in Redis the way Dramatiq does: enqueue, fetch, nack.

    Returns {'id': the broker's id of the dead letter, 'message_id': Dramatiq's id}.
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
        return {"id": sent.options["redis_message_id"], "message_id": sent.message_id}
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


def audit_events(db_conn, kind: str, dead_id: str) -> list[dict]:
    return db_conn.execute(
        "SELECT payload FROM outbox WHERE queue = 'audit' AND payload->>'kind' = %s"
        " AND payload->'details'->>'dead_letter_id' = %s", (kind, dead_id)).fetchall()


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
    # Then every queue is listed with four integer depths and the age of its oldest message
    assert resp.status_code == 200
    queues = resp.get_json()["queues"]
    assert [q["queue"] for q in queues] == list(QUEUES) == ["email", "invoice", "audit"]
    for q in queues:
        assert set(q) == {"queue", "ready", "in_flight", "delayed", "dead", "oldest_ready_age_ms"}
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
    assert depth["audit"] == {"queue": "audit", "ready": 0, "in_flight": 0, "delayed": 0,
                              "dead": 0, "oldest_ready_age_ms": 0}


def test_queues_with_client_token_is_403(client, auth):
    resp = client.get("/api/v1/ops/queues", headers=auth)
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"


# --- dead letters -------------------------------------------------------------------------


def test_dead_letters_lists_a_real_dead_letter(client, admin_auth, letter, booking):
    # Given a dead-lettered email message, when an admin lists dead letters
    resp = client.get(DEAD, headers=admin_auth)
    # Then it is there, with its queue, actor, ids and last error
    assert resp.status_code == 200
    [item] = resp.get_json()["items"]
    assert item["id"] == letter["id"]
    assert item["message_id"] == letter["message_id"]
    assert (item["queue"], item["actor"]) == ("email", "send_confirmation_email")
    assert item["booking_id"] == booking["id"]
    assert item["last_error"] == "smtplib.SMTPRecipientsRefused: 550 no such user"
    assert item["retries"] == 0
    assert item["dead_since"].endswith("+00:00")
    # And the queue filter selects by queue; an unknown queue is 422
    assert len(client.get(DEAD, query_string={"queue": "email"},
                          headers=admin_auth).get_json()["items"]) == 1
    assert client.get(DEAD, query_string={"queue": "invoice"},
                      headers=admin_auth).get_json() == {"items": []}
    bad = client.get(DEAD, query_string={"queue": "sms"}, headers=admin_auth)
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["field"] == "queue"


def test_requeue_sends_the_message_back_through_the_outbox_and_audits_it(
        client, admin_auth, admin_token, db_conn, settings, letter, booking):
    # Given a dead letter whose task the worker marked dead
    mark_task_dead(db_conn, booking["id"])
    # When an admin requeues it
    resp = client.post(f"{DEAD}/{letter['id']}/requeue", headers=admin_auth)
    # Then 200 naming the letter, and it is gone from the dead letters
    assert resp.status_code == 200
    assert resp.get_json()["requeued"]["id"] == letter["id"]
    assert client.get(DEAD, headers=admin_auth).get_json() == {"items": []}
    r = redis.Redis.from_url(settings.redis_url)
    assert r.zcard(f"{settings.redis_namespace}:email.XQ") == 0
    assert r.hlen(f"{settings.redis_namespace}:email.XQ.msgs") == 0
    # And the message is in the outbox with the same message id, its retries reset
    [row] = db_conn.execute("SELECT queue, actor, payload, options FROM outbox"
                            " WHERE message_id = %s", (letter["message_id"],)).fetchall()
    assert (row["queue"], row["actor"]) == ("email", "send_confirmation_email")
    assert row["payload"]["booking_id"] == booking["id"]
    assert not {"retries", "redis_message_id", "traceback"} & set(row["options"])
    # And the requeue is audited, naming the admin token's prefix
    [event] = audit_events(db_conn, "deadletter.requeued", letter["id"])
    assert admin_token[:10] in event["payload"]["actor"]
    assert event["payload"]["booking_id"] == booking["id"]
    assert event["payload"]["details"]["message_id"] == letter["message_id"]
    # And the booking's task is pending again
    assert task_row(db_conn, booking["id"])["state"] == "pending"
    # And requeueing it again is 404
    assert client.post(f"{DEAD}/{letter['id']}/requeue", headers=admin_auth).status_code == 404


def test_discard_drops_the_letter_and_audits_it(client, admin_auth, admin_token, db_conn,
                                                letter, booking):
    # Given a dead letter whose task is dead
    mark_task_dead(db_conn, booking["id"])
    # When an admin discards it
    resp = client.delete(f"{DEAD}/{letter['id']}", headers=admin_auth)
    # Then 204, the letter is gone, and nothing is sent again
    assert resp.status_code == 204
    assert resp.data == b""
    assert client.get(DEAD, headers=admin_auth).get_json() == {"items": []}
    assert db_conn.execute("SELECT count(*) AS n FROM outbox WHERE message_id = %s",
                           (letter["message_id"],)).fetchone()["n"] == 0
    # And the discard is audited, naming the admin token's prefix
    [event] = audit_events(db_conn, "deadletter.discarded", letter["id"])
    assert admin_token[:10] in event["payload"]["actor"]
    # And the task stays dead, its last error saying who discarded it
    row = task_row(db_conn, booking["id"])
    assert row["state"] == "dead"
    assert row["last_error"].startswith(f"discarded by token:{admin_token[:10]}")
    # And discarding it again is 404
    assert client.delete(f"{DEAD}/{letter['id']}", headers=admin_auth).status_code == 404


def test_requeue_with_the_wrong_queue_filter_is_404_and_keeps_the_letter(client, admin_auth,
                                                                        letter):
    resp = client.post(f"{DEAD}/{letter['id']}/requeue", query_string={"queue": "invoice"},
                       headers=admin_auth)
    assert resp.status_code == 404
    assert len(client.get(DEAD, headers=admin_auth).get_json()["items"]) == 1


@pytest.mark.parametrize("dead_id", [str(uuid.uuid4()), "not-an-id", "x" * 36],
                         ids=["unknown", "malformed", "not-hex"])
def test_unknown_dead_letter_is_404(client, admin_auth, db_conn, dead_id):
    before = db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]
    for resp in (client.post(f"{DEAD}/{dead_id}/requeue", headers=admin_auth),
                 client.delete(f"{DEAD}/{dead_id}", headers=admin_auth)):
        assert resp.status_code == 404
        assert resp.mimetype == "application/problem+json"
    assert db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == before


def test_dead_letter_endpoints_with_client_token_are_403_and_keep_the_letter(client, auth,
                                                                            admin_auth, letter):
    for resp in (client.get(DEAD, headers=auth),
                 client.post(f"{DEAD}/{letter['id']}/requeue", headers=auth),
                 client.delete(f"{DEAD}/{letter['id']}", headers=auth)):
        assert resp.status_code == 403
    assert len(client.get(DEAD, headers=admin_auth).get_json()["items"]) == 1
