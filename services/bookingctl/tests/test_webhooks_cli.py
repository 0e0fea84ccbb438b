"""`bookingctl webhooks ...` on the session's Postgres, and `listen`'s receiver on 127.0.0.1."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
import uuid

import pytest

from booking_core.model import tenants
from booking_core.ops.admin import who
from booking_core.webhooks import deliveries, sealing, signing
from bookingctl import cli
from bookingctl.listen import Listener
from relay_helpers import create_booking, webhook_audits


@pytest.fixture
def run(monkeypatch, settings, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("BOOKING_WEBHOOKS_KEY", sealing.new_key())

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as done:
            cli.main(["--data-dir", str(tmp_path), *argv])
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return run


def test_add_list_disable_rotate_deliveries_and_replay(run, tenant, db_conn):
    name = tenant["name"]
    code, out, _ = run("webhooks", "--tenant", name, "add", "https://hooks.example/in", "--event-type",
                       "booking.created")
    assert code == 0 and "secret: whsec_" in out
    endpoint_id = out.split()[0]
    code, out, _ = run("webhooks", "--tenant", name, "list")
    assert code == 0 and endpoint_id in out and "whsec_" not in out and "booking.created" in out
    booking_id = create_booking(db_conn, tenant["id"])
    [event] = db_conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking_id,))
    deliveries.fan_out(db_conn, event["id"], tenant["id"])
    code, out, _ = run("webhooks", "--tenant", name, "deliveries", endpoint_id)
    assert code == 0 and "booking.created" in out and "pending" in out and "msg_" in out
    db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE endpoint_id = %s", (endpoint_id,))
    code, out, _ = run("webhooks", "--tenant", name, "replay", endpoint_id, "--since", "2020-01-01T00:00:00+00:00",
                       "--dry-run")
    assert code == 0 and out.startswith("1 dead deliveries would be replayed")
    code, out, _ = run("webhooks", "--tenant", name, "rotate", endpoint_id, "--overlap", "60")
    assert code == 0 and "secret: whsec_" in out and "previous secret signs too until" in out
    code, out, _ = run("webhooks", "--tenant", name, "disable", endpoint_id)
    assert code == 0 and "disabled" in out
    code, out, err = run("webhooks", "--tenant", name, "add", "http://169.254.169.254/latest")
    assert code == 2 and "url" in err
    code, _, err = run("webhooks", "--tenant", "no-such-tenant", "list")
    assert code == 2 and "no tenant" in err
    # An endpoint of another tenant, or none at all, is "no endpoint" to each command that names one.
    other = str(uuid.uuid4())
    for argv in (("enable", other), ("disable", other), ("delete", other), ("rotate", other), ("deliveries", other),
                 ("replay", other, "--since", "2020-01-01T00:00:00+00:00")):
        code, _, err = run("webhooks", "--tenant", name, *argv)
        assert code == 2 and f"no endpoint {other} of tenant {name}" in err, (argv, err)
    code, out, _ = run("webhooks", "--tenant", name, "delete", endpoint_id)
    assert code == 0
    assert run("webhooks", "--tenant", name, "list")[1] == ""


def test_each_replay_is_audited_once_as_the_command_line_user(run, tenant, db_conn):
    name = tenant["name"]
    endpoint_id = run("webhooks", "--tenant", name, "add", "https://hooks.example/in")[1].split()[0]
    booking_id = create_booking(db_conn, tenant["id"])
    [event] = db_conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking_id,))
    deliveries.fan_out(db_conn, event["id"], tenant["id"])
    [delivery] = db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE endpoint_id = %s"
                                 " RETURNING id::text", (endpoint_id,))
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    # Refused: the delivery is not the named tenant's, or there is none.
    assert run("webhooks", "--tenant", other["name"], "replay", delivery["id"])[0] == 2
    assert run("webhooks", "--tenant", name, "replay", str(uuid.uuid4()))[0] == 2
    assert webhook_audits(db_conn, tenant["id"]) == [] and webhook_audits(db_conn, other["id"]) == []
    assert run("webhooks", "--tenant", name, "replay", delivery["id"])[:2] == (0, "replayed\n")
    [entry] = webhook_audits(db_conn, tenant["id"])
    assert (entry["kind"], entry["actor"], entry["details"]["delivery_id"]) == ("webhook.replayed", who(),
                                                                               delivery["id"])
    db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE id = %s", (delivery["id"],))
    since = "2020-01-01T00:00:00+00:00"
    assert run("webhooks", "--tenant", name, "replay", endpoint_id, "--since", since, "--dry-run")[0] == 0
    assert len(webhook_audits(db_conn, tenant["id"])) == 1  # a dry run writes nothing
    assert run("webhooks", "--tenant", name, "replay", endpoint_id, "--since", since)[1].startswith("1 dead")
    entry = webhook_audits(db_conn, tenant["id"])[-1]
    assert (entry["kind"], entry["actor"]) == ("webhook.replayed_since", who())
    assert entry["details"] == {"endpoint_id": endpoint_id, "since": since, "count": 1}
    assert len(webhook_audits(db_conn, tenant["id"])) == 2


def post(url: str, body: bytes, headers: dict) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_listen_verifies_prints_and_forwards_unchanged():
    secret = signing.new_secret()
    downstream_out, out = io.StringIO(), io.StringIO()
    downstream = Listener(secret, out=downstream_out)  # verifies the forwarded request on its own
    downstream.start()
    listener = Listener(secret, forward_to=downstream.url, out=out)
    listener.start()
    try:
        body = (b'{"type":"booking.created","timestamp":"2027-01-01T00:00:00.000000Z",'
                b'"data":{"booking_id":"b-1","sequence":1}}')
        headers = {**signing.headers([secret], "msg_1", int(time.time()), body), "Content-Type": "application/json"}
        assert post(listener.url, body, headers) == 200
        assert "booking.created  msg_1  booking=b-1  sequence=1" in out.getvalue()
        assert f"forwarded to {downstream.url}: 200" in out.getvalue()
        assert "booking.created  msg_1" in downstream_out.getvalue()
        forged = {**headers, "webhook-signature": signing.sign(signing.new_secret(), "msg_1", int(time.time()), body)}
        assert post(listener.url, body, forged) == 401
        assert "REJECTED msg_1" in out.getvalue()
    finally:
        listener.close()
        downstream.close()


def test_listen_prints_a_rejected_requests_id_escaped():
    out = io.StringIO()
    listener = Listener(signing.new_secret(), out=out)
    try:
        assert listener.receive(b"{}", {"webhook-id": "msg\x1b[2J\u202eevil", "webhook-timestamp": "1",
                                        "webhook-signature": "v1,AAAA"}) == 401
    finally:
        listener.server.server_close()
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert "REJECTED msg\\x1b[2J\\u202eevil" in out.getvalue()
