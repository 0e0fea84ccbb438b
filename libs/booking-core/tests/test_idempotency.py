"""booking_core.model.idempotency: the Idempotency-Key storage, without any web framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

from booking_core import db
from booking_core.model import idempotency


def test_the_storage_imports_no_web_framework():
    code = "import sys, booking_core.model.idempotency; print(sorted(m for m in sys.modules if m.startswith('flask')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_same_body_replays_other_body_is_refused_and_a_held_key_is_in_flight(database_url, tenant):
    fingerprint = idempotency.request_hash({"b": 1, "a": [1, 2]})
    assert fingerprint == idempotency.request_hash({"a": [1, 2], "b": 1})
    with db.connect(database_url) as conn:
        with conn.transaction():
            assert idempotency.begin(conn, tenant["id"], "k1", fingerprint, 3600) is None
            idempotency.store(conn, tenant["id"], "k1", fingerprint, 201, {"id": "x"}, "/x")
        with conn.transaction():
            stored = idempotency.begin(conn, tenant["id"], "k1", fingerprint, 3600)
            assert (stored["status"], stored["body"], stored["location"]) == (201, {"id": "x"}, "/x")
        with conn.transaction(), pytest.raises(idempotency.KeyReused):
            idempotency.begin(conn, tenant["id"], "k1", idempotency.request_hash({"other": 1}), 3600)
        # While one transaction holds the key, another is told to come back later.
        with conn.transaction():
            idempotency.begin(conn, tenant["id"], "k2", fingerprint, 3600)
            with db.connect(database_url) as other, other.transaction(), pytest.raises(idempotency.KeyInFlight):
                idempotency.begin(other, tenant["id"], "k2", fingerprint, 3600)


def test_purge_deletes_only_expired_keys(db_conn, tenant):
    for key, age in (("old", "2 hours"), ("new", "1 minute")):
        db_conn.execute("INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, created_at)"
                        " VALUES (%s, %s, %s, 201, '{}', now() - %s::interval)", (tenant["id"], key, b"\0", age))
    assert idempotency.purge_expired(db_conn, 3600) >= 1
    left = [r["key"] for r in db_conn.execute("SELECT key FROM idempotency_keys WHERE tenant_id = %s",
                                              (tenant["id"],))]
    assert left == ["new"]
