"""Serve a benchmark's own WSGI app beside a platform, with the API's gunicorn settings.

The synchronous baseline (`sync_app.py`) and the server's floor (`floor_app.py`)
must run under the same server, workers, threads and hooks as the real API,
or a comparison with it measures the server instead of the work.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import loadgen

from bookingctl.platform import Platform
from bookingctl.services import api as api_spec


def serve(platform: Platform, port: int, app: str, name: str) -> subprocess.Popen:
    """gunicorn serving `app` (module:callable in bench/) on `port`; logs in the platform's logs/NAME.log."""
    spec = api_spec(port, platform.data_dir / "run", workers=platform.config.api_workers)
    argv = [a if a != "booking_api.wsgi:app" else app for a in spec.argv]
    argv += ["--pythonpath", str(Path(__file__).parent)]
    env = {**platform.child_env(), **spec.env, "PROMETHEUS_MULTIPROC_DIR": str(platform.data_dir / "run" / name)}
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(platform.log_dir / f"{name}.log", "ab"))  # noqa: SIM115 - the child owns it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            loadgen.Client(f"http://127.0.0.1:{port}", "x").request("GET", "/healthz")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"{app} did not start; see logs/{name}.log")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a server `serve` started (gunicorn drains on SIGTERM)."""
    if proc is not None:
        proc.terminate()
        proc.wait(30)
