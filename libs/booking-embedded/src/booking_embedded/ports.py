"""Free TCP ports for the servers we start, chosen where no client socket can take them.

`bind(("127.0.0.1", 0))` returns a port from the kernel's ephemeral range, the
same range it hands to outgoing connections.  Between our check and the
server's own bind, a worker connecting to Redis or Postgres may be given that
very port as its local end, and the server then dies with EADDRINUSE (CI saw
the API's metrics server do exactly that).  So ports are picked at random
*below* the ephemeral range, which the kernel never gives to clients, and a
process never hands out the same port twice.

Nor do two processes on the host, for a while: between being picked and being
bound a port looks free to everyone, and test runs on several workers
(pytest-xdist), or several test sessions on one machine, pick ports at the same
moments.  Each port handed out is therefore claimed in a host-wide registry, a
file per port under `<tempdir>/booking-ports/`, and no process hands out a port
another one claimed in the last `CLAIM_SECONDS` (long enough for a stopped
server to start again on its port, as the outage tests do).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

LOWEST = 10_000
#: How long a port another process picked stays its own (a platform restarts servers on their ports).
CLAIM_SECONDS = 30 * 60
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The host-wide registry of claimed ports: one empty file per port, its mtime the claim's time.
_claims = Path(tempfile.gettempdir()) / "booking-ports"
_handed_out: set[int] = set()
_lock = threading.Lock()


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if unreadable)."""
    try:
        low, high = (text if text is not None else _RANGE_FILE.read_text()).split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def candidates(low_ephemeral: int) -> range:
    """Ports we may pick: from LOWEST up to just below the ephemeral range (empty if none fit)."""
    return range(LOWEST, max(LOWEST, low_ephemeral))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port(port: int) -> None:
    """Never hand out `port`: the caller will bind it itself, later."""
    with _lock:
        _handed_out.add(port)


@contextlib.contextmanager
def _registry():
    """The claims dir, locked against every other process's claims while in use."""
    _claims.mkdir(mode=0o1777, parents=True, exist_ok=True)
    fd = os.open(_claims / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _claims
    finally:
        os.close(fd)


def _claim(claims: Path, port: int, now: float) -> bool:
    """Claim `port` for this process unless another claimed it less than CLAIM_SECONDS ago."""
    path = claims / str(port)
    try:
        if now - path.stat().st_mtime < CLAIM_SECONDS:
            return False
    except FileNotFoundError:
        pass
    path.touch()
    os.utime(path, (now, now))
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses now, outside the ephemeral range, new to this process
    and claimed by no other process lately."""
    pool = candidates(ephemeral_range()[0])
    with _lock, _registry() as claims:
        start = random.randrange(len(pool)) if pool else 0
        now = time.time()
        for i in range(len(pool)):  # from a random point, as the kernel scans its own range
            port = pool[(start + i) % len(pool)]
            if port not in _handed_out and _bindable(port) and _claim(claims, port, now):
                _handed_out.add(port)
                return port
        # No room below the ephemeral range (an unusual sysctl): let the kernel choose.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _handed_out.add(port)
        return port


#: The state column of /proc/net/tcp for a listening socket.
_LISTEN = "0A"


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets (IPv4 and IPv6) listening on `port`, from /proc/net/tcp*.

    More than one when the server's processes each bind their own (SO_REUSEPORT),
    as the API's gunicorn workers do: the kernel spreads new connections only
    over the sockets that exist when they arrive.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:  # sl, local address:port, remote, state, ..., inode (field 9)
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == _LISTEN:
                inodes.add(fields[9])
    return inodes
