"""What the admission limiter costs a confirm: the accept path with the limiter on and off, in turns on one platform.

    .venv/bin/python bench/limits.py [--rounds 5] [--warmup-rounds 1] [--seconds 8] [--connections 50]
                                     [--held-rounds 3] [--open-plan-rate 50] [--open-multiples 1,2,10]
    # the held tenants only:  --rounds 0 --warmup-rounds 0 --held-rounds 5

One platform, its workers stopped (the accept path alone), its own API stopped.
Each round serves the same app on the same Postgres, Redis and relay from two
gunicorns in turn, started with the platform's own command:

- `on`  — `BOOKING_LIMITS_ENABLED=true` with a default plan no load here reaches
  (`loadgen.UNLIMITED_PLAN`): every confirm takes its token from Redis (one
  EVALSHA), none is refused, so the two do the same work but the limiter's;
- `off` — `BOOKING_LIMITS_ENABLED=false`.

For each, `wrk` POSTs bookings at `--connections` for `--seconds`, and the CPU
time of every process that serves them (the candidate's gunicorn and its
workers, Postgres, Redis, the relay) is divided by the confirms answered.  The
limiter's cost is the API's and Redis's CPU per confirm, on over off, paired by
round; the target is at most 1.05 (issue 20: at most 5 % of a confirm's CPU),
and confirms/s on over off at least 0.95.

Then `--held-rounds` (limiter on, one API): a quiet tenant POSTs with wrk at a
fifth of the connections, for `--seconds`, in each of these scenarios (their
order rotates every round; `held_rounds[i]` holds them all):

- `quiet_alone`: nothing beside it;
- `quiet_beside_open_<m>x`, for each of `--open-multiples` (1,2,10): beside a
  tenant on a plan of `--open-plan-rate` bookings a second (50, the default
  plan's; burst the same) that sends at m times that rate, OPEN loop
  (`loadgen.open_loop_post`: each POST at its own instant, whatever the answers),
  as a real client over its limit does; 1x is the same tenant at its plan, nothing
  refused, so over it is what being held adds;
- `quiet_beside_held`: beside a tenant with a plan of one booking a second flooding
  CLOSED loop on `--connections` (wrk: the next POST the moment a 429 arrives), so
  refusals take all the CPU they can: the worst case, not a client's real rate;
- `quiet_beside_unlimited`: the same flood with no effective limit (all bookings).

Issue 20's target: the quiet tenant's POST p99 while another tenant is held at
its limit within 1.2x of a run without it.  `summary.held` gives the closed-loop
ratios (over alone, over unlimited), `summary.held_open_<m>x` the open-loop ones
(over alone, over the closed-loop flood, over 1x), each the median of per-round
ratios, with the quiet tenant's confirms/s the same way and the API's CPU.

Before the rounds, `decision_cost` times the decision itself in this process
(leased, as the API runs it, and exact, one EVALSHA per booking) against a plain
Redis GET, and reads Redis's own time per EVALSHA: on a machine too busy for the
rounds to resolve a few per cent, that, over the `off` runs' CPU per confirm, is
the limiter's share (`share_of_confirm_*`).  The order alternates every round,
and `--warmup-rounds` run first and are left out of the medians.  This machine
is shared and noisy: read the paired ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import loadgen
import pgstats
import report
from api_server import healthz_ms

from booking_core.messaging.contracts import QUEUES
from booking_core.model.plans import Plan
from booking_embedded import Child, free_port, wait_for_port
from bookingctl.platform import Platform, PlatformConfig
from bookingctl.services import api as api_spec

CANDIDATES = {"on": {"BOOKING_LIMITS_ENABLED": "true"}, "off": {"BOOKING_LIMITS_ENABLED": "false"}}
SHARED = ("postgres", "redis", "relay")


def serve(platform: Platform, name: str, extra_env: dict[str, str] | None = None) -> tuple[Child, int]:
    """The API with candidate `name`'s settings and `extra_env` beside the platform; (process, port) once it answers."""
    port = free_port()
    run_dir = platform.data_dir / "run" / f"limits-{name}"
    (run_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    spec = api_spec(port, run_dir, workers=platform.config.api_workers)
    env = {**platform.child_env(), **spec.env, **loadgen.UNLIMITED_PLAN, **CANDIDATES[name],
           "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus"), **(extra_env or {})}
    child = Child(f"limits-{name}", spec.argv, log_path=platform.log_dir / f"limits-{name}.log", env=env,
                  stop_timeout=30)
    child.start()
    try:
        wait_for_port(port, timeout=60, child=child, listeners=platform.config.api_workers)
        loadgen_wait = [healthz_ms(port, 2.0) for _ in range(3)]
        if not any(loadgen_wait):
            raise TimeoutError(f"{name} does not answer /healthz")
    except BaseException:
        child.stop()
        raise
    return child, port


def measured(platform: Platform, child: Child, port: int, token: str, connections: int, seconds: int) -> dict:
    """wrk's summary of POSTs to `port`, with CPU ms per confirm of the API (`api`) and each shared process."""
    pids = {"api": child.pid} | {name: platform.component(name).pid for name in SHARED}
    before = {name: pgstats.cpu_seconds(pid) for name, pid in pids.items()}
    result = loadgen.wrk_post(f"http://127.0.0.1:{port}", token, connections=connections, seconds=seconds)
    spent = {name: pgstats.cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    n = max(result["requests"], 1)
    result["cpu_ms_per_confirm"] = {name: round(s * 1000 / n, 3) for name, s in spent.items()}
    result["cpu_ms_per_confirm"]["api_and_redis"] = round((spent["api"] + spent["redis"]) * 1000 / n, 3)
    result["cpu_ms_per_confirm"]["all"] = round(sum(spent.values()) * 1000 / n, 3)
    return result


def decision_cost(redis_url: str, calls: int = 2000, repeats: int = 7) -> dict:
    """CPU of one admission decision in this process and in Redis, leased (the default) and exact.

    Steadier than the wrk rounds on a shared machine: each figure is this process's
    own CPU time (`time.process_time`) over `calls` decisions, the median of
    `repeats`, in turns with a plain Redis GET (the cheapest round trip) as the
    yardstick; Redis's share is its own `INFO commandstats` time per EVALSHA times
    the EVALSHAs per decision.
    """
    import time

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from booking_api.admission import Admission
    from booking_core.model.plans import Plan

    client = redis.Redis.from_url(redis_url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    plan = Plan("bench", 100_000.0, 1_000_000, 1)
    gates = {"leased": Admission(client, "bench-cost", plan, cache_seconds=5, hold_seconds=1),
             "exact": Admission(client, "bench-cost", plan, cache_seconds=5, hold_seconds=1, lease_max=1)}
    runs: dict[str, list[float]] = {"leased": [], "exact": [], "redis_get": []}
    evalsha: dict[str, list[float]] = {"leased": [], "exact": []}
    for _ in range(repeats):
        for name in runs:
            stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
            start = time.process_time()
            if name == "redis_get":
                for _ in range(calls):
                    client.get("bench-cost:nothing")
            else:
                gate = gates[name]
                for _ in range(calls):
                    gate.take(f"tenant-{name}", lambda _t: plan)
            runs[name].append((time.process_time() - start) / calls * 1e6)
            if name in evalsha:
                after = client.info("commandstats")["cmdstat_evalsha"]
                evalsha[name].append((after["usec"] - stats["usec"]) / calls)
    client.close()
    out = {f"{name}_process_us": round(statistics.median(v), 1) for name, v in runs.items()}
    out |= {f"{name}_redis_us": round(statistics.median(v), 1) for name, v in evalsha.items()}
    return out


def tenant_token(database_url: str, name: str, plan: Plan | None) -> str:
    """A client token of tenant `name` (created), on `plan` (None: the default plan)."""
    from booking_core import db
    from booking_core.model import plans, tenants

    with db.connect(database_url, autocommit=True) as conn:
        tenant = tenants.ensure_tenant(conn, name)
        if plan is not None:
            plans.set_plan(conn, tenant["id"], plan, actor="bench")
        return tenants.create_token(conn, tenant["id"])["token"]


def held_round(port: int, api_pid: int, tokens: dict[str, str], connections: int, seconds: int,
               open_plan_rate: float, multiples: list[float], order: int, quiet_rate: float | None = None,
               quiet_client=None, shared_pids: dict[str, int] | None = None) -> dict:
    """A quiet tenant's POSTs alone and beside each held or unlimited tenant, in an order rotated by `order`.

    Scenarios: `quiet_alone`; `quiet_beside_open_<m>x`, beside a tenant on a plan
    of `open_plan_rate` bookings a second sending at `m` times that rate, open loop
    (`loadgen.open_loop_post`); `quiet_beside_held`, beside a tenant with a plan of
    one booking a second flooding closed loop on `connections` (wrk); and
    `quiet_beside_unlimited`, the same flood with no effective limit.  The tenant
    beside is `noisy_<scenario>`; `api_cpu_s_per_s` is the API's CPU over the run, and
    `cpu_s_per_s` that of each of `shared_pids` too (Postgres, Redis, the relay: what the
    API's requests wait behind on the same two cores).

    With `quiet_rate`, the quiet tenant sends open loop at that rate instead of wrk's closed
    loop, from `quiet_client` (a process of its own, so the two open-loop senders do not
    share an interpreter lock): its customers at a steady rate below the machine's capacity,
    whose p99 is their wait, where a saturating closed loop's p99 is the machine's throughput.
    """
    import threading

    base = f"http://127.0.0.1:{port}"
    quiet_connections = max(1, connections // 5)

    def closed(token: str):
        return lambda: loadgen.wrk_post(base, token, connections=connections, seconds=seconds + 2)

    def opened(multiple: float):
        return lambda: loadgen.open_loop_post(base, tokens["open"], rate=open_plan_rate * multiple,
                                              seconds=seconds + 2)

    scenarios: list[tuple[str, object]] = [("alone", None)]
    scenarios += [(f"open_{m:g}x", opened(m)) for m in multiples]
    scenarios += [("held", closed(tokens["noisy"])), ("unlimited", closed(tokens["unlimited"]))]
    shift = order % len(scenarios)
    out: dict = {}
    for name, beside in scenarios[shift:] + scenarios[:shift]:
        box: dict = {}
        flood = threading.Thread(target=lambda b=beside, out=box: out.update(b())) if beside else None
        pids = {"api": api_pid, **(shared_pids or {})}
        cpu = {proc: pgstats.cpu_seconds(pid) for proc, pid in pids.items()}
        if flood:
            flood.start()
        try:
            if quiet_rate:
                quiet = quiet_client.submit(loadgen.open_loop_post, base, tokens["quiet"], rate=quiet_rate,
                                            seconds=seconds).result()
            else:
                quiet = loadgen.wrk_post(base, tokens["quiet"], connections=quiet_connections, seconds=seconds)
            quiet["cpu_s_per_s"] = {proc: round((pgstats.cpu_seconds(pid) - cpu[proc]) / quiet["seconds"], 3)
                                    for proc, pid in pids.items()}
            quiet["api_cpu_s_per_s"] = quiet["cpu_s_per_s"]["api"]
        finally:
            if flood:
                flood.join()
        out["quiet_alone" if name == "alone" else f"quiet_beside_{name}"] = quiet
        if beside:
            out[f"noisy_{name}"] = box
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup-rounds", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--held-rounds", type=int, default=3,
                    help="rounds of a quiet tenant alone, then beside a tenant held at its limit (limiter on)")
    ap.add_argument("--open-plan-rate", type=float, default=50.0,
                    help="plan rate (bookings/s; burst the same) of the open-loop held tenant (default plan's: 50)")
    ap.add_argument("--open-multiples", default="1,2,10",
                    help="the open-loop tenant sends at these multiples of its plan rate, one scenario each ('' none)")
    ap.add_argument("--quiet-rate", type=float, default=None,
                    help="the quiet tenant sends open loop at this rate (bookings/s), not wrk's closed loop")
    ap.add_argument("--out", type=Path, default=Path("bench/results/limits.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    multiples = [float(m) for m in args.open_multiples.split(",") if m.strip()]
    names = list(CANDIDATES)
    rounds: list[dict] = []
    warmup: list[dict] = []
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    with tempfile.TemporaryDirectory() as tmp:
        # No workers at all: the accept path alone (and none to wait for on a busy machine).
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN, workers={q: 0 for q in QUEUES}))
        platform.start()
        try:
            platform.stop_component("api")
            cost = decision_cost(platform.urls["REDIS_URL"])
            print("decision cost", cost, flush=True)
            token = platform.admin_token
            for index in range(-args.warmup_rounds, args.rounds):
                row = {}
                for name in names if index % 2 == 0 else names[::-1]:
                    child, port = serve(platform, name)
                    try:
                        loadgen.wrk_post(f"http://127.0.0.1:{port}", token, connections=args.connections, seconds=2)
                        row[name] = measured(platform, child, port, token, args.connections, args.seconds)
                    finally:
                        child.stop()
                    print("warm-up" if index < 0 else index, name, row[name], flush=True)
                (rounds if index >= 0 else warmup).append(row)
            held = []
            if args.held_rounds:
                db_url = platform.urls["DATABASE_URL"]
                rate = args.open_plan_rate
                tokens = {"quiet": tenant_token(db_url, "bench-quiet", None),
                          "noisy": tenant_token(db_url, "bench-noisy", Plan("held", 1.0, 1, 1)),
                          "open": tenant_token(db_url, "bench-open", Plan("open-held", rate, max(1, int(rate)), 1)),
                          "unlimited": tenant_token(db_url, "bench-unlimited", None)}
                child, port = serve(platform, "on")
                quiet_client = None
                if args.quiet_rate:
                    quiet_client = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                    quiet_client.submit(os.getpid).result()  # started and imported before the first run
                shared = {name: platform.component(name).pid for name in SHARED}
                try:
                    for index in range(args.held_rounds):
                        held.append(held_round(port, child.pid, tokens, args.connections, args.seconds, rate,
                                               multiples, index, args.quiet_rate, quiet_client, shared))
                        print("held", index, {k: (v.get("rps"), v.get("p99_ms"), v.get("non2xx"))
                                              for k, v in held[-1].items()}, flush=True)
                finally:
                    child.stop()
                    if quiet_client is not None:
                        quiet_client.shutdown()
        finally:
            platform.stop()

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    def paired(metric) -> float:
        return med([metric(r["on"]) / metric(r["off"]) for r in rounds])

    summary: dict = {}
    if rounds:
        summary = {name: {"rps_median": med([r[name]["rps"] for r in rounds]),
                          "p99_ms_median": med([r[name]["p99_ms"] for r in rounds]),
                          "non2xx": sum(r[name]["non2xx"] for r in rounds),
                          "cpu_ms_per_confirm_median": {k: med([r[name]["cpu_ms_per_confirm"][k] for r in rounds])
                                                        for k in rounds[0][name]["cpu_ms_per_confirm"]}}
                   for name in names}
        summary["on_over_off_paired_median"] = {
            "api_and_redis_cpu_per_confirm": paired(lambda x: x["cpu_ms_per_confirm"]["api_and_redis"]),
            "api_cpu_per_confirm": paired(lambda x: x["cpu_ms_per_confirm"]["api"]),
            "all_cpu_per_confirm": paired(lambda x: x["cpu_ms_per_confirm"]["all"]),
            "rps": paired(lambda x: x["rps"]),
            "p99": paired(lambda x: x["p99_ms"]),
        }
        # The limiter's share of a confirm's CPU: its decision (here and in Redis) over everything a confirm costs.
        confirm_us = summary["off"]["cpu_ms_per_confirm_median"]["all"] * 1000
        cost["share_of_confirm_leased"] = round((cost["leased_process_us"] + cost["leased_redis_us"]) / confirm_us, 4)
        cost["share_of_confirm_exact"] = round((cost["exact_process_us"] + cost["exact_redis_us"]) / confirm_us, 4)
    if held:
        summary["held"] = {
            "quiet_p99_beside_held_over_alone": paired_held(held, "p99_ms", "quiet_beside_held", "quiet_alone"),
            "quiet_p99_beside_held_over_beside_unlimited": paired_held(held, "p99_ms", "quiet_beside_held",
                                                                       "quiet_beside_unlimited"),
            "quiet_rps_beside_held_over_alone": paired_held(held, "rps", "quiet_beside_held", "quiet_alone"),
            "noisy_refused_share": refused_share(held, "noisy_held"),
        }
        for m in multiples:
            name = f"open_{m:g}x"
            summary[f"held_{name}"] = open_summary(held, name)
        summary["held_scenarios_median"] = {
            name: {"quiet_p99_ms": med([h[name]["p99_ms"] for h in held]),
                   "quiet_rps": med([h[name]["rps"] for h in held]),
                   "api_cpu_s_per_s": med([h[name]["api_cpu_s_per_s"] for h in held])}
            for name in held[0] if name.startswith("quiet_")}
    report.write({"connections": args.connections, "seconds": args.seconds, "open_plan_rate": args.open_plan_rate,
                  "quiet_rate": args.quiet_rate,
                  "open_multiples": multiples, "decision_cost": cost, "warmup": warmup,
                  "rounds": rounds, "held_rounds": held, "summary": summary, "command": report.command()}, args.out)


def paired_held(held: list[dict], metric: str, top: str, bottom: str) -> float:
    return round(statistics.median(h[top][metric] / h[bottom][metric] for h in held), 3)


def refused_share(held: list[dict], noisy: str) -> float:
    return round(sum(h[noisy]["non2xx"] for h in held) / max(sum(h[noisy]["requests"] for h in held), 1), 4)


def open_summary(held: list[dict], name: str) -> dict:
    """The quiet tenant beside the open-loop tenant `name`: over alone, over the closed-loop flood, over 1x."""
    beside = f"quiet_beside_{name}"
    out = {
        "quiet_p99_over_alone": paired_held(held, "p99_ms", beside, "quiet_alone"),
        "quiet_rps_over_alone": paired_held(held, "rps", beside, "quiet_alone"),
        "quiet_p99_over_beside_closed_held": paired_held(held, "p99_ms", beside, "quiet_beside_held"),
        "quiet_rps_over_beside_closed_held": paired_held(held, "rps", beside, "quiet_beside_held"),
        "api_cpu_over_alone": paired_held(held, "api_cpu_s_per_s", beside, "quiet_alone"),
        "noisy_refused_share": refused_share(held, f"noisy_{name}"),
        "noisy_sent_per_s_median": round(statistics.median(h[f"noisy_{name}"]["rps"] for h in held), 1),
        "noisy_late": sum(h[f"noisy_{name}"]["late"] for h in held),
    }
    if name != "open_1x" and all("quiet_beside_open_1x" in h for h in held):
        # Beside the same tenant sending at its plan rate (nothing refused): what being held adds.
        out["quiet_p99_over_beside_open_1x"] = paired_held(held, "p99_ms", beside, "quiet_beside_open_1x")
        out["quiet_rps_over_beside_open_1x"] = paired_held(held, "rps", beside, "quiet_beside_open_1x")
    return out


if __name__ == "__main__":
    main()
