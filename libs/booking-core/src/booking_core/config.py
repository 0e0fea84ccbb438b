"""Settings read once from the environment, so no other module reads os.environ.

Every process of the platform (API, relay, workers, bookingctl) builds one
`Settings` at start-up.  Defaults suit a laptop; production overrides them with
the same variables through the Helm chart.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from booking_core.messaging.contracts import QUEUES


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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    """Read an integer variable, naming the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    """Read a number variable, naming the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """A number above 0, naming the variable when it is not."""
    value = _float(env, name, default)
    if value <= 0:
        raise ValueError(f"{name} must be above 0, got {value:g}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    """A yes/no variable (true/false, 1/0, yes/no), naming the variable when it is neither."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _trace_template(raw: str) -> str:
    """BOOKING_TRACE_URL_TEMPLATE: an http(s) URL with one `{trace_id}`, or empty."""
    if raw and (not raw.startswith(("https://", "http://")) or raw.count("{trace_id}") != 1
                or raw.replace("{trace_id}", "").count("{") or raw.replace("{trace_id}", "").count("}")):
        raise ValueError("BOOKING_TRACE_URL_TEMPLATE must be an http(s) URL with one {trace_id}, "
                         f"got {raw!r}")
    return raw


def _fernet_keys(raw: str) -> tuple[str, ...]:
    """BOOKING_WEBHOOKS_KEY: Fernet keys, comma-separated (the first encrypts, all decrypt)."""
    from cryptography.fernet import Fernet

    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(f"BOOKING_WEBHOOKS_KEY: key {i} is not a Fernet key (32 url-safe base64-encoded"
                             " bytes; make one with `python -c 'from cryptography.fernet import Fernet;"
                             " print(Fernet.generate_key().decode())'`)") from None
    return keys


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """BOOKING_WEBHOOKS_ALLOWED_NETWORKS: comma-separated CIDRs, each named when it is not one."""
    out = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"BOOKING_WEBHOOKS_ALLOWED_NETWORKS: {part!r} is not a CIDR network") from None
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Connection URLs and tunables shared by every process."""

    database_url: str
    redis_url: str
    smtp_url: str = "smtp://127.0.0.1:25"
    mail_from: str = "Bookings <bookings@localhost>"
    redis_namespace: str = "dramatiq"
    #: Dramatiq's Redis broker requeues a dead worker's messages after this long.
    heartbeat_timeout_ms: int = 60_000
    #: Out of a million broker commands, how many also run that requeue check.
    maintenance_chance: int = 1_000
    relay_sweep_seconds: float = 2.0
    relay_batch_size: int = 200
    idempotency_ttl_seconds: int = 24 * 3600
    db_pool_max: int = 10
    #: How long a worker waits for a pooled Postgres connection before the attempt fails
    #: (and, as a database outage, is retried without using its retry budget).
    db_acquire_timeout_ms: int = 5_000
    #: Key of the progress pages' capability tokens (model/status_links.py); rotate it to void every link.
    status_secret: str = ""
    #: Where the booking-events service (streams, progress pages) is reached, prefixed to
    #: `links.events` and `links.status_page`; empty behind the chart's Ingress, which routes
    #: those paths on the API's own host.
    events_base_url: str = ""
    status_ttl_seconds: int = 30 * 24 * 3600
    #: Requeued or discarded dead-letter records are purged this many days after; open ones never.
    dead_letter_retention_days: int = 30
    #: Booking events older than this many days keep only each task's final state
    #: (the relay's compaction.py); 0 keeps every event for ever.
    event_history_days: int = 30
    #: The reconciler re-publishes an unfinished task idle this long with no message anywhere;
    #: 0 means the default, max(2 x heartbeat timeout, 120 s) (it must exceed the heartbeat timeout).
    reconcile_after_ms: int = 0
    #: Ops console sessions end this long after sign-in, whatever happens (absolute limit).
    ops_session_max_seconds: int = 8 * 3600
    #: ... and this long after the operator's last request (idle limit).
    ops_session_idle_seconds: int = 8 * 3600
    #: Believe the Ingress's X-Forwarded-Proto when deciding if a request came over HTTPS
    #: (the session cookie is then `Secure`); only behind a proxy that sets it.
    trust_forwarded_proto: bool = False
    #: Link of a trace id in the ops console, e.g. "https://jaeger.example/trace/{trace_id}";
    #: empty shows the id as plain text.
    trace_url_template: str = ""
    #: How often each worker reads the paused queues (queues/pauses.py) from Postgres: one small query.
    pause_poll_ms: int = 1_000
    #: The default plan (booking_core.model.plans): a tenant without a plan of its own is admitted
    #: at this sustained rate of bookings per second with bursts of this many, and weighs this much
    #: in the fair share of the async work.
    plan_default_rate: float = 50.0
    plan_default_burst: int = 500
    plan_default_weight: int = 1
    #: Fernet keys that seal the webhook signing secrets at rest (BOOKING_WEBHOOKS_KEY); none: no webhooks.
    webhooks_keys: tuple[str, ...] = ()
    #: Networks webhooks may reach although the SSRF guard refuses them (loopback, private, ...).
    webhooks_allowed_networks: tuple = ()
    webhooks_connect_timeout: float = 5.0
    #: A whole attempt (connect, send, read the answer) ends after this many seconds.
    webhooks_timeout: float = 15.0
    #: Backoff of failed deliveries (booking_core.webhooks.schedule): about a day with the defaults.
    webhooks_retry_first_ms: int = 10_000
    webhooks_retry_cap_ms: int = 6 * 3600 * 1000
    webhooks_max_attempts: int = 11
    #: An endpoint failing continuously this long is disabled.
    webhooks_disable_after_seconds: int = 3 * 24 * 3600
    #: After a secret rotation the previous secret still signs for this long.
    webhooks_rotation_overlap_seconds: int = 24 * 3600
    #: How many deliveries to one endpoint one worker process sends at once.
    webhooks_endpoint_concurrency: int = 4
    retry: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(DEFAULT_RETRY))

    @property
    def reconcile_after_seconds(self) -> float:
        """The reconciler's threshold: configured, else max(2 x heartbeat timeout, 120 s)."""
        ms = self.reconcile_after_ms or max(2 * self.heartbeat_timeout_ms, 120_000)
        return ms / 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        missing = [n for n in ("DATABASE_URL", "REDIS_URL") if not env.get(n)]
        if missing:
            raise ValueError(f"missing required environment variable(s): {', '.join(missing)}")
        retry = {}
        for queue in QUEUES:
            base = DEFAULT_RETRY[queue]
            prefix = f"BOOKING_RETRY_{queue.upper()}_"
            retry[queue] = RetryPolicy(
                max_retries=_int(env, prefix + "MAX_RETRIES", base.max_retries),
                min_backoff_ms=_int(env, prefix + "MIN_BACKOFF_MS", base.min_backoff_ms),
                max_backoff_ms=_int(env, prefix + "MAX_BACKOFF_MS", base.max_backoff_ms),
            )
        heartbeat = _int(env, "BOOKING_HEARTBEAT_TIMEOUT_MS", 60_000)
        reconcile = _int(env, "BOOKING_RECONCILE_AFTER_MS", 0)
        if reconcile and reconcile <= heartbeat:
            # Below it, a message a live worker still holds would look lost.
            raise ValueError(f"BOOKING_RECONCILE_AFTER_MS ({reconcile}) must exceed BOOKING_HEARTBEAT_TIMEOUT_MS "
                             f"({heartbeat})")
        pause_poll = _int(env, "BOOKING_PAUSE_POLL_MS", 1_000)
        if pause_poll < 10:
            raise ValueError(f"BOOKING_PAUSE_POLL_MS must be at least 10, got {pause_poll}")
        event_history = _int(env, "BOOKING_EVENT_HISTORY_DAYS", 30)
        if event_history < 0:
            raise ValueError(f"BOOKING_EVENT_HISTORY_DAYS must be 0 (keep every event) or more, got {event_history}")
        plan_rate = _float(env, "BOOKING_PLAN_DEFAULT_RATE", 50.0)
        plan_burst = _int(env, "BOOKING_PLAN_DEFAULT_BURST", 500)
        plan_weight = _int(env, "BOOKING_PLAN_DEFAULT_WEIGHT", 1)
        # The bounds of booking_core.model.plans.check, said here so that a bad default stops the start.
        if not 0 < plan_rate <= 100_000:
            raise ValueError(f"BOOKING_PLAN_DEFAULT_RATE must be above 0 and at most 100000, got {plan_rate:g}")
        if not 1 <= plan_burst <= 1_000_000:
            raise ValueError(f"BOOKING_PLAN_DEFAULT_BURST must be from 1 to 1000000, got {plan_burst}")
        if not 1 <= plan_weight <= 1_000:
            raise ValueError(f"BOOKING_PLAN_DEFAULT_WEIGHT must be from 1 to 1000, got {plan_weight}")
        return cls(
            database_url=env["DATABASE_URL"],
            redis_url=env["REDIS_URL"],
            smtp_url=env.get("SMTP_URL") or cls.smtp_url,
            mail_from=env.get("BOOKING_MAIL_FROM") or cls.mail_from,
            redis_namespace=env.get("BOOKING_REDIS_NAMESPACE") or cls.redis_namespace,
            heartbeat_timeout_ms=heartbeat,
            maintenance_chance=_int(env, "BOOKING_MAINTENANCE_CHANCE", 1_000),
            relay_sweep_seconds=_int(env, "BOOKING_RELAY_SWEEP_MS", 2_000) / 1000,
            relay_batch_size=_int(env, "BOOKING_RELAY_BATCH_SIZE", 200),
            idempotency_ttl_seconds=_int(env, "BOOKING_IDEMPOTENCY_TTL_SECONDS", 24 * 3600),
            db_pool_max=_int(env, "BOOKING_DB_POOL_MAX", 10),
            db_acquire_timeout_ms=_int(env, "BOOKING_DB_ACQUIRE_TIMEOUT_MS", 5_000),
            status_secret=env.get("BOOKING_STATUS_SECRET") or "",
            events_base_url=(env.get("BOOKING_EVENTS_BASE_URL") or "").rstrip("/"),
            status_ttl_seconds=_int(env, "BOOKING_STATUS_TTL_SECONDS", 30 * 24 * 3600),
            dead_letter_retention_days=_int(env, "BOOKING_DEAD_LETTER_RETENTION_DAYS", 30),
            event_history_days=event_history,
            reconcile_after_ms=reconcile,
            ops_session_max_seconds=_int(env, "BOOKING_OPS_SESSION_MAX_SECONDS", 8 * 3600),
            ops_session_idle_seconds=_int(env, "BOOKING_OPS_SESSION_IDLE_SECONDS", 8 * 3600),
            trust_forwarded_proto=_bool(env, "BOOKING_TRUST_FORWARDED_PROTO"),
            trace_url_template=_trace_template(env.get("BOOKING_TRACE_URL_TEMPLATE") or ""),
            pause_poll_ms=pause_poll,
            plan_default_rate=plan_rate,
            plan_default_burst=plan_burst,
            plan_default_weight=plan_weight,
            webhooks_keys=_fernet_keys(env.get("BOOKING_WEBHOOKS_KEY") or ""),
            webhooks_allowed_networks=_networks(env.get("BOOKING_WEBHOOKS_ALLOWED_NETWORKS") or ""),
            webhooks_connect_timeout=_positive(env, "BOOKING_WEBHOOKS_CONNECT_TIMEOUT_SECONDS", 5.0),
            webhooks_timeout=_positive(env, "BOOKING_WEBHOOKS_TIMEOUT_SECONDS", 15.0),
            webhooks_retry_first_ms=_int(env, "BOOKING_WEBHOOKS_RETRY_FIRST_MS", 10_000),
            webhooks_retry_cap_ms=_int(env, "BOOKING_WEBHOOKS_RETRY_CAP_MS", 6 * 3600 * 1000),
            webhooks_max_attempts=_int(env, "BOOKING_WEBHOOKS_MAX_ATTEMPTS", 11),
            webhooks_disable_after_seconds=_int(env, "BOOKING_WEBHOOKS_DISABLE_AFTER_SECONDS", 3 * 24 * 3600),
            webhooks_rotation_overlap_seconds=_int(env, "BOOKING_WEBHOOKS_ROTATION_OVERLAP_SECONDS", 24 * 3600),
            webhooks_endpoint_concurrency=_int(env, "BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY", 4),
            retry=retry,
        )
