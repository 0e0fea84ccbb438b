"""A worker's broker set-up leaves prometheus_client unimported, for Dramatiq's Prometheus middleware to import.

Dramatiq's middleware imports prometheus_client in each process after it boots,
once it has pointed PROMETHEUS_MULTIPROC_DIR at the directory its exposition
process serves.  prometheus_client decides at its first import whether metrics go
to that directory: imported any earlier (by a module the worker's broker imports),
every worker counts in its own memory and `/metrics` on 9191 serves nothing.
That happened once, through a package `__init__` that re-exported the accept-path
latency parser (booking_scaling.pressure) to a worker that needed only the pause mirror.
"""

from __future__ import annotations

import os
import subprocess
import sys

SETUP = """
import sys
from booking_core.config import Settings
from booking_core.worker.broker import setup_broker

setup_broker(Settings.from_env({"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
                                "REDIS_URL": "redis://127.0.0.1:9/0"}), service_name="probe")
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "prometheus_client")))
"""


def test_setting_up_a_workers_broker_imports_no_prometheus_client():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_", "prometheus_"))}
    done = subprocess.run([sys.executable, "-c", SETUP], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported before the worker's process boot: {done.stdout.strip()}"
