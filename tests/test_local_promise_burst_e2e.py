"""A burst of bookings on the local platform: the local autoscaler grows the email pool before the promise breaks.

Real processes throughout (`bookingctl up`'s supervisor, API, relay, Dramatiq workers,
Postgres, Redis, the SMTP sink); the autoscaler decides with the operator's core. The SMTP
sink holds each message 1 s before accepting it (`SMTP_DELAY`), as a slow relay does,
so one email process (4 threads) sends at most 4 emails/s whatever the CPU: 200 emails
take one process 50 s, and only more processes keep them within maxAge (20 s). The
invoice queue is paused for the burst, so that WeasyPrint does not take the CPU the API
and the email pool share on a 2-core machine; the accept-path hold is off for the email
pool (it is tested on its own), since a shared machine's p99 would otherwise decide the run.

What is asserted is the autoscaler's decision, which no amount of CPU contention changes:
the pool reaches its maximum while the oldest waiting email is still young (the policy
acts on the age the backlog will reach, not on a breach), every email is sent, once.
How many emails are done within maxAge is a speed, which depends on the CPU the workers
get (under `bookingctl up` at SCHED_IDLE, here at nice 10): the test prints it, and
`bench/email_burst.py` measures it on a quiet machine. Here, at load averages of 24, 16
and 10 from other work, 67 %, 80.5 % and 100 % of 200 emails were done within maxAge,
and 45.5 % beside two other test processes' platforms; 28.5 % with the pool held at one
process.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from booking_scaling.policy import Policy
from e2e_helpers import mails_to, wait_until

pytestmark = pytest.mark.e2e

BOOKINGS = 200
MAX_AGE = 20.0
#: Seconds the SMTP sink holds each message: one process of 4 threads sends at most 4 emails/s.
SMTP_DELAY = 1.0
#: The email pool's maximum: 4 processes send 16 emails/s, 200 in 12.5 s.
POOL_MAX = 4
#: The pool must reach its maximum before the oldest waiting email is this old: half the promise.
SCALED_BY_AGE = MAX_AGE / 2
LOCAL = dict(polling_interval=1, stabilization_window_seconds=10, cooldown_period=30, scale_down_max_step=1)


def test_a_burst_of_bookings_grows_the_email_pool_before_the_oldest_email_nears_its_max_age(make_platform, api_of):
    platform = make_platform(env={"BOOKING_LIMITS_ENABLED": "false"}, smtp_delay=SMTP_DELAY, autoscale={
        "email": Policy(min_replica_count=1, max_replica_count=POOL_MAX, max_age=MAX_AGE, pod_start_seconds=3,
                        min_throughput_per_replica=2, replica_concurrency=4, protect_accept_path=False, **LOCAL),
        "invoice": Policy(min_replica_count=1, max_replica_count=1, **LOCAL),
        "audit": Policy(min_replica_count=1, max_replica_count=1, **LOCAL),
    })
    api = api_of(platform)
    status, _ = api.json("POST", "/api/v1/ops/queues/invoice/pause", {"reason": "burst test: email only"})
    assert status == 200
    assert platform.pool("email") == ["email-worker-1"]

    oldest, peak, stop = [0.0], [1], threading.Event()
    sizes: list[tuple[float, int]] = []
    at_max: list[float] = []  # the oldest waiting email's age when the pool first reached its maximum

    def watch() -> None:  # what the autoscaler saw: the oldest email's age at each reading, and the pool's size
        while not stop.wait(0.2):
            age = platform.autoscaler.oldest.get("email", 0.0)
            oldest[0] = max(oldest[0], age)
            size = len(platform.pool("email"))
            if size == POOL_MAX and not at_max:
                at_max.append(age)
            peak[0] = max(peak[0], size)
            if not sizes or sizes[-1][1] != size:
                sizes.append((round(time.monotonic() - started, 1), size))

    started = time.monotonic()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: api.book_as_a_careful_client(f"Burst {i}", f"burst{i}@example.com"),
                                 range(BOOKINGS)))
    submitted = time.monotonic() - started
    assert statuses.count(201) == BOOKINGS

    with psycopg.connect(platform.urls["DATABASE_URL"], autocommit=True) as db:
        def done() -> int:
            sql = "SELECT count(*) FROM booking_tasks WHERE task = 'email' AND state = 'done'"
            return db.execute(sql).fetchone()[0]

        wait_until(lambda: done() == BOOKINGS, timeout=300, interval=1, what="every email sent")
        ages = [row[0] for row in db.execute(
            "SELECT extract(epoch FROM t.updated_at - b.created_at)::float FROM booking_tasks t "
            "JOIN bookings b ON b.id = t.booking_id WHERE t.task = 'email'")]
    stop.set()
    watcher.join(5)

    within = sum(age <= MAX_AGE for age in ages) / len(ages)
    print(f"\n{BOOKINGS} bookings in {submitted:.1f}s; emails done within maxAge {MAX_AGE:g}s: {100 * within:.1f} %; "
          f"email age when done: max {max(ages):.1f}s, median {sorted(ages)[len(ages) // 2]:.1f}s; "
          f"oldest waiting email the autoscaler saw: {oldest[0]:.1f}s; email processes (s since the burst, count): "
          f"{sizes}")
    assert len(ages) == BOOKINGS
    assert [mails_to(platform.data_dir, f"burst{i}@example.com") for i in range(BOOKINGS)] == [1] * BOOKINGS
    assert peak[0] == POOL_MAX, f"the pool peaked at {peak[0]} of {POOL_MAX} email processes"
    assert at_max[0] < SCALED_BY_AGE, (f"the pool reached {POOL_MAX} processes only when the oldest email was "
                                       f"{at_max[0]:.1f}s old")
