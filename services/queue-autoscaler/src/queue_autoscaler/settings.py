"""The operator's own settings, read once from the environment as kopf imports the operator.

kopf needs a timer's interval when the handler module is imported, so they are
read then, by `operator.py` (the module kopf runs), before kopf starts; a bad
variable stops the operator with exit status 2 and one line naming it
(`booking_settings.boot`).  Written in the style of every process's settings
(`booking_settings.fields`), without booking-core, which the operator's image
does not carry; nothing else in the package reads os.environ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from booking_settings.fields import check, env, load

#: kopf's default finalizer, which operators without a label selector (and earlier versions) use.
LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _selector(raw: str) -> dict[str, str]:
    """QUEUE_AUTOSCALER_LABEL_SELECTOR's value as labels (the loader names the variable)."""
    try:
        return parse_selector(raw)
    except ValueError:
        raise ValueError("must be `key=value` terms joined by commas") from None


@dataclass(frozen=True)
class OperatorSettings:
    """Tunables of the operator process (not of any one QueueScaler)."""

    #: How often each QueueScaler's timer wakes; it reads Redis only every pollingInterval.
    tick_seconds: float = env("QUEUE_AUTOSCALER_TICK_SECONDS", 1.0, above=0, high=3600)
    #: Port of the Prometheus /metrics endpoint; 0 turns it off.
    metrics_port: int = env("QUEUE_AUTOSCALER_METRICS_PORT", 9102, low=0, high=65_535)
    metrics_host: str = env("QUEUE_AUTOSCALER_METRICS_HOST", "0.0.0.0")  # noqa: S104 - scraped from other pods
    #: Redis socket timeouts: a dead Redis must read as an error within one poll.
    redis_timeout_seconds: float = env("QUEUE_AUTOSCALER_REDIS_TIMEOUT_SECONDS", 2.0, above=0, high=600)
    #: How long a Secret's Redis URL is reused before it is read again.
    secret_ttl_seconds: float = env("QUEUE_AUTOSCALER_SECRET_TTL_SECONDS", 60.0, low=0)
    #: The liveness probe fails when a QueueScaler's timer has not run for this long
    #: (every tick runs it, whatever the pollingInterval, so this only catches a stuck operator).
    stale_poll_seconds: float = env("QUEUE_AUTOSCALER_STALE_POLL_SECONDS", 120.0, above=0)
    #: Act only on QueueScalers with these labels (`k=v,k2=v2`): the chart sets its release's,
    #: so two releases in one namespace never act on each other's.
    labels: dict[str, str] = env("QUEUE_AUTOSCALER_LABEL_SELECTOR", factory=dict, parse=_selector)

    def __post_init__(self) -> None:
        check(self)

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
    def from_env(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Settings from QUEUE_AUTOSCALER_* variables, defaults for the rest."""
        return load(cls, environ)


def parse_selector(text: str, what: str = "QUEUE_AUTOSCALER_LABEL_SELECTOR") -> dict[str, str]:
    """`k=v,k2=v2` as a dict; kopf filters on label equality only, so nothing else is accepted."""
    labels: dict[str, str] = {}
    for term in text.split(",") if text.strip() else ():
        key, eq, value = term.strip().partition("=")
        if not eq or not key or value.startswith("=") or any(c in key + value for c in "!() "):
            raise ValueError(f"{what} must be `key=value` terms joined by commas, got {text!r}")
        labels[key] = value
    return labels
