"""gunicorn settings for the API: `gunicorn -c python:booking_api.gunicorn_conf booking_api.wsgi:app`.

Metrics use prometheus_client's multiprocess mode: each worker writes its
request metrics to files in `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary
dir when unset), the master clears that dir at start, marks each exiting
worker dead in it, and serves the sum on `BOOKING_METRICS_HOST`:`BOOKING_METRICS_PORT`
(default 0.0.0.0:9100), a port apart from the HTTP one.  Bind address,
workers and threads come from the command line or GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from booking_api.gunicorn_worker import STOP_SIGNALS
from booking_api.settings import from_process

#: Read here, once, as gunicorn loads this file: before it binds or forks, so a bad
#: variable stops the start with exit status 2 and the variable's name (settings.py).
SETTINGS = from_process()

#: Reads requests on an event loop and runs the app in `--threads` threads once a request is
#: whole, so slow or idle clients hold no thread (gunicorn_worker.py says why and how).
worker_class = "booking_api.gunicorn_worker.Worker"
#: The worker's event loop.  Each request takes the loop two turns, and at each the loop waits
#: for the GIL that the request threads hold; uvloop's turns are C, not Python.  Six paired
#: rounds at 50 connections (bench/README.md, "The API's server: the worker's rate"): with
#: uvloop 1.22x gthread's confirms per second and 1.96 ms of API CPU per confirm, with asyncio
#: 0.95x and 2.21 ms.  Named, not "auto", and the worker refuses to start without it: gunicorn
#: would fall back to asyncio with only a warning.
asgi_loop = "uvloop"
#: Each worker binds a listening socket of its own (SO_REUSEPORT) and the kernel spreads new
#: connections across them.  On one shared socket, whichever worker woke first accepted: a
#: burst's 50 connections split as unevenly as 41/9 or 44/6, so one GIL served most of it.
#: With this the split stays near 25/25 and a burst's max fell to 0.84x at the median of six
#: paired rounds (bench/README.md, "Access log and server model"); sustained capacity moved
#: within the noise.  The cost: connections still queued on a worker's socket when that worker
#: dies are reset, not taken by another (net.ipv4.tcp_migrate_req=1 hands them over), and the
#: port answers once a worker has booted.
reuse_port = True
graceful_timeout = 20
#: No control socket (gunicorn 25.1+ opens one for `gunicornc` by default).  Nothing here uses
#: it, and its default path, $HOME/.gunicorn/gunicorn.ctl, is one per user, not per server: every
#: gunicorn on a host took it over from the one before, and a stopping one removed it under the
#: others.  Operators scale and restart through Kubernetes or `bookingctl`, not through it.
control_socket_disable = True
accesslog = "-"
#: Which requests get an access log line: `BOOKING_ACCESS_LOG` (errors, all, off); see `access_log`.
logger_class = "booking_api.access_log.AccessLog"

#: The dir this master made because none was given; removed at exit.
_made_dir: list[str] = []



def _refuse_a_taken_address(server) -> None:
    """Stop at start, naming the address, when another program listens on it.

    With `reuse_port` the master binds nothing and each worker binds for itself;
    a worker that cannot bind exits and the master forks another, for ever, so a
    taken port would leave a live master that never serves.  One trial bind
    here, before any worker exists, turns that into gunicorn's "Error: ..." and exit 1.
    """
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a unix socket path or an inherited fd: gunicorn's own checks apply
        host, port = address[0], address[1]
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no owner
            try:
                trial.bind((host, port))
            except OSError as e:
                raise RuntimeError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def on_starting(server) -> None:
    """Check the HTTP address is free; give the workers an empty multiprocess dir before the first fork.

    The dir is set here, in the master, before anything imports prometheus_client (which
    picks its file-backed values at import), so every forked worker inherits it.
    """
    _refuse_a_taken_address(server)
    directory = SETTINGS.prometheus_multiproc_dir
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="booking-api-metrics-")
        _made_dir.append(directory)
    # prometheus_client reads its dir from the environment, in each worker it is imported in.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def post_fork(server, worker) -> None:
    """Hold the stop signals until the worker's event loop runs (the worker lets them through then).

    A forked worker's socket listens at once (SO_REUSEPORT), but its handlers are
    first the master's, which only queue a signal for a loop the child never runs,
    then the event loop's, which drops a signal that arrives before the loop runs
    (uvloop): a SIGTERM in that window was lost, and the worker lived until
    `graceful_timeout`, 20 s of a stop.  Blocked, the signal waits, and the loop
    takes it as its first event.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def when_ready(server) -> None:
    """Serve every worker's metrics from the master, on the metrics port."""
    from booking_api import metrics_server

    host, port = SETTINGS.metrics.host, SETTINGS.metrics.port
    metrics_server.serve(SETTINGS.core, os.environ["PROMETHEUS_MULTIPROC_DIR"], host, port)
    server.log.info("metrics on http://%s:%d/metrics", host, port)


def child_exit(server, worker) -> None:
    """Fold an exited worker's live gauges away, as multiprocess mode requires."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the multiprocess dir this master made itself."""
    for directory in _made_dir:
        shutil.rmtree(directory, ignore_errors=True)
