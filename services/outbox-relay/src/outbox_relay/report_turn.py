"""Whose turn to read the backlog: one relay reads the outbox per interval, every relay reports it.

The backlog report (`backlog.read`) is an aggregate over the whole outbox:
40-120 ms at 20,000 due rows a queue, 150-200 ms at 100,000, on the Postgres
the API's confirms commit to.  Read by every relay replica every second, it
would cost that many times over for the same answer.  So one relay reads per
interval and the others take its reading:

- The reading is shared in Redis (`key`), written with an expiry of one
  interval: while the key lives the reading is fresh, on Redis's clock (no
  clock of any relay is compared with another's).  A relay whose interval is
  up first looks there and, when it finds a fresh reading, reports that.
- Only when none is fresh does it try to read, under a transaction-level
  advisory try-lock (`LOCK_KEY`, docs/lock-order.md): a relay that does not get
  it leaves the reading to the one that did and looks again shortly.  The
  holder looks at the key once more (a reading may have landed while it asked),
  then reads, publishes it and releases the lock with its transaction.  So
  there is no leader to elect or to lose: when the relay that read stops, the
  key lapses within an interval and the next relay to look reads.
- Every relay exposes the same latest reading on its /metrics, so the series
  neither vanish nor double as relays come and go: aggregate them with `max by
  (queue, tenant)` (the chart's dashboard and alerts do), never `sum`.
- The interval backs off when the read is slow (`next_interval`, pure): the
  read takes at most `BUDGET` of one connection's time, between
  `REPORT_SECONDS` and `MAX_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import psycopg
import redis

from booking_scaling.outboxmirror import REPORT_SECONDS, TTL_MS, OutboxBacklog
from outbox_relay.backlog import Report, TenantBacklog

#: The reading's turn ("bklg"), taken with a try in a transaction that only reads.
LOCK_KEY = 0x626B6C67
#: Most of one connection's time the reading may take.
BUDGET = 0.05
#: The longest interval, however slow the read: the autoscalers' copy must not lapse between readings.
MAX_INTERVAL_SECONDS = 15.0
#: A relay that finds the reading being taken by another looks again after this long.
RETRY_SECONDS = 0.2


def next_interval(read_seconds: float, base: float = REPORT_SECONDS, budget: float = BUDGET,
                  cap: float = MAX_INTERVAL_SECONDS) -> float:
    """Seconds until the next reading, so that a read of `read_seconds` takes at most `budget` of the time.

    Never shorter than `base`, never longer than `cap` (past the cap the read takes
    more than `budget`, which is then the price of keeping the autoscalers' copy alive).
    """
    return min(cap, max(base, read_seconds / budget))


def mirror_ttl_ms(interval: float) -> int:
    """How long the autoscalers' copy must live to outlast a few missed readings at `interval`."""
    return max(TTL_MS, int(3 * interval * 1000))


def key(namespace: str) -> str:
    return f"{namespace}:__backlog_report__"


def encode(report: Report) -> str:
    return json.dumps({"at_ms": report.at_ms, "queues": [asdict(b) for b in report.queues],
                       "oldest_age_ms": report.oldest_age_ms, "tenants": [asdict(t) for t in report.tenants]})


def decode(text: bytes | str) -> Report | None:
    """A shared reading, or None when the text is not one (a reading is never trusted to be well formed)."""
    try:
        d = json.loads(text)
        return Report(int(d["at_ms"]), [OutboxBacklog(**b) for b in d["queues"]],
                      {str(q): int(v) for q, v in d["oldest_age_ms"].items()},
                      [TenantBacklog(**t) for t in d["tenants"]])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class Turn:
    """What one look gave: the reading to report (None: none yet), and the read's seconds when this relay read."""

    report: Report | None
    read_seconds: float | None = None
    interval: float = REPORT_SECONDS


class ReportTurn:
    """One relay's side of the shared reading: when to look next, and `take` to look."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.key = key(namespace)
        self.next_at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def _fresh(self) -> tuple[Report | None, float]:
        """The shared reading while it is fresh, and the seconds it stays so."""
        text, ttl_ms = self.client.pipeline(transaction=False).get(self.key).pttl(self.key).execute()
        if text is None or ttl_ms is None or ttl_ms <= 0:
            return None, 0.0
        return decode(text), ttl_ms / 1000

    def _adopt(self, report: Report, left: float) -> Turn:
        self.next_at = time.monotonic() + max(left, RETRY_SECONDS)
        return Turn(report)

    def take(self, conn: psycopg.Connection, read: Callable[[psycopg.Connection], Report]) -> Turn:
        """The reading this relay should report now: another's while fresh, else its own read, if its turn."""
        report, left = self._fresh()
        if report is not None:
            return self._adopt(report, left)
        with conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (LOCK_KEY,)).fetchone()["got"]:
                self.next_at = time.monotonic() + RETRY_SECONDS  # another relay is reading
                return Turn(None)
            report, left = self._fresh()
            if report is not None:
                return self._adopt(report, left)
            start = time.monotonic()
            report = read(conn)
            took = time.monotonic() - start
            interval = next_interval(took)
            self.client.set(self.key, encode(report), px=max(1, int(interval * 1000)))
        self.next_at = time.monotonic() + interval
        return Turn(report, took, interval)
