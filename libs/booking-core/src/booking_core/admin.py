"""Operator commands shared by `bookingctl` (local) and `booking-admin` (in the API image).

migrate, tokens create|list|revoke, dlq list|requeue|discard, audit verify.
Each handler takes the parsed arguments and a `Settings`, prints for a human
(or JSON with --json) and returns the exit code, so both front ends stay thin.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from collections.abc import Callable

from booking_core.config import Settings
from booking_core.contracts import QUEUES


def who() -> str:
    """The audit actor for a command-line action: user and host."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def cmd_migrate(args, s: Settings) -> int:
    from booking_core.migrate import migrate

    applied = migrate(s.database_url)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_tokens(args, s: Settings) -> int:
    from booking_core import db, tenants

    with db.connect(s.database_url, autocommit=True) as conn:
        if args.tokens_cmd == "create":
            tenant = tenants.ensure_tenant(conn, args.tenant)
            made = tenants.create_token(conn, tenant["id"], admin=args.admin, label=args.label)
            print(made["token"])
            print(f"token id {made['id']} for tenant {args.tenant}{' (admin)' if args.admin else ''}; "
                  "shown once, store it now", file=sys.stderr)
        elif args.tokens_cmd == "list":
            print(f"{'ID':36}  {'TENANT':16} {'PREFIX':10} ADMIN  STATUS   LABEL")
            for r in tenants.list_tokens(conn, args.tenant):
                status = "revoked" if r["revoked_at"] else "active"
                print(f"{r['id']:36}  {r['tenant'][:16]:16} {r['prefix']:10} {'yes' if r['admin'] else 'no':5}  "
                      f"{status:8} {r['label']}")
        elif not tenants.revoke_token(conn, args.id):
            print(f"no active token with id {args.id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.id}")
    return 0


def cmd_dlq(args, s: Settings) -> int:
    import redis

    from booking_core import db, deadletters

    client = redis.Redis.from_url(s.redis_url, socket_timeout=10)
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
        print("name dead letter ids or pass --all", file=sys.stderr)
        return 2
    by_id = {d.id: d for d in letters}
    chosen = letters if args.all else [by_id[i] for i in args.ids if i in by_id]
    missing = [] if args.all else [i for i in args.ids if i not in by_id]
    action = deadletters.requeue if args.dlq_cmd == "requeue" else deadletters.discard
    done = "requeued" if args.dlq_cmd == "requeue" else "discarded"
    with db.connect(s.database_url, autocommit=True) as conn:
        for d in chosen:
            action(conn, client, s.redis_namespace, d, actor=who())
            print(f"{done} {d.id} ({d.queue})")
    for i in missing:
        print(f"no dead letter {i}", file=sys.stderr)
    return 1 if missing else 0


def cmd_audit(args, s: Settings) -> int:
    from booking_core import audit, db

    with db.connect(s.database_url, autocommit=True) as conn:
        tenant_id = None
        if args.tenant:
            row = conn.execute("SELECT id::text FROM tenants WHERE name = %s", (args.tenant,)).fetchone()
            if row is None:
                print(f"no tenant named {args.tenant!r}", file=sys.stderr)
                return 2
            tenant_id = row["id"]
        reports = audit.verify(conn, tenant_id)
    if args.json:
        print(json.dumps([{"tenant": r.tenant, "entries": r.entries, "ok": r.ok,
                           "problems": [str(p) for p in r.problems]} for r in reports], indent=2))
    else:
        for r in reports:
            print(f"tenant {r.tenant}: {r.entries} entries, "
                  f"{'intact' if r.ok else f'BROKEN ({r.problem_count} problems)'}")
            for p in r.problems:
                print(f"  {p}")
    return 0 if all(r.ok for r in reports) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the operator commands on a subparsers object (`func` = handler)."""
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    tok = sub.add_parser("tokens", help="create, list, revoke API tokens")
    tsub = tok.add_subparsers(dest="tokens_cmd", required=True)
    c = tsub.add_parser("create", help="create a token (printed once)")
    c.add_argument("--tenant", required=True)
    c.add_argument("--admin", action="store_true", help="may use the /api/v1/ops endpoints")
    c.add_argument("--label", default="")
    tsub.add_parser("list").add_argument("--tenant")
    tsub.add_parser("revoke").add_argument("id")
    tok.set_defaults(func=cmd_tokens)

    dlq = sub.add_parser("dlq", help="list, requeue, discard dead letters")
    dsub = dlq.add_subparsers(dest="dlq_cmd", required=True)
    for name in ("list", "requeue", "discard"):
        d = dsub.add_parser(name)
        d.add_argument("--queue", choices=QUEUES)
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


def run(args, settings_of: Callable[[argparse.Namespace], Settings]) -> int:
    """Call the chosen handler with settings resolved by the front end."""
    try:
        return args.func(args, settings_of(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> None:
    """`booking-admin`: the operator commands, configured by DATABASE_URL / REDIS_URL."""
    parser = argparse.ArgumentParser(prog="booking-admin", description=__doc__)
    add_commands(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    sys.exit(run(args, lambda _args: Settings.from_env()))
