"""The 429 of a tenant this process holds refused, answered before Flask sees the request.

Why: once Redis has refused a tenant, this process refuses its next bookings from
memory until a token can be back (`admission.Admission.held`).  A client flooding
at its limit then sends nearly only such requests, and each went through all of
Flask (request context, URL matching, before/after hooks, an exception and its
handler, a werkzeug Response), about half of what a refusal cost while the
other tenants' requests waited for the same two cores (bench/README.md,
"A tenant held at its limit").  Here a refusal is a few dictionary lookups and
one JSON dump.

Only the exact case is answered here; everything else goes to Flask unchanged:

- `POST /api/v1/bookings` with no `Idempotency-Key`: a keyed request may be a
  replay, which is answered from Postgres whatever the bucket holds;
- a bearer token whose identity this process has cached (`auth.IdentityCache`),
  so an unknown or revoked token still gets its 401 from the full path;
- a tenant `Admission.held` refuses: Redis refused it within the hold, under the
  plan still cached.

The body is not read, nor its content type checked: the tenant gets the 429 its
request would get from the view (which also refuses before parsing), and a
client that is told to wait learns nothing it could act on sooner from a 400.
The answer is the view's, byte for byte but for the seconds left (the problem,
`Retry-After`, `RateLimit`, `RateLimit-Policy`, the platform's security
headers), and it is counted in the request metrics under its route.  It opens no
OpenTelemetry span: the refusal Redis decided went through Flask and is traced;
one span per repeat would record nothing new and, in a flood, fill the span
exporter's queue that the other tenants' traces share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from booking_api.admission import Admission
from booking_api.auth import IdentityCache
from booking_api.metrics import LATENCY, REQUESTS
from booking_core.web.headers import BASE_SECURITY_HEADERS
from booking_core.web.problems import MEDIA_TYPE, problem_json

#: The one route answered here, as Flask's URL map names it in the request metrics.
ROUTE = "/api/v1/bookings"
_STATUS_LINE = "429 Too Many Requests"


class HeldRefusals:
    """Answers the held tenants' bookings for one app: its identity cache and its admission."""

    def __init__(self, identities: IdentityCache, admission: Admission):
        self.identities = identities
        self.admission = admission
        self._counted = REQUESTS.labels(ROUTE, "POST", "429")
        self._timed = LATENCY.labels(ROUTE, "POST")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes] | None:
        """The 429's body after `start_response`, or None (nothing called) to let the app answer."""
        if (not self.admission.holds_any() or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("PATH_INFO") != ROUTE or "HTTP_IDEMPOTENCY_KEY" in environ):
            return None  # while no tenant is held (the usual case), the token is not even hashed
        started = time.perf_counter()
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        identity = self.identities.peek(token)
        if identity is None:
            return None
        decision = self.admission.held(identity["tenant_id"])
        if decision is None:
            return None
        refusal = decision.refused()
        body = problem_json(refusal.status, refusal.code, refusal.detail).encode()
        start_response(_STATUS_LINE, [("Content-Type", MEDIA_TYPE), ("Content-Length", str(len(body))),
                                      *refusal.headers.items(), *BASE_SECURITY_HEADERS.items()])
        self._timed.observe(time.perf_counter() - started)
        self._counted.inc()
        return [body]
