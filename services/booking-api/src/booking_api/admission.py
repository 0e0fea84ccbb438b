"""Admission on the accept path: each tenant's bookings are admitted up to its plan's rate.

Every `POST /api/v1/bookings` takes a token from its tenant's bucket in Redis
(`booking_core.model.buckets`: one atomic script, shared by every API process and
replica), sized by the tenant's plan (`booking_core.model.plans`).  Over the limit
the answer is a 429 problem with `Retry-After` and the IETF httpapi draft's
`RateLimit` / `RateLimit-Policy` fields; under it, the same fields tell the client
what it has left.  Reads are not limited: they are cheap (ETag), and a refused
status poll would hurt the tenant's customer, not its import.

- **Replays are free.**  A request whose `Idempotency-Key` turns out to be already
  stored gives its token back; a tenant at its limit still gets its stored answer.
- **Leases keep it cheap.**  A round trip to Redis costs about as much CPU as the
  rest of the limiter many times over (bench/limits.py), so a process that finds a
  tenant far from its limit takes a few tokens at once, at most 1/`BOOKING_API_LIMITER_LEASE_DIVISOR`
  (1/20) of those left and at most `BOOKING_API_LIMITER_LEASE_MAX` (20), and admits that many
  bookings without asking again, for at most `BOOKING_API_LIMITER_LEASE_SECONDS` (0.25 s);
  what a lease did not use goes back with the process's next decision for the
  tenant.  Tokens are taken before they are spent, so no process ever admits more
  than the bucket held: a busy tenant is exact, and near its limit every process
  takes one token at a time.  `BOOKING_API_LIMITER_LEASE_MAX=1` asks Redis for every booking.
- **Refusals are cheap too.**  No token comes back before a refusal's `Retry-After`
  (only time refills a bucket), so a process that was refused for a tenant refuses
  its next bookings itself until then (at most `BOOKING_API_LIMITER_REFUSAL_HOLD_SECONDS`, 1 s,
  so a raised plan is not waited for long): a tenant flooding at its limit costs
  one round trip per process and second, not one per request.
- **Plans are cached** per process for `BOOKING_API_PLAN_CACHE_SECONDS` (5 s), so the plan costs
  no Postgres round trip per request.  A change of plan increments a counter in
  Redis that the bucket script returns with every decision: each process drops its
  cache on the next decision after a change, and the TTL bounds it if Redis missed it.
- **Fail open.**  Bookings must not stop because Redis did: when the store does not
  answer within `BOOKING_API_LIMITER_TIMEOUT_SECONDS` (0.25 s) the request is admitted, counted
  in `booking_api_limiter_fail_open_total`, and for `BOOKING_API_LIMITER_OUTAGE_HOLD_SECONDS`
  (1 s) the next requests are admitted without asking, so a frozen Redis costs one
  timeout per hold, not one per request.  Each process logs one warning when an
  outage begins and one line when it ends, never one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace

import redis
from cachetools import TTLCache
from flask import Flask, Response, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from booking_api.database import get_db
from booking_api.metrics import FAIL_OPEN, LIMITED
from booking_api.problems import ApiError
from booking_core.model import buckets, plans

log = logging.getLogger(__name__)

#: The limit's name in RateLimit / RateLimit-Policy and in the 429 problem.
LIMIT_NAME = "bookings"
_CACHE_SIZE = 4096
_STORE_ERRORS = (redis.RedisError, OSError)


@dataclass(frozen=True)
class Decision:
    """A request's admission: the plan it was measured against and the bucket's verdict (None: unchecked)."""

    tenant_id: str
    plan: plans.Plan
    verdict: buckets.Verdict | None
    #: Tokens of this process's lease still unspent (on top of the bucket's `remaining` when it was taken).
    leased: int = 0

    @property
    def allowed(self) -> bool:
        return self.verdict is None or self.verdict.allowed

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy and RateLimit (IETF httpapi ratelimit-headers draft); none when unchecked."""
        if self.verdict is None:
            return {}
        window = max(1, math.ceil(self.plan.burst / self.plan.rate_per_second))
        left = self.verdict.retry_after if not self.verdict.allowed else self.verdict.reset_after
        return {"RateLimit-Policy": f'"{LIMIT_NAME}";q={self.plan.burst};w={window}',
                "RateLimit": f'"{LIMIT_NAME}";r={self.verdict.remaining + self.leased};t={math.ceil(left)}'}

    def refused(self) -> ApiError:
        """The 429 for a refused request: which limit, the plan's numbers, when to come back."""
        wait = buckets.whole_seconds(self.verdict.retry_after if self.verdict else 1)
        p = self.plan
        return ApiError(
            429, "rate-limited",
            f"The '{LIMIT_NAME}' limit of this tenant's plan '{p.name}' ({p.rate_per_second:g} bookings a second, "
            f"bursts of {p.burst}) is used up; retry after {wait} s.",
            headers={"Retry-After": str(wait), **self.headers()})


@dataclass
class _Lease:
    """Tokens this process took ahead for one tenant: how many are left, until when, under which plan."""

    plan: plans.Plan
    tokens: int
    expires: float
    verdict: buckets.Verdict


class Admission:
    """One API process's limiter: plan cache, leases, buckets, and the fail-open state."""

    def __init__(self, client: redis.Redis, namespace: str, default: plans.Plan, *, cache_seconds: float,
                 hold_seconds: float, enabled: bool = True, lease_max: int = 20, lease_divisor: int = 20,
                 lease_seconds: float = 0.25, refusal_hold_seconds: float = 1.0):
        self.enabled = enabled
        self.default = default
        self.buckets = buckets.TokenBuckets(client, f"{namespace}:limits:tenant")
        self.hold_seconds = hold_seconds
        self.lease_max, self.lease_divisor, self.lease_seconds = max(1, lease_max), max(1, lease_divisor), lease_seconds
        self._plans: TTLCache | None = TTLCache(_CACHE_SIZE, cache_seconds) if cache_seconds > 0 else None
        #: Kept past their end, so that what an ended lease did not use goes back with the next decision.
        self._leases: dict[str, _Lease] = {}
        #: Tenant -> (when Redis refused it, until when this process refuses it alone, the plan, the verdict).
        self._refused: dict[str, tuple[float, float, plans.Plan, buckets.Verdict]] = {}
        self.refusal_hold_seconds = refusal_hold_seconds
        self._generation: str | None = None
        self._lock = threading.Lock()
        self._down_since: float | None = None  # monotonic start of the outage, while one lasts
        self._retry_at = 0.0
        self._unchecked = 0

    def plan(self, tenant_id: str, load) -> plans.Plan:
        """The tenant's plan, from the cache or `load(tenant_id)`."""
        if self._plans is None:
            return load(tenant_id)
        with self._lock:
            found = self._plans.get(tenant_id)
        if found is None:
            found = load(tenant_id)
            with self._lock:
                self._plans[tenant_id] = found
        return found

    def take(self, tenant_id: str, load) -> Decision:
        """Take a token for one booking of `tenant_id` (admitted unchecked when the store is down)."""
        if not self.enabled:
            return Decision(tenant_id, self.default, None)
        plan = self.plan(tenant_id, load)
        now = time.monotonic()
        give_back = 0
        held = self._held(tenant_id, plan, now)
        if held is not None:
            return held
        with self._lock:
            lease = self._leases.get(tenant_id)
            if lease is not None:
                if lease.tokens > 0 and now < lease.expires and lease.plan == plan:
                    lease.tokens -= 1
                    return Decision(tenant_id, plan, lease.verdict, lease.tokens)
                give_back, lease.tokens = lease.tokens, 0
        if self._down_since is not None and now < self._retry_at:
            return self._fail_open(tenant_id, plan, None)
        try:
            verdict = self.buckets.take(tenant_id, plan.rate_per_second, plan.burst, self.lease_max,
                                        divisor=self.lease_divisor, give_back=give_back)
        except _STORE_ERRORS as e:
            return self._fail_open(tenant_id, plan, e)
        self._store_answered(verdict.generation)
        if not verdict.allowed:
            LIMITED.inc()
            if len(self._refused) >= _CACHE_SIZE:
                self._refused.clear()
            self._refused[tenant_id] = (now, now + min(verdict.retry_after, self.refusal_hold_seconds), plan, verdict)
        elif verdict.taken > 1:
            with self._lock:
                if len(self._leases) >= _CACHE_SIZE:  # many tenants: their leases' rests are forfeited
                    self._leases.clear()
                self._leases[tenant_id] = _Lease(plan, verdict.taken - 1, now + self.lease_seconds, verdict)
        return Decision(tenant_id, plan, verdict, max(verdict.taken - 1, 0))

    def holds_any(self) -> bool:
        """Whether this process may hold a tenant refused: false until Redis refuses one, and again once each
        refused tenant's next booking after its hold was asked of Redis; while false, nothing to look up."""
        return bool(self._refused)

    def held(self, tenant_id: str) -> Decision | None:
        """The refusal of a tenant this process holds refused, from memory alone; None when it must be asked.

        None unless Redis refused the tenant within the hold and the tenant's plan
        is still the cached one it was refused under: no Postgres, no Redis, no
        waiting, so it can answer before any of a request's other work.
        """
        if not self.enabled or self._plans is None or tenant_id not in self._refused:
            return None
        with self._lock:
            plan = self._plans.get(tenant_id)
        return None if plan is None else self._held(tenant_id, plan, time.monotonic())

    def _held(self, tenant_id: str, plan: plans.Plan, now: float) -> Decision | None:
        refused = self._refused.get(tenant_id)
        if refused is None:
            return None
        at, until, refused_plan, verdict = refused
        if now < until and refused_plan == plan:
            LIMITED.inc()
            return Decision(tenant_id, plan, replace(verdict, retry_after=verdict.retry_after - (now - at)))
        self._refused.pop(tenant_id, None)
        return None

    def refund(self, decision: Decision) -> None:
        """Give back the token of a request that cost nothing (an idempotent replay); best effort."""
        if decision.verdict is None or not decision.verdict.allowed:
            return
        with self._lock:
            lease = self._leases.get(decision.tenant_id)
            if lease is not None and lease.plan == decision.plan:
                lease.tokens += 1  # back into this process's lease: no round trip
                return
        try:
            self.buckets.refund(decision.tenant_id, decision.plan.rate_per_second, decision.plan.burst)
        except _STORE_ERRORS:
            pass  # the outage shows on the next take; a lost refund costs the tenant one token

    def forget_plans(self) -> None:
        """Drop every cached plan (this process changed one, or another did)."""
        if self._plans is not None:
            with self._lock:
                self._plans.clear()

    def _store_answered(self, generation: str) -> None:
        if generation != self._generation:
            if self._generation is not None:
                self.forget_plans()
            self._generation = generation
        if self._down_since is not None:
            with self._lock:
                since, unchecked, self._down_since, self._unchecked = self._down_since, self._unchecked, None, 0
            if since is not None:
                log.warning("rate limiter store reachable again after %.1f s; %d request(s) were admitted unchecked",
                            time.monotonic() - since, unchecked)

    def _fail_open(self, tenant_id: str, plan: plans.Plan, error: Exception | None) -> Decision:
        FAIL_OPEN.inc()
        now = time.monotonic()
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = now
            if error is not None:
                self._retry_at = now + self.hold_seconds
            self._unchecked += 1
        if first:
            log.warning("rate limiter store unreachable (%s), admitting bookings without limits until it answers",
                        type(error).__name__ if error else "unknown")
        return Decision(tenant_id, plan, None)


def _load_plan(tenant_id: str) -> plans.Plan:
    return plans.plan_of(get_db(), tenant_id, current_app.extensions["booking_admission"].default)


def admission() -> Admission:
    return current_app.extensions["booking_admission"]


def take(tenant_id: str) -> Decision:
    """This request's decision for a booking of `tenant_id`."""
    return admission().take(tenant_id, _load_plan)


def enforce(decision: Decision) -> None:
    """Raise the 429 when the decision refused the request."""
    if not decision.allowed:
        raise decision.refused()


def with_headers(resp: Response, decision: Decision) -> Response:
    for k, v in decision.headers().items():
        resp.headers[k] = v
    return resp


def init_app(app: Flask) -> None:
    api = app.config["API"]
    s = api.core
    timeout = api.limiter_timeout_seconds
    # No retries: a decision that cannot be had within one timeout is admitted (fail open), not waited for.
    client = redis.Redis.from_url(s.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                  retry=Retry(NoBackoff(), 0))
    app.extensions["booking_admission"] = Admission(
        client, s.redis_namespace, plans.default_plan(s), cache_seconds=api.plan_cache_seconds,
        hold_seconds=api.limiter_outage_hold_seconds, enabled=s.limits_enabled,
        lease_max=api.limiter_lease_max, lease_divisor=api.limiter_lease_divisor,
        lease_seconds=api.limiter_lease_seconds, refusal_hold_seconds=api.limiter_refusal_hold_seconds)
