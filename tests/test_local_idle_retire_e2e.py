"""A local scale-down stops the idle worker process, never the one in the middle of a task.

Real processes: a pool of two email workers, one holding an email in the SMTP
sink's DATA phase, the other idle; scaling the pool to one stops the idle one,
although it is the older of the two (the runner used to stop the newest), and
the busy one's email finishes on its first attempt, sent once.
"""

from __future__ import annotations

import time

import pytest
import redis

from booking_core.config import Settings
from booking_scaling import podload
from e2e_helpers import mails_to, wait_until

pytestmark = pytest.mark.e2e

#: The sink holds each email this long (within the email client's 30 s timeout): the busy worker is
#: still sending when the pool shrinks.
SMTP_DELAY = 20.0


def test_scale_down_to_one_stops_the_idle_process_and_the_busy_one_finishes(make_platform, api_of):
    platform = make_platform(smtp_delay=SMTP_DELAY, workers={"email": 2, "invoice": 1, "audit": 1, "webhook": 1})
    api = api_of(platform)
    client = redis.Redis.from_url(platform.urls["REDIS_URL"])
    namespace = Settings.from_env(platform.child_env()).redis_namespace

    def loads() -> dict[str, podload.PodLoad]:
        return podload.read(client, namespace, ["email"], int(time.time() * 1000))

    # The busy process must be the newer one, which the old rule would have stopped: only
    # email-worker-2 consumes while the booking's email is fetched.
    platform.stop_component("email-worker-1")
    booking = api.book(name="Long Send", email="longsend@example.com")["id"]
    wait_until(lambda: loads().get("email-worker-2", podload.PodLoad(0, None, 0)).in_flight >= 1, timeout=60,
               what="email-worker-2 holding the email")
    platform.start_component("email-worker-1")
    wait_until(lambda: "email-worker-1" in loads(), timeout=90, what="email-worker-1 stamping its presence")
    busy = platform.children["email-worker-2"]
    busy_pid = busy.pid
    assert api.tasks(booking)["email"]["state"] == "running"

    with platform._control:  # not between a supervisor round's reads
        platform.resize("email", 1)
        assert platform.retiring == {"email-worker-1"}
    wait_until(lambda: "email-worker-1" not in platform.children, timeout=60, what="the idle worker to exit")
    assert busy.alive() and busy.pid == busy_pid
    assert platform.pool("email") == ["email-worker-2"]

    tasks = api.wait_states(booking, {"email": "done"}, timeout=SMTP_DELAY + 60)
    assert tasks["email"]["attempts"] == 1 and tasks["email"]["last_error"] is None, tasks["email"]
    assert mails_to(platform.data_dir, "longsend@example.com") == 1
    assert busy.alive() and busy.pid == busy_pid
    log = (platform.log_dir / "email-worker-2.log").read_text()
    assert "Sending signal 'SIGTERM'" not in log and "Killing worker process" not in log
