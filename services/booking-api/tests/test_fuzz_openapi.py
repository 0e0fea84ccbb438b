"""Fuzzing: schemathesis sends every operation of the OpenAPI document generated and mutated input.

The app runs in-process (schemathesis's WSGI transport) on the session's real
Postgres and Redis, once with a tenant's (non-admin) token and once with an
admin token. Every response must be no 5xx and must conform to the document:
a documented status code, its content type, headers and schema; input the
document calls invalid must be refused, input it calls valid accepted, and
the same request without the token must be 401. A second test follows the
document's links (a created booking, then its booking and its invoice) as a
state machine, with the same checks. The run is bounded (a few examples per
operation) and derandomized, so CI sends the same inputs every time.

A few rules are beyond what a JSON Schema of one request can say. A valid
booking is made coherent first (check_out after check_in, an amount's
decimals allowed by its currency) so that the accept path is fuzzed too. For
the others (`task` only with `state`, a cursor the API issued, an
Idempotency-Key already used with another body, a dead-letter time range whose
`dead_before` is not after its `dead_since`, a tenant filter by a name no tenant has) `_refusal` names the 422 the
request must get instead of "valid input is accepted".
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from booking_api import idempotency
from booking_api.contract import MAX_NIGHTS
from booking_api.cursors import decode_cursor
from booking_api.openapi_doc import document
from booking_api.problems import ApiError
from booking_core.model import tenants
from booking_core.model.currencies import minor_unit
from booking_core.tasks import deadletters
from booking_core.web.problems import PROBLEM_TYPE

#: Examples per operation in the fuzzing phase (the examples and coverage phases add their own few).
MAX_EXAMPLES = 8


class _TestsApp:
    """A WSGI app that forwards to the running test's app.

    Schemathesis sends a case, and its own probes (the same request without
    the token), to the app its schema is bound to when operations are
    collected; the real app only exists once a test's fixtures (this
    session's Postgres and Redis) do.
    """

    current = None

    def __call__(self, environ, start_response):
        return self.current(environ, start_response)


_forward = _TestsApp()
#: The document the app serves at /api/v1/openapi.json (test_openapi pins that they are equal); one test
#: per operation and caller. Unknown query parameters are ignored by design (as HTTP caches expect), so
#: they are not generated as "invalid input".
schema = schemathesis.openapi.from_dict(
    document(), config=schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}}))
schema.app = _forward


@pytest.fixture
def bound_app(app, db_conn):
    """Requests of this test go to its app; afterwards the queues the fuzzer paused run again and the bulk
    jobs it started (no runner here) are gone, so that a later test's runner does not run them on its letters."""
    _forward.current = app
    yield app
    _forward.current = None
    db_conn.execute("DELETE FROM queue_pauses")
    db_conn.execute("DELETE FROM ops_bulk_jobs WHERE state IN ('queued', 'running')")


@pytest.fixture(params=["tenant", "admin"])
def new_caller(request, db_conn):
    """Factory: the Authorization header of a fresh tenant's token, a client token, then an admin token."""

    def make() -> dict:
        tenant = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
        token = tenants.create_token(db_conn, tenant["id"], admin=request.param == "admin")["token"]
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def caller(new_caller) -> dict:
    return new_caller()


@pytest.fixture
def used_keys() -> dict[str, bytes]:
    """Idempotency-Keys this test's tenant has had accepted, with the body fingerprint each holds."""
    return {}


def _idempotency_key(case) -> str | None:
    """The key a case sends, as the API reads it; None when absent or malformed."""
    header = (case.headers or {}).get("Idempotency-Key")
    try:
        return idempotency.parse_key(header) if isinstance(header, str) else None
    except ApiError:
        return None


def _make_coherent(body: dict) -> None:
    """Fit a schema-valid booking to the rules between its fields, which a JSON Schema checks one by one.

    Generated dates are years apart in any order, and amounts have two decimals whatever the
    currency: nearly every generated booking would be refused, and the accept path never fuzzed. So
    check_out becomes 1 to MAX_NIGHTS nights after check_in, and the amount keeps only the decimals
    its currency allows (and stays above zero).
    """
    try:
        check_in = date.fromisoformat(body["check_in"])
        check_out = date.fromisoformat(body["check_out"])
        amount = Decimal(body["amount"])
        decimals = minor_unit(body["currency"])
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return
    nights = 1 + abs((check_out - check_in).days) % MAX_NIGHTS
    check_in = min(check_in, date.max - timedelta(days=nights))
    body["check_in"], body["check_out"] = check_in.isoformat(), (check_in + timedelta(days=nights)).isoformat()
    if decimals is not None and -amount.as_tuple().exponent > decimals:
        cut = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
        body["amount"] = str(cut if cut > 0 else Decimal(1).scaleb(-decimals))


def _issued(cursor: object) -> bool:
    """Whether a cursor is absent or one this API could have returned (the document says only its alphabet)."""
    if not cursor:
        return True
    try:
        decode_cursor(str(cursor))
    except ValueError:
        return False
    return True


def _empty_range(fields: object) -> bool:
    """Both ends of a dead-letter time filter given as times, `dead_before` not after `dead_since`."""
    if not isinstance(fields, dict):
        return False
    try:
        return deadletters.empty_range(datetime.fromisoformat(fields["dead_since"]),
                                       datetime.fromisoformat(fields["dead_before"]))
    except (KeyError, TypeError, ValueError):
        return False


def _refused_filter(fields: object) -> bool:
    """A dead-letter filter the rules beyond the schema refuse: an empty time range, or a tenant by name.

    A generated tenant name never names a tenant of the test database (theirs are `t-` and 12 hex
    digits), so the filter is refused naming `tenant`; with `tenant_id` too, it is refused as well.
    """
    return _empty_range(fields) or isinstance(fields, dict) and fields.get("tenant") is not None


def _refusal(case, used_keys: dict[str, bytes]) -> str | None:
    """The problem type of the 422 the API answers this request for a rule the document cannot state."""
    if case.method.upper() == "GET" and case.path == "/api/v1/ops/dead-letters" \
            and (_refused_filter(case.query) or not _issued((case.query or {}).get("cursor"))):
        return "invalid-query"  # the list pages with the bookings' cursors: only one it issued is taken
    if case.method.upper() == "POST" and case.path.startswith("/api/v1/ops/dead-letters/") \
            and _refused_filter(case.body):
        return "invalid-filter"
    if case.method.upper() == "GET" and case.path == "/api/v1/bookings":
        query = case.query or {}
        return "invalid-query" if "task" in query and "state" not in query or not _issued(query.get("cursor")) else None
    if case.method.upper() != "POST" or case.path != "/api/v1/bookings" or not isinstance(case.body, dict):
        return None
    key = _idempotency_key(case)
    if key in used_keys and used_keys[key] != idempotency.request_hash(case.body):
        return "idempotency-key-reused"
    return None


def _is_positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def _prepare(case, used_keys: dict[str, bytes]) -> str | None:
    """Make a valid booking coherent; return the 422 the request must get for a rule the document cannot state."""
    if _is_positive(case) and case.path == "/api/v1/bookings" and isinstance(case.body, dict):
        _make_coherent(case.body)
    return _refusal(case, used_keys)


def _check(case, response, caller: dict, used_keys: dict[str, bytes], refusal: str | None) -> None:
    """No 5xx and what the document promises (or the expected refusal); remember a key now used."""
    case.validate_response(response, headers=caller,
                           excluded_checks=[positive_data_acceptance] if refusal else None)
    # A tenant's (non-admin) token gets the ops endpoints' 403 before any of its input is looked at.
    forbidden_first = case.path.startswith("/api/v1/ops/") and response.status_code == 403
    if refusal and _is_positive(case) and not forbidden_first:
        assert (response.status_code, response.json()["type"]) == (422, PROBLEM_TYPE + refusal)
    key = _idempotency_key(case)
    if key and response.status_code == 201 and "Idempotent-Replayed" not in response.headers:
        used_keys[key] = idempotency.request_hash(case.body)


#: Hypothesis settings of both tests: bounded, the same inputs on every run, no example database.
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_response_conforms_to_the_document(case, bound_app, caller, used_keys):
    # Given a generated request (a valid booking made coherent), and the 422 it must get if it breaks
    # a rule the document cannot state
    refusal = _prepare(case, used_keys)
    # When the app answers it with this caller's token
    response = case.call(headers=caller)
    # Then the answer is no 5xx and is what the document promises
    _check(case, response, caller, used_keys, refusal)


def test_sequences_that_follow_the_documents_links_conform(bound_app, new_caller):
    # Given the document's links (a created booking -> its booking, its invoice) as a state machine
    class Links(schema.as_state_machine()):
        def setup(self):
            # Each scenario starts from an empty tenant, so the responses it chains from (a list, a
            # created booking) do not depend on the scenarios before it: hypothesis can replay it.
            self.caller, self.used_keys = new_caller(), {}

        def call(self, case, **kwargs):
            self.refusal = _prepare(case, self.used_keys)
            return case.call(headers=self.caller)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            _check(case, response, self.caller, self.used_keys, self.refusal)

    # When schemathesis chains calls along them, then every answer is checked as above
    Links.run(settings=settings(FUZZ_SETTINGS, stateful_step_count=6))
