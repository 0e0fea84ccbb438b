"""Local autoscaling: the operator's decision core applied to worker processes.

Each pool (one queue's worker processes) is read with the same `QueueReader`
(delayed messages count when due within the pool's delayedLeadSeconds) and
decided with the same `decide()` as the kopf operator; the actuator here
starts `dramatiq` processes or sends SIGTERM to the idlest ones, ranked as the
operator ranks pods (bookingctl.retire), which finish their messages (Dramatiq's
shutdown timeout) before exiting.

Two rules keep the API first on one machine (issue 9):

* CPU-bound pools (invoice: WeasyPrint) never get more processes than
  `cpu_bound_limit(cores)` = the usable cores.  A Dramatiq process runs its
  actors' Python under one GIL, so however many threads it has, one rendering
  process keeps at most one core busy: processes x 1 core <= cores.  More
  processes than cores render no faster and only take CPU from the API
  (measured: four invoice processes on 2 cores left the API 232 of 913
  bookings/s, one left it 609).  The API's share of the cores it does use comes
  from the runner's CPU priorities and from the latency hold below.  Usable
  cores are the process' CPU affinity (`os.sched_getaffinity`, what a
  container's cpuset allows), else os.cpu_count().
* Scale-ups wait while the accept path is over its latency budget: before each
  round of decisions the API's /metrics is read and the p99 of the bookings
  requests since the last reading is judged (booking_scaling.pressure);
  a held scale-up is logged with its reason, once when the hold starts and once
  when it ends.  A /metrics that cannot be read holds nothing (it is logged):
  a broken probe must not freeze the pools.

A pool whose policy has `maxAge` (every pool by default; a policy file changes it,
{"email": {"maxAge": 10}}, or drops it, {"email": {"maxAge": null}}) is scaled on its
promise, as the operator does: the oldest ready age from the same snapshot and the
workers' completion counter (booking_scaling.completions).

On one machine the pools share the cores, so the tighter promise goes first: while a
pool's oldest task has used 15 % of its maxAge, the pools with a longer maxAge are
paused until it is out of risk or their own oldest task has used half of theirs
(booking_scaling.yielding, bookingctl.cpu_yield: audited as paused by "bookingctl up
(cpu yield)").

A queue an operator paused (`bookingctl queues pause`, the ops API or console)
is not scaled up either: its workers start no message, so more of them would
only idle.  The paused queues are read from Postgres each round (a read error
keeps the last known set); the hold is logged like the latency hold, with the
reason "queue paused", and the scale-up comes at once on resume.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis

from booking_core.messaging.contracts import QUEUES
from booking_core.queues.pausewatch import PauseReader
from booking_scaling import completions, outboxmirror
from booking_scaling.backlog import Backlog
from booking_scaling.decision import QUEUE_PAUSED, Decision, ScalerState, decide
from booking_scaling.depth import QueueReader
from booking_scaling.policy import Policy
from booking_scaling.pressure import AcceptPath, LatencyBudget, LatencyWatch
from booking_scaling.promise import Observed
from booking_scaling.yielding import Promise
from bookingctl.cpu_yield import CpuYield
from bookingctl.services import worker_threads

log = logging.getLogger("bookingctl.autoscale")

#: Sensible local defaults: a laptop has few cores, and audit work is light.  Each pool keeps a
#: promise (maxAge: email 20 s, invoice 120 s, audit 60 s, webhook 30 s); a local process serves within a couple
#: of seconds of its start (podStartSeconds 3, WeasyPrint's import the slowest), works on
#: all of `services.worker`'s threads at once (replicaConcurrency, read from services so that it
#: follows the processes actually started), and the throughput floors are cautious guesses of one
#: process's tasks/s before any is measured.  Email and invoice share the chart's tolerance, throughput
#: half-life and scale-up step (none), the settings bench/autoscale_sim.py proves on five traces
#: (tests/test_chart_autoscale_sim.py keeps them equal); the poll, window, maxAge and podStartSeconds are
#: a laptop's: a local process starts in seconds, a pod in tens of seconds.
_LOCAL = {"polling_interval": 2, "stabilization_window_seconds": 30, "cooldown_period": 60, "scale_down_max_step": 1,
          "pod_start_seconds": 3}
DEFAULT_POLICIES = {
    "email": Policy(min_replica_count=1, max_replica_count=4, target_backlog_per_replica=20, max_age=20,
                    min_throughput_per_replica=2, replica_concurrency=worker_threads("email"), tolerance=0.2,
                    throughput_half_life_seconds=30, **_LOCAL),
    "invoice": Policy(min_replica_count=1, max_replica_count=4, target_backlog_per_replica=10, max_age=120,
                      min_throughput_per_replica=0.5, replica_concurrency=worker_threads("invoice"), tolerance=0.25,
                      **_LOCAL),
    "audit": Policy(min_replica_count=1, max_replica_count=2, target_backlog_per_replica=50, max_age=60,
                    min_throughput_per_replica=5, replica_concurrency=worker_threads("audit"), **_LOCAL),
    # Deliveries wait on tenants' receivers, not the CPU: one process's 16 threads carry many at
    # once, so a process is added per 100 waiting, and few are needed.
    "webhook": Policy(min_replica_count=1, max_replica_count=3, target_backlog_per_replica=100, max_age=30,
                      min_throughput_per_replica=5, replica_concurrency=worker_threads("webhook"), **_LOCAL),
}


#: Pools whose work is CPU-bound Python (WeasyPrint renders invoices): capped by cores.
CPU_BOUND = frozenset({"invoice"})
#: The local accept path's budget: p99 of /api/v1/bookings (idle: about 3.5 ms on 2 cores).
LOCAL_BUDGET = LatencyBudget(p99_budget_seconds=0.05, min_requests=20)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_bound_limit(cores: int) -> int:
    """Most processes of a CPU-bound pool: one per usable core (each keeps at most one busy: the GIL)."""
    return max(1, cores)


def cap_cpu_bound(queue: str, policy: Policy, cores: int) -> Policy:
    """`policy` with its counts brought within cpu_bound_limit(cores) when `queue` is CPU-bound."""
    limit = cpu_bound_limit(cores)
    if queue not in CPU_BOUND or policy.max_replica_count <= limit:
        return policy
    log.info("%s workers: maxReplicaCount %d capped to %d (CPU-bound: one process per usable core, %d)",
             queue, policy.max_replica_count, limit, cores)
    fallback = policy.fallback_replicas
    return replace(policy, max_replica_count=limit, min_replica_count=min(policy.min_replica_count, limit),
                   fallback_replicas=None if fallback is None else min(fallback, limit))


def load_policies(path: Path | None, overrides: list[str] | None = None) -> dict[str, Policy]:
    """Defaults, then a JSON policy file ({"invoice": {"maxReplicaCount": 6, …}}), then QUEUE=MIN:MAX flags."""
    policies = dict(DEFAULT_POLICIES)
    if path is not None:
        spec = json.loads(path.read_text())
        unknown = set(spec) - set(QUEUES)
        if unknown:
            raise ValueError(f"{path}: unknown queue(s) {', '.join(sorted(unknown))}; expected {', '.join(QUEUES)}")
        for queue, fields in spec.items():
            policies[queue] = Policy.from_spec(fields, defaults=policies[queue])
    for item in overrides or []:
        queue, _, bounds = item.partition("=")
        low, _, high = bounds.partition(":")
        if queue not in QUEUES or not low.isdigit() or not high.isdigit():
            raise ValueError(f"--scale takes QUEUE=MIN:MAX with QUEUE one of {', '.join(QUEUES)}, got {item!r}")
        spec = {"minReplicaCount": int(low), "maxReplicaCount": int(high)}
        policies[queue] = Policy.from_spec(spec, defaults=policies[queue])
    return policies


@dataclass
class Pool:
    """One queue's scaler: its policy, its memory and when it next reads the backlog."""

    queue: str
    policy: Policy
    state: ScalerState = field(default_factory=ScalerState)
    next_at: float = 0.0
    last: Decision | None = None
    #: The reason a scale-up is held right now (None: not held), for logging changes only.
    held: str | None = None


class Autoscaler:
    """Reads every pool's backlog when due and asks the platform to resize pools."""

    def __init__(self, policies: dict[str, Policy], redis_url: str, namespace: str, *,
                 api_metrics_url: str | None = None, budget: LatencyBudget = LOCAL_BUDGET,
                 cores: int | None = None, database_url: str | None = None, yield_cpu: bool = True):
        cores = usable_cores() if cores is None else cores
        self.pools = {q: Pool(q, cap_cpu_bound(q, p, cores)) for q, p in policies.items()}
        self.reader = QueueReader(redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
                                  namespace)
        #: Each pool's oldest ready age (s) at its last reading; none for a pool whose last reading failed.
        self.oldest: dict[str, float] = {}
        self.latency = LatencyWatch(replace(budget, metrics_url=api_metrics_url or budget.metrics_url))
        #: Where the paused queues are read (None: no database, nothing is paused).
        self.pauses = PauseReader(database_url) if database_url else None
        #: The tighter promise first (None: no database, or turned off).
        self.cpu_yield = CpuYield(self.pauses) if self.pauses is not None and yield_cpu else None

    def read(self, pools: list[Pool]) -> dict[str, Backlog]:
        """Each pool's backlog, its delayed messages due within its own delayedLeadSeconds.

        One snapshot per distinct lead time (one in all with the defaults), each atomic, plus
        what waits in the outbox (the relay's copy, `booking_scaling.outboxmirror`).
        """
        by_lead: dict[float, list[str]] = {}
        for pool in pools:
            by_lead.setdefault(pool.policy.delayed_lead_seconds, []).append(pool.queue)
        readings: dict[str, Backlog] = {}
        outbox = outboxmirror.read(self.reader.client, self.reader.namespace, [p.queue for p in pools])
        for lead, queues in by_lead.items():
            for depth in self.reader.snapshot(queues, due_within_ms=lead * 1000):
                readings[depth.queue] = Backlog.from_depths([depth], outbox=[outbox[depth.queue]])
                self.oldest[depth.queue] = readings[depth.queue].oldest_age_seconds([depth], int(time.time() * 1000))
        return readings

    def observed(self, pool: Pool, backlog: Backlog, running: int) -> Observed | None:
        """The promise's inputs for a pool with a maxAge (None: the depth target decides).

        A local process starts in about a second; the policy's podStartSeconds stands for it.
        """
        if pool.policy.max_age is None or backlog.error is not None:
            return None
        try:
            done = completions.read(self.reader.client, self.reader.namespace, [pool.queue])
        except redis.RedisError:
            done = None
        return Observed(oldest_age=self.oldest.get(pool.queue, 0.0), completed=done, serving=running)

    def accept_path(self, now: float) -> AcceptPath | None:
        """The API's latency since the last call, judged against the budget (None: no URL set)."""
        url = self.latency.budget.metrics_url
        if url is None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - the platform's own API
                text = resp.read().decode()
        except (OSError, ValueError) as e:
            return self.latency.unreadable(e)
        return self.latency.observe(text, now)

    def tick(self, running: dict[str, int], resize, now: float | None = None) -> None:
        """For each pool due a reading: decide on `running[queue]` processes, call resize(queue, n)."""
        now = time.monotonic() if now is None else now
        due = [p for p in self.pools.values() if now >= p.next_at]
        if not due:
            return
        try:
            readings = self.read(due)
        except redis.RedisError as e:
            readings = {p.queue: Backlog.unreadable(f"{type(e).__name__}: {e}") for p in due}
        signal = self.accept_path(now)
        for pool in due:
            if readings[pool.queue].error is not None:
                self.oldest.pop(pool.queue, None)
        paused = self.pauses.read() if self.pauses is not None else frozenset()
        if self.cpu_yield is not None:
            # Before the decisions: a pool that yields now is not scaled up this round (a new process costs
            # the CPU the yield is for).  Every pool's last age counts, not only those due this round (their
            # polls may differ); a pool whose backlog cannot be read (no age), or that someone else paused
            # (its tasks age, but no CPU would start them), is neither at risk nor held.
            by_others = paused - self.cpu_yield.held
            self.cpu_yield.apply({q: Promise(p.policy.max_age, self.oldest[q]) for q, p in self.pools.items()
                                  if p.policy.max_age is not None and q in self.oldest and q not in by_others})
            paused = by_others | self.cpu_yield.held
        for pool in due:
            pool.next_at = now + pool.policy.polling_interval
            backlog = readings[pool.queue]
            decision = decide(backlog, running[pool.queue], pool.policy, pool.state, now,
                              accept_path=signal, queue_paused=pool.queue in paused,
                              observed=self.observed(pool, backlog, running[pool.queue]))
            pool.state, pool.last = decision.new_state, decision
            # Logged when a hold starts or changes cause (a latency hold's text changes every round).
            if decision.held is not None and (pool.held is None or
                                              (decision.held == QUEUE_PAUSED) != (pool.held == QUEUE_PAUSED)):
                log.warning("%s workers: scale-up held: %s", pool.queue, decision.reason)
            elif decision.held is None and pool.held is not None:
                log.info("%s workers: scale-up no longer held (%s)", pool.queue,
                         "queue resumed" if pool.held == QUEUE_PAUSED else
                         signal.reason if signal else "no latency signal")
            pool.held = decision.held
            if decision.changed:
                log.info("%s workers: %s", pool.queue, decision.reason)
                resize(pool.queue, decision.desired)

    def release(self) -> None:
        """Lift the CPU yield's pauses (at start: a killed runner's; at stop: its own)."""
        if self.cpu_yield is not None:
            self.cpu_yield.release()

    def close(self) -> None:
        """Lift the yield's pauses and close the connection to Postgres."""
        self.release()
        if self.pauses is not None:
            self.pauses.close()
