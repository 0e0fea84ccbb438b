"""Load generation for the benchmarks: wrk for throughput, plain sockets for latency.

`wrk` (Debian's package) drives many connections at once from C, so the load
generator does not steal the Python interpreter's time from what it measures;
its Lua hooks POST a booking and print one JSON summary.  Single-connection
latency loops (the "dashboard" user) and bursts (N users at the same instant)
are Python threads on keep-alive `http.client` connections.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from booking_core.config import Settings


@contextmanager
def api_only_platform(env: dict[str, str]) -> Iterator:
    """A local platform in a temporary dir with no worker started and the `UNLIMITED_PLAN`: the API, the relay
    and the servers, for benchmarks of the accept path, where workers would only compete for the CPU."""
    from booking_core.messaging.contracts import QUEUES
    from booking_embedded import free_port
    from bookingctl.platform import Platform, PlatformConfig

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | UNLIMITED_PLAN, workers=dict.fromkeys(QUEUES, 0)))
        platform.start()
        try:
            yield platform
        finally:
            platform.stop()


@contextmanager
def embedded_settings(env: dict[str, str] | None = None) -> Iterator[Settings]:
    """Embedded Postgres and Redis in a temporary dir, migrated, and the `Settings` that reach them (with `env`
    on top): for benchmarks of one component in this process, which need the servers but no platform."""
    from booking_core.config import Settings
    from booking_core.db.migrate import migrate
    from booking_embedded import EmbeddedPostgres, EmbeddedRedis, free_port

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pg, rd = EmbeddedPostgres(d, free_port(), d / "logs"), EmbeddedRedis(d, free_port(), d / "logs")
        pg.start()
        rd.start()
        try:
            migrate(pg.url)
            yield Settings.from_env({"DATABASE_URL": pg.url, "REDIS_URL": rd.url, **(env or {})})
        finally:
            rd.stop()
            pg.stop()


#: A default plan no load on this machine reaches.  Benchmarks of the accept path run with the limiter deciding
#: every request (so its cost is in their figures) but refusing none; `limits.py` measures the limiter itself.
UNLIMITED_PLAN = {"BOOKING_PLAN_DEFAULT_RATE": "100000", "BOOKING_PLAN_DEFAULT_BURST": "1000000"}

BODY = {"customer": {"name": "Bench Mark", "email": "bench@example.com"}, "item": "Sea-view room",
        "check_in": "2027-05-01", "check_out": "2027-05-03", "amount": "240.00", "currency": "EUR"}

_WRK_POST = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
"""
_WRK_GET = """
wrk.headers["Authorization"] = "Bearer %(token)s"
"""
#: wrk's summary as one JSON line, appended to every script.
_WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d,'
    .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def pct(values: list[float], p: float) -> float:
    """The p-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> dict:
    """n, median, p99 and max of latencies in milliseconds."""
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2),
            "max_ms": round(max(ms), 2)}


def require_wrk() -> str:
    """The wrk binary, or exit with the command that installs it."""
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing; install it with: sudo apt-get install -y wrk")
    return found


def wrk_post(base_url: str, token: str, *, connections: int, seconds: float, threads: int = 2) -> dict:
    """POST bookings from `connections` keep-alive connections for `seconds`; wrk's own summary."""
    script = _WRK_POST % {"body": json.dumps(BODY), "token": token}
    return _wrk(base_url + "/api/v1/bookings", script, connections=connections, seconds=seconds, threads=threads)


def wrk_get(url: str, token: str, *, connections: int, seconds: float, threads: int = 2) -> dict:
    """GET `url` (with the token) from `connections` keep-alive connections; wrk's own summary."""
    return _wrk(url, _WRK_GET % {"token": token}, connections=connections, seconds=seconds, threads=threads)


def _wrk(url: str, script_text: str, *, connections: int, seconds: float, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(script_text + _WRK_DONE)
        out = subprocess.run(
            [require_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", str(script), url],
            capture_output=True, text=True, check=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON "):])
    secs = raw["duration_us"] / 1e6
    return {"connections": connections, "seconds": round(secs, 2), "requests": raw["requests"],
            "rps": round(raw["requests"] / secs, 1), "non2xx": raw["non2xx"], "socket_errors": raw["socket_errors"],
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000}


class Client:
    """One keep-alive connection that times each request."""

    def __init__(self, base_url: str, token: str):
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[float, int, bytes]:
        """(milliseconds, status, body); reconnects once if the server closed an idle connection."""
        headers = {**self.auth, **(headers or {})}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                return (time.perf_counter() - start) * 1000, resp.status, payload
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def dashboard_path() -> str:
    return "/api/v1/bookings?limit=20"


def loop_get(base_url: str, token: str, path: str, *, count: int | None = None,
             stop: threading.Event | None = None, pause: float = 0.0) -> list[float]:
    """GET `path` on one connection `count` times or until `stop`; latencies of the 200s."""
    client = Client(base_url, token)
    out: list[float] = []
    try:
        while (count is None or len(out) < count) and not (stop is not None and stop.is_set()):
            ms, status, _ = client.request("GET", path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            out.append(ms)
            if pause:
                time.sleep(pause)
    finally:
        client.close()
    return out


class Background:
    """Run `loop_get` in a thread until `stop()`; `result` holds its latencies."""

    def __init__(self, base_url: str, token: str, path: str, pause: float = 0.01):
        self._stop = threading.Event()
        self.result: list[float] = []
        self._thread = threading.Thread(
            target=lambda: self.result.extend(loop_get(base_url, token, path, stop=self._stop, pause=pause)),
            daemon=True)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def burst(base_url: str, token: str, users: int,
          path: str = "/api/v1/bookings") -> tuple[list[float], list[int], list[str]]:
    """`users` connections POST one booking each at the same instant; (ms, statuses, booking ids)."""
    clients = [Client(base_url, token) for _ in range(users)]
    for c in clients:  # connect first, so the burst measures requests, not TCP handshakes
        c.conn.connect()
    barrier = threading.Barrier(users)
    ms: list[float] = [0.0] * users
    statuses: list[int] = [0] * users
    ids: list[str] = [""] * users

    def one(i: int) -> None:
        barrier.wait()
        ms[i], statuses[i], body = clients[i].request("POST", path, BODY)
        if statuses[i] == 201:
            ids[i] = json.loads(body)["id"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    return ms, statuses, ids


def open_loop_post(base_url: str, token: str, *, rate: float, seconds: float, max_connections: int = 256) -> dict:
    """POST bookings at `rate` a second for `seconds`, each at its own scheduled instant, whatever the answers.

    An open-loop client, unlike wrk's closed loop (the next request the moment
    an answer arrives): request i is due at start + i/rate and leaves then on an
    idle keep-alive connection, or on a new one while fewer than `max_connections`
    are open, so a slow or refusing server does not slow the sender.  Latency
    counts from the due instant (no coordinated omission); a request that leaves
    more than `LATE_SECONDS` after it was due (it waited for a connection) is
    counted `late`.  It shares the
    machine with the server, as wrk does, so it is lean: asyncio protocols on
    uvloop, one timer, the request's bytes built once; `client_cpu_s` says what
    it took.  Runs its own event loop: call it from a thread beside a wrk run.
    """
    import resource

    import uvloop

    cpu = resource.getrusage(resource.RUSAGE_THREAD)
    loop = uvloop.new_event_loop()
    try:
        out = loop.run_until_complete(_OpenLoop(loop, base_url, token, rate, seconds, max_connections).run())
    finally:
        loop.close()
    spent = resource.getrusage(resource.RUSAGE_THREAD)
    out["client_cpu_s"] = round(spent.ru_utime + spent.ru_stime - cpu.ru_utime - cpu.ru_stime, 3)
    return out


#: An open-loop request sent this long after it was due is counted late (it waited for a connection).
LATE_SECONDS = 0.01
#: The open-loop sender's clock: each wake sends every request due by then.
TICK_SECONDS = 0.002


class _OpenLoop:
    """The state of one `open_loop_post` run, on its own event loop."""

    def __init__(self, loop, base_url: str, token: str, rate: float, seconds: float, max_connections: int):
        import asyncio
        from collections import deque

        host, port = base_url.removeprefix("http://").split(":")
        body = json.dumps(BODY).encode()
        self.request = (f"POST /api/v1/bookings HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        self.loop, self.host, self.port = loop, host, int(port)
        self.interval, self.count, self.max_connections = 1 / rate, int(rate * seconds), max_connections
        self.rate = rate
        self.due: deque[float] = deque()  # due instants (perf_counter) of requests waiting for a connection
        self.idle: list = []
        self.opened = self.opening = self.peak = self.sent = self.answered = self.late = self.errors = 0
        self.statuses: dict[int, int] = {}
        self.ms: list[float] = []
        self.finished = asyncio.Event()

    async def run(self) -> dict:
        import asyncio

        start = time.perf_counter() + 0.01
        self.start = start
        self._tick()
        await self.finished.wait()
        for conn in self.idle:
            conn.transport.close()
        await asyncio.sleep(0)  # let the closes run before the loop ends
        took = time.perf_counter() - start
        out = {"rate": self.rate, "seconds": round(took, 2), "requests": self.count, "late": self.late,
               "socket_errors": self.errors, "connections": self.peak,
               "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
               "rps": round(self.count / max(took, 1e-9), 1),
               "non2xx": sum(v for k, v in self.statuses.items() if not 200 <= k < 300)}
        if self.ms:
            out |= {"p50_ms": round(statistics.median(self.ms), 2), "p99_ms": round(pct(self.ms, 0.99), 2),
                    "max_ms": round(max(self.ms), 2)}
        return out

    def _tick(self) -> None:
        """Hand every request now due to a connection, then sleep until the next one is due."""
        now = time.perf_counter()
        while self.sent < self.count:
            at = self.start + self.sent * self.interval
            if at > now:
                # Wake at most every TICK_SECONDS: a timer per request cost this client more CPU than the
                # requests; what is sent late by a tick is counted from when it was due.
                self.loop.call_later(max(at - now, TICK_SECONDS), self._tick)
                break
            self.sent += 1
            self.due.append(at)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.due and self.idle:
            self.idle.pop().send(self.due.popleft())
        # One new connection per request still waiting beyond those already being opened.
        for _ in range(min(len(self.due) - self.opening, self.max_connections - self.opened)):
            self.opened += 1
            self.opening += 1
            self.peak = max(self.peak, self.opened)
            self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            await self.loop.create_connection(lambda: _Post(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            self.opened -= 1
            if self.due:
                self._count(None, self.due.popleft())

    def _count(self, status: int | None, at: float) -> None:
        self.answered += 1
        if status is None:
            self.errors += 1
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.ms.append((time.perf_counter() - at) * 1000)
        if self.answered >= self.count:
            self.finished.set()

    def made(self, conn: _Post) -> None:
        self.opening -= 1
        self.ready(conn)

    def ready(self, conn: _Post) -> None:
        """`conn` is open or answered: give it the next due request, or keep it idle."""
        if self.due:
            conn.send(self.due.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Post) -> None:
        self.opened -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.at is not None:
            self._count(None, conn.at)
        self._dispatch()


class _Post:
    """One keep-alive connection of an `_OpenLoop`: one request at a time, its answer framed by Content-Length."""

    def __init__(self, client: _OpenLoop):
        self.client, self.transport, self.buffer, self.at = client, None, b"", None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client.made(self)

    def send(self, at: float) -> None:
        self.at = at
        if time.perf_counter() - at > LATE_SECONDS:
            self.client.late += 1
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        mark = head.find(b"content-length:")
        length = int(head[mark + 15:head.find(b"\r\n", mark) if b"\r\n" in head[mark:] else None]) if mark >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length:]
        at, self.at = self.at, None
        self.client._count(int(head[9:12]), at)
        if b"connection: close" in head:
            self.transport.close()
        else:
            self.client.ready(self)

    def connection_lost(self, exc) -> None:
        self.client.lost(self)

    def eof_received(self) -> None:
        return None

    def pause_writing(self) -> None:
        return None

    def resume_writing(self) -> None:
        return None
