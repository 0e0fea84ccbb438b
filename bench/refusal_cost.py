"""What one refusal costs the API: CPU per 429 of a tenant held at its limit, this tree against a git ref, in turns.

    .venv/bin/python bench/refusal_cost.py [--ref main] [--rounds 5] [--seconds 8] [--connections 50]
                                           [--open-rate R] [--quiet-rate Q] [--no-log-candidate]

One platform, its workers stopped, its own API stopped.  A tenant on a plan of one
booking a second floods `POST /api/v1/bookings` with wrk (closed loop, `--connections`):
after its first second nearly every POST is a 429 the API process repeats from its
refusal hold.  With `--open-rate R` the flood is sent open loop at R POSTs a second
(`loadgen.open_loop_post`), a client's real rate, where each refusal arrives alone
and pays the wake-ups that a saturating closed loop shares between many.  With
`--quiet-rate Q` another tenant books open loop at Q a second beside the flood, from
a process of its own, and its p99 is compared between the candidates too.  Each round
serves that flood from three gunicorns in turn, started
with the platform's own command:

- `ref`      — the API package of `--ref` (`git archive` of services/booking-api/src,
  first on `PYTHONPATH`; the libraries are this tree's);
- `tree`     — this tree's API;
- `tree_log` — this tree's API with `BOOKING_ACCESS_LOG=all`, which logs the 429s
  that `errors` (the default) now leaves out: the access log's share, apart.

For each, the API's CPU (gunicorn's master and workers) over the flood is divided by
the requests answered: µs per refusal.  The order rotates every round; a warm-up
round is left out of the medians.  Ratios are paired by round: this machine is
shared and noisy, read them rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import loadgen
import pgstats
import report
from limits import serve, tenant_token

from booking_core.messaging.contracts import QUEUES
from booking_core.model.plans import Plan
from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

ROOT = Path(__file__).resolve().parent.parent
API_SRC = "services/booking-api/src"


def export_ref(ref: str, into: Path) -> Path:
    """`ref`'s API package under `into`, to put first on PYTHONPATH; checked to be the one Python imports."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, API_SRC], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    src = into / API_SRC
    found = subprocess.run([sys.executable, "-c", "import booking_api; print(booking_api.__file__)"],
                           env=os.environ | {"PYTHONPATH": str(src)}, capture_output=True, text=True, check=True)
    if not found.stdout.strip().startswith(str(src)):
        raise SystemExit(f"PYTHONPATH={src} does not win over the installed API: {found.stdout.strip()}")
    return src


def flood(platform: Platform, name: str, env: dict[str, str], token: str, connections: int, seconds: int,
          open_rate: float | None = None, quiet: tuple[ProcessPoolExecutor, str, float] | None = None) -> dict:
    """The held tenant's flood on a fresh API (wrk, or open loop at `open_rate`), and the API's CPU µs per request.

    With `quiet` (a process of its own, a token, a rate), another tenant sends its bookings open
    loop at that rate for the flood's length, and its answers are `quiet` in the result.
    """
    child, port = serve(platform, "on", env)
    try:
        base = f"http://127.0.0.1:{port}"
        # The tenant's one token goes, and each worker learns the refusal, the identity and the plan.
        loadgen.wrk_post(base, token, connections=connections, seconds=2)
        if quiet:  # and the quiet tenant's identity and plan
            quiet[0].submit(loadgen.open_loop_post, base, quiet[1], rate=quiet[2], seconds=1).result()
        before = pgstats.cpu_seconds(child.pid)
        beside = quiet[0].submit(loadgen.open_loop_post, base, quiet[1], rate=quiet[2], seconds=seconds) \
            if quiet else None
        if open_rate:
            result = loadgen.open_loop_post(base, token, rate=open_rate, seconds=seconds)
        else:
            result = loadgen.wrk_post(base, token, connections=connections, seconds=seconds)
        if beside is not None:
            result["quiet"] = beside.result()
        spent = pgstats.cpu_seconds(child.pid) - before
    finally:
        child.stop()
    requests = result["requests"] + (result["quiet"]["requests"] if quiet else 0)
    result["api_us_per_request"] = round(spent * 1e6 / max(requests, 1), 1)
    result["refused_share"] = round(result["non2xx"] / max(result["requests"], 1), 4)
    shown = {k: result[k] for k in ("rps", "refused_share", "api_us_per_request", "p99_ms")}
    if quiet:
        shown["quiet_p99_ms"] = result["quiet"].get("p99_ms")
    print(name, shown, flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="main", help="the git ref whose API is the baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup-rounds", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--open-rate", type=float, default=None,
                    help="send the flood open loop at this many POSTs a second (a client's real rate) instead of wrk")
    ap.add_argument("--no-log-candidate", action="store_true", help="leave out `tree_log`")
    ap.add_argument("--quiet-rate", type=float, default=None,
                    help="another tenant books open loop at this rate beside the flood; its p99 is compared too")
    ap.add_argument("--out", type=Path, default=Path("bench/results/refusal_cost.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        ref_src = export_ref(args.ref, Path(tmp))
        candidates = {"ref": {"PYTHONPATH": str(ref_src)}, "tree": {}, "tree_log": {"BOOKING_ACCESS_LOG": "all"}}
        if args.no_log_candidate:
            del candidates["tree_log"]
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN, workers=dict.fromkeys(QUEUES, 0)))
        platform.start()
        try:
            platform.stop_component("api")
            token = tenant_token(platform.urls["DATABASE_URL"], "bench-held", Plan("held", 1.0, 1, 1))
            quiet = None
            if args.quiet_rate:
                client = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                quiet = (client, tenant_token(platform.urls["DATABASE_URL"], "bench-quiet", None), args.quiet_rate)
            names = list(candidates)
            for index in range(-args.warmup_rounds, args.rounds):
                shift = index % len(names)
                row = {name: flood(platform, name, candidates[name], token, args.connections, args.seconds,
                                   args.open_rate, quiet)
                       for name in names[shift:] + names[:shift]}
                if index >= 0:
                    rounds.append(row)
        finally:
            if quiet:
                quiet[0].shutdown()
            platform.stop()

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    summary: dict = {}
    if rounds:
        summary = {name: {"api_us_per_request_median": med([r[name]["api_us_per_request"] for r in rounds]),
                          "rps_median": med([r[name]["rps"] for r in rounds]),
                          "refused_share_min": min(r[name]["refused_share"] for r in rounds)} for name in candidates}
        for name in [n for n in ("tree", "tree_log") if n in candidates]:
            summary[f"{name}_over_ref_paired_median"] = {
                key: med([r[name][key] / r["ref"][key] for r in rounds]) for key in ("api_us_per_request", "rps")}
        if args.quiet_rate:
            for name in candidates:
                summary[name]["quiet_p99_ms_median"] = med([r[name]["quiet"]["p99_ms"] for r in rounds])
            for name in [n for n in ("tree", "tree_log") if n in candidates]:
                summary[f"{name}_over_ref_paired_median"]["quiet_p99"] = med(
                    [r[name]["quiet"]["p99_ms"] / r["ref"]["quiet"]["p99_ms"] for r in rounds])
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    report.write({"ref": args.ref, "ref_commit": commit, "connections": args.connections, "seconds": args.seconds,
                  "open_rate": args.open_rate, "quiet_rate": args.quiet_rate,
                  "rounds": rounds, "summary": summary, "command": report.command()}, args.out)
    print(summary)


if __name__ == "__main__":
    main()
