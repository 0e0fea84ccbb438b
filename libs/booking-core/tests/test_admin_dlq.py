"""`dlq discard` says what it did, in words ("discarded", once spelt "discardd"), for each dead letter.

A dead letter is put where Dramatiq's Redis broker keeps them (`<ns>:<queue>.XQ`
and its `.msgs` hash) on the session's real Redis; the command runs against real
Postgres and Redis and must remove it. (A requeue writes an outbox row to the
shared test database, where other tests' relays would find it, so only discard runs here.)
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from dramatiq import Message

from booking_core import admin


def dead_letter(client: redis.Redis, namespace: str, queue: str) -> str:
    """One dead-lettered message without a tenant (nothing to audit), as Dramatiq stores it."""
    message = Message(queue_name=queue, actor_name="send_confirmation", args=(),
                      kwargs={"booking_id": None, "task": None}, options={"retries": 3})
    rid = str(uuid.uuid4())
    client.hset(f"{namespace}:{queue}.XQ.msgs", rid, message.encode())
    client.zadd(f"{namespace}:{queue}.XQ", {rid: time.time() * 1000})
    return rid


def test_discard_reports_each_letter_in_words(settings, monkeypatch, capsys):
    client = redis.Redis.from_url(settings.redis_url)
    rid = dead_letter(client, settings.redis_namespace, "email")
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("BOOKING_REDIS_NAMESPACE", settings.redis_namespace)):
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        admin.main(["dlq", "discard", "--queue", "email", rid])
    assert done.value.code == 0
    assert capsys.readouterr().out.splitlines() == [f"discarded {rid} (email)"]
    assert client.zscore(f"{settings.redis_namespace}:email.XQ", rid) is None
