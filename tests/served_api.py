"""The API's gunicorn as a real process, started with the platform's own command, for tests of the server itself."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from booking_embedded import free_port, listening_inodes
from bookingctl.services import api as api_service
from e2e_helpers import wait_until


class ServedApi:
    """A gunicorn started with the platform's own command (`bookingctl.services.api`), on the session's servers."""

    def __init__(self, database_url: str, redis_url: str, run_dir: Path, *, workers: int = 2, threads: int = 4,
                 env: dict[str, str] | None = None, app: str | None = None, extra: tuple[str, ...] = ()):
        self.port = free_port()
        self.log_path = run_dir / "gunicorn.log"
        self.workers = workers
        spec = api_service(self.port, run_dir, workers=workers, threads=threads)
        self.metrics_url = spec.metrics_url
        argv = [a if a != "booking_api.wsgi:app" or app is None else app for a in spec.argv] + list(extra)
        full_env = {**os.environ, **spec.env, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                    "BOOKING_REDIS_NAMESPACE": f"test-{run_dir.name}",
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).parent)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self) -> ServedApi:
        def serving() -> bool:
            assert self.proc.poll() is None, self.log()
            if len(listening_inodes(self.port)) < self.workers:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5):
                    return True
            except OSError:
                return False

        wait_until(serving, timeout=60, what="gunicorn to serve /healthz on every worker")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

