"""The settings every process of the platform shares, read once from the environment at start.

Every process (API, relay, workers, events, bookingctl) builds one `Settings`
in its entry point and passes it down; no other module reads os.environ
(tests/test_environ_reads.py checks).  Each field names its variable, type and
bounds once (`booking_settings.fields.env`), so a mistyped or out-of-range value
stops the process at boot naming the variable (`booking_settings.boot`), never
on its first request.  Defaults suit a laptop; production overrides them with
the same variables through the Helm chart.  A process's own settings (the
API's, the events service's) are classes of their own in that service.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from booking_core.messaging.contracts import TASK_QUEUES
from booking_settings.fields import SettingsError, Var, check, env, load, millis_as_seconds, read


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one actor retries (Dramatiq Retries options)."""

    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int


#: Production defaults: minutes of patience for SMTP outages, fewer for pure work.
DEFAULT_RETRY = {
    "email": RetryPolicy(max_retries=12, min_backoff_ms=15_000, max_backoff_ms=900_000),
    "invoice": RetryPolicy(max_retries=8, min_backoff_ms=10_000, max_backoff_ms=600_000),
    "audit": RetryPolicy(max_retries=20, min_backoff_ms=5_000, max_backoff_ms=600_000),
}


def _retry_vars(queue: str) -> tuple[Var, Var, Var]:
    """The variables of `queue`'s retry policy, in RetryPolicy's field order."""
    prefix = f"BOOKING_RETRY_{queue.upper()}_"
    return (Var(prefix + "MAX_RETRIES", low=0, high=1_000), Var(prefix + "MIN_BACKOFF_MS", low=1),
            Var(prefix + "MAX_BACKOFF_MS", low=1))


def _retry(environ: Mapping[str, str]) -> dict[str, RetryPolicy]:
    """Each task queue's policy: its variables over DEFAULT_RETRY."""
    policies = {}
    for queue in TASK_QUEUES:
        base = DEFAULT_RETRY[queue]
        tries, least, most = _retry_vars(queue)
        policy = RetryPolicy(max_retries=read(tries, "int", environ, base.max_retries),
                             min_backoff_ms=read(least, "int", environ, base.min_backoff_ms),
                             max_backoff_ms=read(most, "int", environ, base.max_backoff_ms))
        if policy.min_backoff_ms > policy.max_backoff_ms:
            raise SettingsError(least.name, f"({policy.min_backoff_ms}) must not exceed {most.name} "
                                            f"({policy.max_backoff_ms})")
        policies[queue] = policy
    return policies


def _trace_template(raw: str) -> str:
    """BOOKING_TRACE_URL_TEMPLATE: an http(s) URL with one `{trace_id}` and no other braces."""
    rest = raw.replace("{trace_id}", "")
    if not raw.startswith(("https://", "http://")) or raw.count("{trace_id}") != 1 or "{" in rest or "}" in rest:
        raise ValueError("must be an http(s) URL with one {trace_id}")
    return raw


def _keys(raw: str) -> tuple[str, ...]:
    """BOOKING_WEBHOOKS_KEY: Fernet keys, comma-separated (the first encrypts, all decrypt).

    Checked in `Settings.__post_init__`, not here: a refused value would be echoed in
    the boot message, and a list with one mistyped key may hold good ones.
    """
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def _check_keys(keys: tuple[str, ...]) -> None:
    """Refuse a key that is not a Fernet key, naming its position but never its value."""
    from cryptography.fernet import Fernet

    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SettingsError("BOOKING_WEBHOOKS_KEY", f"must be Fernet keys, comma-separated: key {i} is not one"
                                " (32 url-safe base64-encoded bytes; make one with `python -c 'from"
                                " cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
                                ) from None


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """BOOKING_WEBHOOKS_ALLOWED_NETWORKS: comma-separated CIDRs, each named when it is not one."""
    out = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"must be comma-separated CIDR networks ({part!r} is not one)") from None
    return tuple(out)


def _base_url(raw: str) -> str:
    """A URL prefix, kept without its trailing slash (paths are appended with one)."""
    return raw.rstrip("/")


#: The relay's orderings (BOOKING_RELAY_ORDER).
RELAY_ORDERS = ("fair", "fifo")


@dataclass(frozen=True)
class Settings:
    """Connection URLs and tunables shared by every process."""

    database_url: str = env("DATABASE_URL", required=True)
    redis_url: str = env("REDIS_URL", required=True)
    smtp_url: str = env("SMTP_URL", "smtp://127.0.0.1:25")
    mail_from: str = env("BOOKING_MAIL_FROM", "Bookings <bookings@localhost>")
    redis_namespace: str = env("BOOKING_REDIS_NAMESPACE", "dramatiq")
    #: Dramatiq's Redis broker requeues a dead worker's messages after this long.
    heartbeat_timeout_ms: int = env("BOOKING_HEARTBEAT_TIMEOUT_MS", 60_000, low=100)
    #: Out of a million broker commands, how many also run that requeue check.
    maintenance_chance: int = env("BOOKING_MAINTENANCE_CHANCE", 1_000, low=0, high=1_000_000)
    relay_sweep_seconds: float = env("BOOKING_RELAY_SWEEP_MS", 2.0, parse=millis_as_seconds, above=0)
    relay_batch_size: int = env("BOOKING_RELAY_BATCH_SIZE", 200, low=1, high=100_000)
    #: How the relay orders the outbox into the queues: "fair" (by tenant, weighted by plan,
    #: with a bounded publish-ahead) or "fifo" (everything at once, oldest first: the old way).
    relay_order: str = env("BOOKING_RELAY_ORDER", "fair", choices=RELAY_ORDERS)
    #: Fair order: the fewest ready messages the relay keeps in each queue while the outbox holds
    #: more; it keeps max(this, the queue's in-flight count), about the workers' prefetch.
    relay_ahead: int = env("BOOKING_RELAY_AHEAD", 16, low=1, high=100_000)
    idempotency_ttl_seconds: int = env("BOOKING_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, low=1)
    db_pool_max: int = env("BOOKING_DB_POOL_MAX", 10, low=1, high=1_000)
    #: How long a worker waits for a pooled Postgres connection before the attempt fails
    #: (and, as a database outage, is retried without using its retry budget).
    db_acquire_timeout_ms: int = env("BOOKING_DB_ACQUIRE_TIMEOUT_MS", 5_000, low=1)
    #: The nice of this process's Postgres backends when Postgres runs on this host (the local
    #: runner sets it for the async side; booking_core.db.backend_nice); 0 leaves them alone.
    db_backend_nice: int = env("BOOKING_DB_BACKEND_NICE", 0, low=0, high=19)
    #: Key of the progress pages' capability tokens (model/status_links.py); rotate it to void every link.
    status_secret: str = env("BOOKING_STATUS_SECRET", "")
    #: Where the booking-events service (streams, progress pages) is reached, prefixed to
    #: `links.events` and `links.status_page`; empty behind the chart's Ingress, which routes
    #: those paths on the API's own host.
    events_base_url: str = env("BOOKING_EVENTS_BASE_URL", "", parse=_base_url)
    status_ttl_seconds: int = env("BOOKING_STATUS_TTL_SECONDS", 30 * 24 * 3600, low=1)
    #: Requeued or discarded dead-letter records are purged this many days after; open ones never.
    dead_letter_retention_days: int = env("BOOKING_DEAD_LETTER_RETENTION_DAYS", 30, low=0)
    #: Booking events older than this many days keep only each task's final state
    #: (the relay's compaction.py); 0 keeps every event for ever.
    event_history_days: int = env("BOOKING_EVENT_HISTORY_DAYS", 30, low=0)
    #: The reconciler re-publishes an unfinished task idle this long with no message anywhere;
    #: 0 means the default, max(2 x heartbeat timeout, 120 s) (it must exceed the heartbeat timeout).
    reconcile_after_ms: int = env("BOOKING_RECONCILE_AFTER_MS", 0, low=0)
    #: A running bulk dead-letter job whose runner has not reported for this long is taken over by
    #: another runner (booking_core.ops.bulkjobs): its runner's process died.
    bulk_job_stale_ms: int = env("BOOKING_BULK_JOB_STALE_MS", 60_000, low=1_000)
    #: Ops console sessions end this long after sign-in, whatever happens (absolute limit).
    ops_session_max_seconds: int = env("BOOKING_OPS_SESSION_MAX_SECONDS", 8 * 3600, low=1)
    #: ... and this long after the operator's last request (idle limit).
    ops_session_idle_seconds: int = env("BOOKING_OPS_SESSION_IDLE_SECONDS", 8 * 3600, low=1)
    #: Believe the Ingress's X-Forwarded-Proto when deciding if a request came over HTTPS
    #: (the session cookie is then `Secure`); only behind a proxy that sets it.
    trust_forwarded_proto: bool = env("BOOKING_TRUST_FORWARDED_PROTO", False)
    #: Link of a trace id in the ops console, e.g. "https://jaeger.example/trace/{trace_id}";
    #: empty shows the id as plain text.
    trace_url_template: str = env("BOOKING_TRACE_URL_TEMPLATE", "", parse=_trace_template)
    #: How often each worker reads the paused queues (queues/pauses.py) from Postgres: one small query.
    pause_poll_ms: int = env("BOOKING_PAUSE_POLL_MS", 1_000, low=10)
    #: The pod name this worker's presence records (booking_scaling.podload); empty: the host name,
    #: which in a Deployment's pod is the pod's name.  The local runner, whose processes share one
    #: host, gives each its own name here so that a scale-down can stop the idlest one.
    worker_host: str = env("BOOKING_WORKER_HOST", "")
    #: The default plan (booking_core.model.plans): a tenant without a plan of its own is admitted
    #: at this sustained rate of bookings per second with bursts of this many, and weighs this much
    #: in the fair share of the async work.  The bounds are booking_core.model.plans.check's.
    plan_default_rate: float = env("BOOKING_PLAN_DEFAULT_RATE", 50.0, above=0, high=100_000)
    plan_default_burst: int = env("BOOKING_PLAN_DEFAULT_BURST", 500, low=1, high=1_000_000)
    plan_default_weight: int = env("BOOKING_PLAN_DEFAULT_WEIGHT", 1, low=1, high=1_000)
    #: Admit each tenant's bookings up to its plan's rate (the API's limiter); false admits all.
    limits_enabled: bool = env("BOOKING_LIMITS_ENABLED", True)
    #: Fernet keys that seal the webhook signing secrets at rest; none: webhooks are unavailable.
    webhooks_keys: tuple[str, ...] = env("BOOKING_WEBHOOKS_KEY", (), parse=_keys)
    #: Networks webhooks may reach although the SSRF guard refuses them (loopback, private, ...).
    webhooks_allowed_networks: tuple = env("BOOKING_WEBHOOKS_ALLOWED_NETWORKS", (), parse=_networks)
    webhooks_connect_timeout: float = env("BOOKING_WEBHOOKS_CONNECT_TIMEOUT_SECONDS", 5.0, above=0, high=300)
    #: A whole attempt (connect, send, read the answer) ends after this many seconds.
    webhooks_timeout: float = env("BOOKING_WEBHOOKS_TIMEOUT_SECONDS", 15.0, above=0, high=300)
    #: Backoff of failed deliveries (booking_core.webhooks.schedule): about a day with the defaults.
    webhooks_retry_first_ms: int = env("BOOKING_WEBHOOKS_RETRY_FIRST_MS", 10_000, low=1)
    webhooks_retry_cap_ms: int = env("BOOKING_WEBHOOKS_RETRY_CAP_MS", 6 * 3600 * 1000, low=1)
    webhooks_max_attempts: int = env("BOOKING_WEBHOOKS_MAX_ATTEMPTS", 11, low=1, high=100)
    #: An endpoint failing continuously this long is disabled.
    webhooks_disable_after_seconds: int = env("BOOKING_WEBHOOKS_DISABLE_AFTER_SECONDS", 3 * 24 * 3600, low=60)
    #: After a secret rotation the previous secret still signs for this long.
    webhooks_rotation_overlap_seconds: int = env("BOOKING_WEBHOOKS_ROTATION_OVERLAP_SECONDS", 24 * 3600, low=0,
                                                 high=30 * 24 * 3600)
    #: How many deliveries to one endpoint one worker process sends at once.
    webhooks_endpoint_concurrency: int = env("BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY", 4, low=1, high=1_000)
    retry: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(DEFAULT_RETRY))

    def __post_init__(self) -> None:
        check(self)
        if self.reconcile_after_ms and self.reconcile_after_ms <= self.heartbeat_timeout_ms:
            # Below it, a message a live worker still holds would look lost.
            raise SettingsError("BOOKING_RECONCILE_AFTER_MS", f"({self.reconcile_after_ms}) must exceed "
                                f"BOOKING_HEARTBEAT_TIMEOUT_MS ({self.heartbeat_timeout_ms})")
        _check_keys(self.webhooks_keys)
        if self.webhooks_retry_first_ms > self.webhooks_retry_cap_ms:
            raise SettingsError("BOOKING_WEBHOOKS_RETRY_FIRST_MS", f"({self.webhooks_retry_first_ms}) must not exceed "
                                f"BOOKING_WEBHOOKS_RETRY_CAP_MS ({self.webhooks_retry_cap_ms})")

    @property
    def reconcile_after_seconds(self) -> float:
        """The reconciler's threshold: configured, else max(2 x heartbeat timeout, 120 s)."""
        ms = self.reconcile_after_ms or max(2 * self.heartbeat_timeout_ms, 120_000)
        return ms / 1000

    @classmethod
    def extra_variables(cls) -> list[str]:
        """The retry variables, read per queue rather than per field."""
        return [var.name for queue in TASK_QUEUES for var in _retry_vars(queue)]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `environ`; the process environment only when an entry point calls it bare."""
        environ = os.environ if environ is None else environ
        return load(cls, environ, retry=_retry(environ))


def require_webhooks_key(settings: Settings) -> Settings:
    """`settings`, if they hold a sealing key: the webhook worker cannot read a signing secret without one."""
    if not settings.webhooks_keys:
        raise SettingsError("BOOKING_WEBHOOKS_KEY", "must be set: the webhook worker cannot read any signing secret")
    return settings


@dataclass(frozen=True)
class MetricsAddress:
    """Where a process that is not a Dramatiq worker (the API's gunicorn master, the relay) serves /metrics."""

    host: str = env("BOOKING_METRICS_HOST", "0.0.0.0")  # noqa: S104 - the pod's own metrics port
    #: 0: a free port the kernel picks (tests).
    port: int = env("BOOKING_METRICS_PORT", 9100, low=0, high=65_535)

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MetricsAddress:
        return load(cls, environ)
