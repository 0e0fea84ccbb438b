"""Which server for the API: confirms/s, POST latency and slow-client behaviour, in turns on one platform.

    .venv/bin/python bench/api_server.py [--rounds 3] [--warmup-rounds 1] [--seconds 8] [--connections 50]
                                         [--granian /path/to/venv/bin/granian]

One platform, its workers stopped (the accept path alone).  Each round serves
the same app, the same Postgres and Redis, from each candidate in turn on a
port of its own:

- `booking` — gunicorn with the API's worker (`booking_api.gunicorn_worker.Worker`:
  requests read on an event loop, the app in 4 threads), the platform's command;
- `gthread` — the same command with `--worker-class gthread` (the server before issue 18);
- `granian` — granian `--interface wsgi --workers 2 --blocking-threads 4`, when
  `--granian` names its executable (granian is not a dependency of the
  platform: install it apart, e.g. `.tools/bin/uv venv /tmp/granian &&
  .tools/bin/uv pip install --python /tmp/granian/bin/python granian==2.8.9`; it
  imports the app from this interpreter's path, so it must be the same Python).

For each: `wrk` POSTs bookings at `--connections` for `--seconds` (confirms/s,
p50, p99), then with 8 connections that sent half a request line and then
nothing, 10 sequential `GET /healthz`, each given 2 s (how many answered, and
their median).  Ratios to `booking` (confirms/s and POST p99) are paired by
round; medians over rounds.  The candidates run in turns, every other round in
the reverse order, after `--warmup-rounds` rounds on the platform just
started (Postgres's cache, the pool's connections), which the result keeps
under `warmup` but the medians leave out.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import loadgen
import report
from slow_clients import SlowClients

from booking_embedded import Child, free_port, wait_for_port
from bookingctl.platform import Platform, PlatformConfig
from bookingctl.services import api as api_spec


def argv_for(name: str, port: int, run_dir: Path, workers: int, granian: str | None) -> tuple[list[str], int]:
    """(command line, listening sockets to wait for) of candidate `name` on `port`."""
    if name == "granian":
        return [granian, "--interface", "wsgi", "--workers", str(workers), "--blocking-threads", "4",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "booking_api.wsgi:app"], 1
    argv = api_spec(port, run_dir, workers=workers).argv
    return (argv + ["--worker-class", "gthread"] if name == "gthread" else argv), workers



def serve(platform: Platform, name: str, granian: str | None) -> tuple[Child, int]:
    """Start candidate `name` beside the platform; (its process, its port) once it answers /healthz."""
    port = free_port()
    run_dir = platform.data_dir / "run" / f"bench-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv, listeners = argv_for(name, port, run_dir, platform.config.api_workers, granian)
    spec = api_spec(port, run_dir, workers=platform.config.api_workers)
    env = {**platform.child_env(), **spec.env, "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus")}
    (run_dir / "prometheus").mkdir(exist_ok=True)  # gunicorn's config makes it; granian reads no config
    if name == "granian":  # the app's packages, as this interpreter finds them
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    child = Child(f"bench-{name}", argv, log_path=platform.log_dir / f"bench-{name}.log", env=env,
                  stop_timeout=30)
    child.start()
    try:
        wait_for_port(port, timeout=60, child=child, listeners=listeners)
        deadline = time.monotonic() + 60
        while not healthz_ms(port, 2.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} does not answer /healthz; its log ends:\n"
                                   + child.log_path.read_text()[-2000:])
            time.sleep(0.1)
    except BaseException:
        child.stop()
        raise
    return child, port


def healthz_ms(port: int, timeout: float) -> float | None:
    """One GET /healthz on a fresh connection: milliseconds, or None if no 200 came within `timeout`."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    return (time.perf_counter() - start) * 1000 if data.startswith(b"HTTP/1.1 200") else None


def slow_probe(port: int) -> dict:
    """10 sequential /healthz (2 s each) while 8 connections hold half a request line."""
    with SlowClients(port, half_lines=8, silent=0):
        time.sleep(0.5)
        answers = [healthz_ms(port, 2.0) for _ in range(10)]
    ok = [a for a in answers if a is not None]
    return {"answered_of_10": len(ok), "p50_ms": round(statistics.median(ok), 2) if ok else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup-rounds", type=int, default=1,
                    help="rounds run first, kept in the result as `warmup` and left out of the medians")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--granian", default=None, help="a granian executable, to include it")
    ap.add_argument("--servers", default="booking,gthread,granian", help="which candidates, in this order")
    ap.add_argument("--out", type=Path, default=Path("bench/results/api_server.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    names = [n for n in args.servers.split(",") if n != "granian" or args.granian]
    if "booking" not in names:
        raise SystemExit("bench: the ratios are to `booking`; keep it in --servers")
    rounds: list[dict] = []
    warmup: list[dict] = []
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN))
        platform.start()
        try:
            for name in [n for n in platform.children if "-worker-" in n]:
                platform.stop_component(name)
            platform.stop_component("api")  # the candidates take its place, one at a time
            token = platform.admin_token
            for index in range(-args.warmup_rounds, args.rounds):
                row = {}
                # Every other round in the reverse order, so a machine that speeds up or slows
                # down during a round does not favour whichever candidate always runs first.
                for name in names if index % 2 == 0 else names[::-1]:
                    child, port = serve(platform, name, args.granian)
                    try:
                        base = f"http://127.0.0.1:{port}"
                        loadgen.wrk_post(base, token, connections=args.connections, seconds=2)  # warm-up
                        load = loadgen.wrk_post(base, token, connections=args.connections, seconds=args.seconds)
                        row[name] = {"wrk_post": load, "slow_clients": slow_probe(port)}
                    finally:
                        child.stop()
                    print("warm-up" if index < 0 else index, name, row[name], flush=True)
                (rounds if index >= 0 else warmup).append(row)
        finally:
            platform.stop()

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    summary = {}
    for name in names:
        runs = [r[name] for r in rounds]
        summary[name] = {
            "post_rps": [r["wrk_post"]["rps"] for r in runs],
            "post_rps_median": med([r["wrk_post"]["rps"] for r in runs]),
            "post_p99_ms": [r["wrk_post"]["p99_ms"] for r in runs],
            "post_p99_ms_median": med([r["wrk_post"]["p99_ms"] for r in runs]),
            "healthz_answered_of_10_with_8_slow": [r["slow_clients"]["answered_of_10"] for r in runs],
            "rps_over_booking_paired_median": med([r["wrk_post"]["rps"] / b["wrk_post"]["rps"]
                                                   for r, b in zip(runs, [x["booking"] for x in rounds], strict=True)]),
            "p99_over_booking_paired_median": med([r["wrk_post"]["p99_ms"] / b["wrk_post"]["p99_ms"]
                                                   for r, b in zip(runs, [x["booking"] for x in rounds], strict=True)]),
        }
    report.write({"connections": args.connections, "seconds": args.seconds, "warmup": warmup,
                  "rounds": rounds,
                  "summary": summary, "command": report.command()}, args.out)


if __name__ == "__main__":
    main()
