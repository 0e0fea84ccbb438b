"""gunicorn settings for the API: `gunicorn -c python:booking_api.gunicorn_conf booking_api.wsgi:app`.

Clears the Prometheus multiprocess dir at start and marks each exiting worker
dead in it, as prometheus_client's multiprocess mode requires.  Bind address,
workers and threads come from the command line or GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

worker_class = "gthread"
graceful_timeout = 20
accesslog = "-"


def on_starting(server) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
