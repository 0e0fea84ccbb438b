"""The operator's own settings, read once from the environment at import.

kopf needs a timer's interval when the handler module is imported, so this
is read before kopf starts; nothing else in the package reads os.environ.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

#: kopf's default finalizer, which operators without a label selector (and earlier versions) use.
LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


@dataclass(frozen=True)
class OperatorConfig:
    """Tunables of the operator process (not of any one QueueScaler)."""

    #: How often each QueueScaler's timer wakes; it reads Redis only every pollingInterval.
    tick_seconds: float = 1.0
    #: Port of the Prometheus /metrics endpoint; 0 turns it off.
    metrics_port: int = 9102
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    #: Redis socket timeouts: a dead Redis must read as an error within one poll.
    redis_timeout_seconds: float = 2.0
    #: How long a Secret's Redis URL is reused before it is read again.
    secret_ttl_seconds: float = 60.0
    #: The liveness probe fails when a QueueScaler's timer has not run for this long
    #: (every tick runs it, whatever the pollingInterval, so this only catches a stuck operator).
    stale_poll_seconds: float = 120.0
    #: Act only on QueueScalers with these labels (QUEUE_AUTOSCALER_LABEL_SELECTOR, `k=v,k2=v2`):
    #: the chart sets its release's, so two releases in one namespace never act on each other's.
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def finalizer(self) -> str:
        """The finalizer this operator puts on its QueueScalers: one per release.

        kopf removes its finalizer from every object that carries it but matches no
        handler; with one shared name, the operators of two releases in a namespace
        would each strip the other's, forever. kopf's own name is kept without a selector.
        """
        if not self.labels:
            return LEGACY_FINALIZER
        instance = self.labels.get("app.kubernetes.io/instance", "")
        if instance and len(instance) <= 53:
            return f"scaling.booking-platform.io/operator-{instance}"
        digest = hashlib.sha256(",".join(f"{k}={v}" for k, v in sorted(self.labels.items())).encode()).hexdigest()
        return f"scaling.booking-platform.io/operator-{digest[:12]}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Settings from QUEUE_AUTOSCALER_* variables, defaults for the rest."""
        env = os.environ if env is None else env

        def get(name: str, default: float, kind: type = float):
            raw = env.get(f"QUEUE_AUTOSCALER_{name}")
            try:
                return default if raw in (None, "") else kind(raw)
            except ValueError:
                raise ValueError(f"QUEUE_AUTOSCALER_{name} must be a number, got {raw!r}") from None

        return cls(
            tick_seconds=get("TICK_SECONDS", cls.tick_seconds),
            metrics_port=get("METRICS_PORT", cls.metrics_port, int),
            metrics_host=env.get("QUEUE_AUTOSCALER_METRICS_HOST") or cls.metrics_host,
            redis_timeout_seconds=get("REDIS_TIMEOUT_SECONDS", cls.redis_timeout_seconds),
            secret_ttl_seconds=get("SECRET_TTL_SECONDS", cls.secret_ttl_seconds),
            stale_poll_seconds=get("STALE_POLL_SECONDS", cls.stale_poll_seconds),
            labels=parse_selector(env.get("QUEUE_AUTOSCALER_LABEL_SELECTOR") or ""),
        )


def parse_selector(text: str, what: str = "QUEUE_AUTOSCALER_LABEL_SELECTOR") -> dict[str, str]:
    """`k=v,k2=v2` as a dict; kopf filters on label equality only, so nothing else is accepted."""
    labels: dict[str, str] = {}
    for term in text.split(",") if text.strip() else ():
        key, eq, value = term.strip().partition("=")
        if not eq or not key or value.startswith("=") or any(c in key + value for c in "!() "):
            raise ValueError(f"{what} must be `key=value` terms joined by commas, got {text!r}")
        labels[key] = value
    return labels
