"""`bookingctl`: run the platform locally and operate it (tokens, dead letters, audit).

Every command but `up` finds the servers through DATABASE_URL / REDIS_URL or,
when those are unset, through the run file of the `bookingctl up` running on
the same --data-dir.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import socket
import sys
from pathlib import Path

from booking_core.config import Settings
from bookingctl.datadir import DataDirBusy, read_run_file


def _settings(args) -> Settings:
    """Settings from the environment, else from the running `up` on --data-dir."""
    env = dict(os.environ)
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        found = read_run_file(Path(args.data_dir))
        if found is None:
            sys.exit(f"bookingctl: no platform is running on {args.data_dir} and DATABASE_URL/REDIS_URL "
                     "are not set; start `bookingctl up` first or set them")
        for key in ("DATABASE_URL", "REDIS_URL", "SMTP_URL"):
            env.setdefault(key, found.get(key, ""))
            if not env[key]:
                env[key] = found.get(key, "")
    return Settings.from_env(env)


def _who() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def cmd_up(args) -> int:
    from bookingctl.platform import Platform, PlatformConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    platform = Platform(PlatformConfig(data_dir=Path(args.data_dir), port=args.port))
    try:
        platform.start()
    except DataDirBusy as e:
        print(f"bookingctl: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as e:
        print(f"bookingctl: could not start: {e}", file=sys.stderr)
        return 1
    d = platform.data_dir
    print(f"""
Booking platform is up.
  API:          {platform.api_url}  (OpenAPI: {platform.api_url}/api/v1/openapi.json)
  Admin token:  {platform.admin_token}
                (also in {d / 'admin-token'}; tenant "demo")
  Mail sink:    {d / 'mail'}/*.eml
  Logs:         {d / 'logs'}/
  Processes:    {', '.join(f'{n} (pid {c.pid})' for n, c in platform.children.items())}
Try:
  curl -s -X POST {platform.api_url}/api/v1/bookings -H "Authorization: Bearer $(cat {d / 'admin-token'})" \\
    -H 'Content-Type: application/json' -d '{{"customer": {{"name": "Ada", "email": "ada@example.com"}}, \\
    "item": "Room 1", "check_in": "2027-01-01", "check_out": "2027-01-03", "amount": "200.00", "currency": "EUR"}}'
Press Ctrl-C to stop everything.
""", flush=True)
    platform.run_forever()
    print("bookingctl: stopped", flush=True)
    return 0


def cmd_migrate(args) -> int:
    from booking_core.migrate import migrate

    applied = migrate(_settings(args).database_url)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_tokens(args) -> int:
    from booking_core import db, tenants

    with db.connect(_settings(args).database_url, autocommit=True) as conn:
        if args.tokens_cmd == "create":
            tenant = tenants.ensure_tenant(conn, args.tenant)
            made = tenants.create_token(conn, tenant["id"], admin=args.admin, label=args.label)
            print(made["token"])
            print(f"token id {made['id']} for tenant {args.tenant}{' (admin)' if args.admin else ''}; "
                  "shown once, store it now", file=sys.stderr)
        elif args.tokens_cmd == "list":
            rows = tenants.list_tokens(conn, args.tenant)
            print(f"{'ID':36}  {'TENANT':16} {'PREFIX':10} ADMIN  STATUS   LABEL")
            for r in rows:
                status = "revoked" if r["revoked_at"] else "active"
                print(f"{r['id']:36}  {r['tenant'][:16]:16} {r['prefix']:10} {'yes' if r['admin'] else 'no ':5}  "
                      f"{status:8} {r['label']}")
        elif args.tokens_cmd == "revoke":
            if not tenants.revoke_token(conn, args.id):
                print(f"bookingctl: no active token with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
    return 0


def cmd_dlq(args) -> int:
    import redis

    from booking_core import db, deadletters

    s = _settings(args)
    client = redis.Redis.from_url(s.redis_url)
    letters = deadletters.list_dead(client, s.redis_namespace, args.queue)
    if args.dlq_cmd == "list":
        if args.json:
            print(deadletters.to_json(letters))
            return 0
        print(f"{'ID':36}  {'QUEUE':8} {'DEAD SINCE':25} {'RETRIES':7}  BOOKING / LAST ERROR")
        for d in letters:
            print(f"{d.id:36}  {d.queue:8} {d.dead_since.isoformat(timespec='seconds'):25} {d.retries:7}  "
                  f"{d.booking_id or '-'}  {(d.last_error or '')[:80]}")
        print(f"{len(letters)} dead letter(s)")
        return 0
    if not args.all and not args.ids:
        print("bookingctl: name dead letter ids or pass --all", file=sys.stderr)
        return 2
    chosen = letters if args.all else []
    missing = []
    if not args.all:
        by_id = {d.id: d for d in letters}
        for i in args.ids:
            (chosen.append(by_id[i]) if i in by_id else missing.append(i))
    action = deadletters.requeue if args.dlq_cmd == "requeue" else deadletters.discard
    with db.connect(s.database_url, autocommit=True) as conn:
        for d in chosen:
            action(conn, client, s.redis_namespace, d, actor=_who())
            print(f"{args.dlq_cmd}d {d.id} ({d.queue})")
    for i in missing:
        print(f"bookingctl: no dead letter {i}", file=sys.stderr)
    return 1 if missing else 0


def cmd_audit(args) -> int:
    from booking_core import audit, db

    with db.connect(_settings(args).database_url, autocommit=True) as conn:
        report = audit.verify(conn, args.tenant)
    problems = report.problems if hasattr(report, "problems") else report
    if args.json:
        print(json.dumps([str(p) for p in problems], indent=2))
    for p in problems:
        print(f"BROKEN: {p}")
    if not problems:
        print(f"audit trail intact{' for ' + args.tenant if args.tenant else ''}")
    return 1 if problems else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bookingctl", description=__doc__)
    p.add_argument("--data-dir", default=os.environ.get("BOOKING_DATA_DIR", ".data"),
                   help="local data dir (default .data/)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run the whole platform in the foreground")
    up.add_argument("--data-dir", default=argparse.SUPPRESS)
    up.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    tok = sub.add_parser("tokens", help="create, list, revoke API tokens")
    tsub = tok.add_subparsers(dest="tokens_cmd", required=True)
    c = tsub.add_parser("create")
    c.add_argument("--tenant", required=True)
    c.add_argument("--admin", action="store_true")
    c.add_argument("--label", default="")
    lst = tsub.add_parser("list")
    lst.add_argument("--tenant")
    r = tsub.add_parser("revoke")
    r.add_argument("id")
    tok.set_defaults(func=cmd_tokens)

    dlq = sub.add_parser("dlq", help="list, requeue, discard dead letters")
    dsub = dlq.add_subparsers(dest="dlq_cmd", required=True)
    for name in ("list", "requeue", "discard"):
        d = dsub.add_parser(name)
        d.add_argument("--queue", choices=("email", "invoice", "audit"))
        if name == "list":
            d.add_argument("--json", action="store_true")
        else:
            d.add_argument("ids", nargs="*")
            d.add_argument("--all", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    aud = sub.add_parser("audit", help="verify the audit trail's hash chains")
    asub = aud.add_subparsers(dest="audit_cmd", required=True)
    v = asub.add_parser("verify")
    v.add_argument("--tenant")
    v.add_argument("--json", action="store_true")
    aud.set_defaults(func=cmd_audit)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.func(args))
