"""Serve a benchmark's own WSGI app beside a platform, with the API's gunicorn settings.

The synchronous baseline (`sync_app.py`) and the server's floor (`floor_app.py`)
must run under the same server, workers, threads and hooks as the real API,
or a comparison with it measures the server instead of the work.  Each runs as
a `booking_embedded.Child`, the platform's own kind of process: its own group,
its log in the platform's logs/, stopped (and its workers with it) by `stop`.
"""

from __future__ import annotations

from pathlib import Path

from booking_embedded import Child, wait_for_port
from bookingctl.platform import Platform
from bookingctl.services import api as api_spec


def serve(platform: Platform, port: int, app: str, name: str) -> Child:
    """gunicorn serving `app` (module:callable in bench/) on `port`, once it accepts connections."""
    spec = api_spec(port, platform.data_dir / "run", workers=platform.config.api_workers)
    argv = [a if a != "booking_api.wsgi:app" else app for a in spec.argv]
    argv += ["--pythonpath", str(Path(__file__).parent)]
    env = {**platform.child_env(), **spec.env, "PROMETHEUS_MULTIPROC_DIR": str(platform.data_dir / "run" / name)}
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    child = Child(name, argv, log_path=platform.log_dir / f"{name}.log", env=env, stop_timeout=spec.stop_timeout)
    child.start()
    try:
        # Every worker: connections made before a worker binds all go to the others.
        wait_for_port(port, timeout=60, child=child, listeners=platform.config.api_workers)
    except BaseException:
        child.stop()
        raise
    return child


def stop(child: Child | None) -> None:
    """Stop a server `serve` started (gunicorn drains on SIGTERM)."""
    if child is not None:
        child.stop()
