"""`bookingctl`: run the platform locally and operate it (tokens, dead letters, audit).

Every command but `up` finds the servers through DATABASE_URL / REDIS_URL or,
when those are unset, through the run file of the `bookingctl up` running on
the same --data-dir.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from booking_core.config import Settings
from booking_core.ops import admin
from booking_settings.boot import boot
from bookingctl.datadir import DataDirBusy, read_run_file
from bookingctl.settings import CtlSettings, check_platform


def _settings(args) -> Settings:
    """Settings from the environment, else from the running `up` on --data-dir."""
    env = dict(os.environ)
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        found = read_run_file(Path(args.data_dir))
        if found is None:
            sys.exit(f"bookingctl: no platform is running on {args.data_dir} and DATABASE_URL/REDIS_URL "
                     "are not set; start `bookingctl up` first or set them")
        for key in ("DATABASE_URL", "REDIS_URL", "SMTP_URL"):
            if not env.get(key):
                env[key] = found.get(key, "")
    # The webhook settings of the `up` on --data-dir, unless given (services.webhooks_env).
    from bookingctl.services import webhooks_env

    key_file = Path(args.data_dir) / "webhooks-key"
    if env.get("BOOKING_WEBHOOKS_KEY") or key_file.exists():
        env.update(webhooks_env(Path(args.data_dir), env))
    return boot(lambda: Settings.from_env(env), "bookingctl")


def cmd_up(args, ctl: CtlSettings) -> int:
    from booking_embedded import linux_only_problem

    problem = linux_only_problem(sys.platform)
    if problem:
        print(f"bookingctl: {problem}", file=sys.stderr)
        return 2
    from bookingctl.autoscale import load_policies
    from bookingctl.platform import Platform, PlatformConfig

    environ = dict(os.environ)
    # Every process `up` starts reads this environment: a bad variable stops `up` here, before any server.
    boot(lambda: check_platform(environ), "bookingctl")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        policies = None if args.no_autoscale else load_policies(args.policy, args.scale)
    except (ValueError, OSError) as e:
        print(f"bookingctl: {e}", file=sys.stderr)
        return 2
    platform = Platform(PlatformConfig(data_dir=Path(args.data_dir), port=args.port, env=environ,
                                       autoscale=policies, workers_cpu_idle=ctl.workers_cpu_idle))
    try:
        platform.start()
    except DataDirBusy as e:
        print(f"bookingctl: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as e:
        print(f"bookingctl: could not start: {e}", file=sys.stderr)
        return 1
    d = platform.data_dir
    scaling = "off (one process per queue)" if policies is None else ", ".join(
        f"{q} {p.min_replica_count}-{p.max_replica_count}" for q, p in policies.items())
    metrics = "\n                ".join(f"{name:18} {url}" for name, url in platform.metrics_urls.items())
    print(f"""
Booking platform is up.
  API:          {platform.api_url}  (OpenAPI: {platform.api_url}/api/v1/openapi.json)
  Ops console:  {platform.events_url}/ops/  (sign in with the admin token)
  Admin token:  {platform.admin_token}
                (also in {d / 'admin-token'}; tenant "demo")
  Mail sink:    {d / 'mail'}/*.eml
  Logs:         {d / 'logs'}/
  Processes:    {', '.join(f'{n} (pid {c.pid})' for n, c in platform.children.items())}
  Autoscaling:  {scaling}
  Metrics:      {metrics}
Try:
  curl -s -X POST {platform.api_url}/api/v1/bookings -H "Authorization: Bearer $(cat {d / 'admin-token'})" \\
    -H 'Content-Type: application/json' \\
    -d '{{"customer": {{"name": "Ada", "email": "ada@example.com"}}, "item": "Room 1", \
"check_in": "2027-01-01", "check_out": "2027-01-03", "amount": "200.00", "currency": "EUR"}}'
Press Ctrl-C to stop everything.
""", flush=True)
    platform.run_forever()
    print("bookingctl: stopped", flush=True)
    return 0


def parser(data_dir: str = ".data") -> argparse.ArgumentParser:
    """The command line; `data_dir` is --data-dir's default (BOOKING_DATA_DIR)."""
    p = argparse.ArgumentParser(prog="bookingctl", description=__doc__)
    p.add_argument("--data-dir", default=data_dir,
                   help="local data dir (default .data/)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run the whole platform in the foreground")
    up.add_argument("--data-dir", default=argparse.SUPPRESS)
    up.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    up.add_argument("--scale", action="append", metavar="QUEUE=MIN:MAX",
                    help="worker processes per queue (default email=1:4, invoice=1:4, audit=1:2)")
    up.add_argument("--policy", type=Path, metavar="FILE",
                    help='JSON scaling policies per queue with QueueScaler field names, '
                         'e.g. {"invoice": {"maxReplicaCount": 6}}')
    up.add_argument("--no-autoscale", action="store_true", help="run exactly one worker process per queue")
    up.set_defaults(func=cmd_up)
    from bookingctl.listen import add_listen

    admin.add_commands(sub, webhooks_extra=add_listen)
    return p


def main(argv: list[str] | None = None) -> None:
    # pgserver's platformdirs warns about XDG_RUNTIME_DIR on servers; it is irrelevant here.
    warnings.filterwarnings("ignore", module="platformdirs")
    ctl = boot(lambda: CtlSettings.from_env(os.environ), "bookingctl")
    args = parser(ctl.data_dir).parse_args(argv)
    if args.func is cmd_up:
        sys.exit(cmd_up(args, ctl))
    sys.exit(admin.run(args, _settings))
