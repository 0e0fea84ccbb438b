"""Idempotency-Key semantics as a hypothesis state machine, against the real app and Postgres.

Hypothesis runs random sequences of POST /api/v1/bookings from two tenants,
each with a key from a small pool (or none) and a body from a small pool, and
now and then the same request twice at once. A model predicts every answer:

- no key: a new booking each time;
- a key not used yet by this tenant: a new booking, stored under the key;
- the same key and the same body (key order and spacing aside): the stored
  response replayed, same booking, `Idempotent-Replayed: true`;
- the same key with another body: 422, nothing written;
- an invalid body: 422 for its fields, nothing written, and the key stays free;
- keys are per tenant: two tenants use the same key independently;
- two identical requests at once: one is answered as above, the other either
  the same way (a replay) or 409 (the key is in flight), never a second booking.

After every step, the bookings and keys Postgres holds for each tenant are
exactly those the model counts.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from booking_core.model import tenants
from booking_core.web.problems import PROBLEM_TYPE

URL = "/api/v1/bookings"
_BASE = {
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "item": "Sea-view room",
    "check_in": "2027-03-01",
    "check_out": "2027-03-04",
    "amount": "360.00",
    "currency": "EUR",
}


@dataclass(frozen=True)
class Body:
    """A request body as sent (`raw`), and which request it is (`request`, None when invalid)."""

    raw: str
    request: str | None


BODIES = [
    Body(json.dumps(_BASE), "sea-view"),
    # The same request with its keys in another order and other spacing: the same fingerprint.
    Body(json.dumps(dict(reversed(list(_BASE.items()))), indent=3), "sea-view"),
    Body(json.dumps({**_BASE, "item": "Garden room", "amount": "120"}), "garden"),
    Body(json.dumps({**_BASE, "amount": "0"}), None),  # invalid: refused before the key is looked at
]
#: `"k-1"` (a structured-field string) is the key k-1.
KEYS = [None, "k-1", '"k-1"', "k-2"]


def _key(header: str | None) -> str | None:
    return header.strip('"') if header else None


@dataclass
class TenantModel:
    """What one tenant should have: bookings, and per key the request and answer it holds."""

    auth: dict
    tenant_id: str
    bookings: set[str] = field(default_factory=set)
    keys: dict[str, tuple[str, dict]] = field(default_factory=dict)


def _count(db_conn, table: str, tenant_id: str) -> int:
    return db_conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s",
                           (tenant_id,)).fetchone()["n"]


def test_idempotency_keys_behave_as_the_model_predicts(app, db_conn):
    class IdempotencyMachine(RuleBasedStateMachine):
        """Two fresh tenants per run; rules send requests, the model checks each answer."""

        @initialize()
        def two_tenants(self):
            self.tenants = []
            for _ in range(2):
                tenant = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
                token = tenants.create_token(db_conn, tenant["id"])["token"]
                self.tenants.append(TenantModel({"Authorization": f"Bearer {token}"}, tenant["id"]))

        def _post(self, model: TenantModel, key: str | None, body: Body, client=None):
            headers = {**model.auth, **({"Idempotency-Key": key} if key else {})}
            return (client or app.test_client()).post(URL, data=body.raw, content_type="application/json",
                                                      headers=headers)

        def _expect(self, model: TenantModel, key: str | None, body: Body, resp, *, may_be_in_flight=False):
            """Check one answer against the model, and update the model with it."""
            if may_be_in_flight and resp.status_code == 409:
                assert resp.get_json()["type"] == PROBLEM_TYPE + "idempotency-in-flight"
                assert resp.headers["Retry-After"]
                return
            if body.request is None:
                assert resp.status_code == 422
                assert resp.get_json()["type"] == PROBLEM_TYPE + "invalid-booking"
                return
            stored = model.keys.get(_key(key)) if key else None
            if stored is not None and stored[0] != body.request:
                assert resp.status_code == 422
                assert resp.get_json()["type"] == PROBLEM_TYPE + "idempotency-key-reused"
                return
            assert resp.status_code == 201, resp.get_json()
            if stored is not None:
                assert resp.headers.get("Idempotent-Replayed") == "true"
                assert resp.get_json() == stored[1]
                assert resp.headers["Location"] == stored[1]["links"]["self"]
                return
            assert "Idempotent-Replayed" not in resp.headers
            booking = resp.get_json()
            assert booking["id"] not in model.bookings
            model.bookings.add(booking["id"])
            if key:
                model.keys[_key(key)] = (body.request, booking)

        @rule(who=st.integers(0, 1), key=st.sampled_from(KEYS), body=st.sampled_from(BODIES))
        def post(self, who, key, body):
            model = self.tenants[who]
            self._expect(model, key, body, self._post(model, key, body))

        @rule(who=st.integers(0, 1), key=st.sampled_from(KEYS[1:]), body=st.sampled_from(BODIES))
        def post_the_same_twice_at_once(self, who, key, body):
            model = self.tenants[who]
            start = threading.Barrier(2)
            answers = [None, None]

            def send(i: int) -> None:
                client = app.test_client()
                start.wait()
                answers[i] = self._post(model, key, body, client)

            threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert all(a is not None for a in answers), "a request did not finish"
            # The one that was not refused as in flight is answered as if alone (at most one is refused:
            # the first to take the key's lock always goes on); the other is a replay of it, or in flight.
            answers.sort(key=lambda a: (a.status_code == 409, "Idempotent-Replayed" in a.headers))
            assert answers[0].status_code != 409
            self._expect(model, key, body, answers[0])
            self._expect(model, key, body, answers[1], may_be_in_flight=True)

        @invariant()
        def postgres_holds_what_the_model_counts(self):
            for model in getattr(self, "tenants", []):
                assert _count(db_conn, "bookings", model.tenant_id) == len(model.bookings)
                assert _count(db_conn, "idempotency_keys", model.tenant_id) == len(model.keys)

    run_state_machine_as_test(IdempotencyMachine, settings=settings(
        max_examples=30, stateful_step_count=15, derandomize=True, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
