"""Operator commands shared by `bookingctl` (local) and `booking-admin` (in the API image).

migrate, tokens create|list|revoke, dlq list|requeue|discard, tasks retry, audit verify,
queues [pause|resume NAME], tenants list|show|set-plan|reset-plan,
webhooks add|list|enable|disable|delete|rotate|deliveries|replay.
Each handler takes the parsed arguments and a `Settings`, prints for a human
(or JSON with --json) and returns the exit code, so both front ends stay thin.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from booking_core.config import Settings
from booking_core.messaging.contracts import QUEUES, TASKS


def who() -> str:
    """The audit actor for a command-line action: user and host."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def cmd_migrate(args, s: Settings) -> int:
    from booking_core.db.migrate import migrate

    applied = migrate(s.database_url)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_tokens(args, s: Settings) -> int:
    from booking_core import db
    from booking_core.model import tenants

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


def _when(text: str) -> datetime:
    """An ISO-8601 time for --since/--before; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _tenant_id(conn, name: str | None) -> str | None:
    if name is None:
        return None
    row = conn.execute("SELECT id::text FROM tenants WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise ValueError(f"no tenant named {name!r}")
    return row["id"]


def cmd_dlq(args, s: Settings) -> int:
    """Dead letters as recorded in Postgres: list, or requeue / discard by id or --all that match."""
    import redis

    from booking_core import db
    from booking_core.tasks import deadletters

    client = redis.Redis.from_url(s.redis_url, socket_timeout=10)
    with db.connect(s.database_url, autocommit=True) as conn:
        f = deadletters.Filter(queue=args.queue, tenant_id=_tenant_id(conn, args.tenant), error=args.error,
                               dead_since=args.since, dead_before=args.before)
        if args.dlq_cmd == "list":
            letters = deadletters.list_dead(conn, f)
            if args.json:
                print(deadletters.to_json(letters))
                return 0
            print(f"{'ID':36}  {'QUEUE':8} {'DEAD SINCE':25} {'RETRIES':7}  BOOKING / LAST ERROR")
            for d in letters:
                print(f"{d.id:36}  {d.queue:8} {d.dead_since.isoformat(timespec='seconds'):25} {d.retries:7}  "
                      f"{d.booking_id or '-'}  {(d.last_error or '')[:80]}")
            print(f"{len(letters)} dead letter(s)")
            return 0
        done = "requeued" if args.dlq_cmd == "requeue" else "discarded"
        if args.all:
            if args.ids:
                print("name dead letter ids or pass --all, not both", file=sys.stderr)
                return 2
            if args.dry_run:
                print(f"would have {done} {deadletters.count(conn, f)} dead letter(s)")
                return 0
            # A bulk job, as from the API and the console (visible there, resumed by the relay's
            # runner if this command dies), run here so that each letter is printed as it goes.
            from booking_core.ops import bulkjobs

            token = str(uuid.uuid4())
            job_id = bulkjobs.start(conn, args.dlq_cmd, f, actor=who(), claim=token)
            bulkjobs.run(conn, client, s.redis_namespace, job_id, token,
                         on_letter=lambda d: print(f"{done} {d.id} ({d.queue})"))
            job = bulkjobs.get(conn, job_id)
            print(f"{done} {job.done} dead letter(s) (bulk job {job_id}: {job.state})", file=sys.stderr)
            return 0 if job.state == "finished" else 1
        if not args.ids:
            print("name dead letter ids or pass --all", file=sys.stderr)
            return 2
        action = deadletters.requeue if args.dlq_cmd == "requeue" else deadletters.discard
        missing = []
        for i in args.ids:
            try:
                d = deadletters.find(conn, i, args.queue)
            except deadletters.DeadLetterError:
                missing.append(i)
                continue
            if args.dry_run:
                print(f"would have {done} {d.id} ({d.queue})")
                continue
            action(conn, client, s.redis_namespace, d, actor=who())
            print(f"{done} {d.id} ({d.queue})")
    for i in missing:
        print(f"no dead letter {i}", file=sys.stderr)
    return 1 if missing else 0


def cmd_tasks(args, s: Settings) -> int:
    """`tasks retry BOOKING TASK`: re-publish a dead task, with or without a dead-letter record."""
    import redis

    from booking_core import db
    from booking_core.tasks.taskretry import TaskNotDead, retry_task

    try:
        booking_id = str(uuid.UUID(args.booking_id))
    except ValueError:
        raise ValueError(f"BOOKING_ID is not a UUID: {args.booking_id[:40]!r}") from None
    client = redis.Redis.from_url(s.redis_url, socket_timeout=10)
    with db.connect(s.database_url, autocommit=True) as conn:
        try:
            sent = retry_task(conn, client, s.redis_namespace, booking_id, args.task, actor=who())
        except (TaskNotDead, LookupError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"retrying {args.task} of booking {booking_id} (message {sent})")
    return 0


def cmd_audit(args, s: Settings) -> int:
    from booking_core import db
    from booking_core.audit import chain

    with db.connect(s.database_url, autocommit=True) as conn:
        tenant_id = None
        if args.tenant:
            row = conn.execute("SELECT id::text FROM tenants WHERE name = %s", (args.tenant,)).fetchone()
            if row is None:
                print(f"no tenant named {args.tenant!r}", file=sys.stderr)
                return 2
            tenant_id = row["id"]
        reports = chain.verify(conn, tenant_id)
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


def _tenant_lines(queue: str, data: dict) -> list[str]:
    """One queue's "who is filling it" (`tenant_backlog.as_json`) as table rows, every name made printable."""
    from booking_core.model.text import printable
    from booking_core.queues.tenant_backlog import shown_name

    def name(t: dict) -> str:
        return printable(shown_name(t["tenant_id"], t["name"]))[:40]

    rows = [(name(t), t["waiting"], t["later"], t["oldest_waiting_age_seconds"]) for t in data["top_tenants"]]
    other = data["other_tenants"]
    if other["tenants"]:
        rows.append((f"(and {other['tenants']} more)", other["messages"], "", other["oldest_waiting_age_seconds"]))
    return [f"{queue:8} {n:40} {w:>8} {lt:>8} {f'{age:.0f}s' if age else '-':>8}" for n, w, lt, age in rows]


def cmd_queues(args, s: Settings) -> int:
    """`queues`: each queue running or paused (by whom, since when, why) and who is filling it (the top tenants
    by outbox backlog); `queues pause|resume NAME`."""
    import time

    from booking_core import db
    from booking_core.model.text import printable
    from booking_core.queues import pauses, tenant_backlog

    with db.connect(s.database_url, autocommit=True) as conn:
        if args.queues_cmd == "pause":
            changed = pauses.pause(conn, args.name, actor=who(), reason=args.reason)
            print(f"paused {args.name}" if changed else f"{args.name} was already paused")
            return 0
        if args.queues_cmd == "resume":
            changed = pauses.resume(conn, args.name, actor=who())
            print(f"resumed {args.name}" if changed else f"{args.name} was not paused")
            return 0
        state = pauses.state(conn)
        ranked, names = tenant_backlog.top(conn)
    now_ms = int(time.time() * 1000)
    who_fills = {q: tenant_backlog.as_json(ranked.get(q), names, now_ms) for q in state}
    if args.json:
        print(json.dumps([{"queue": q, "paused": p is not None, **(p.as_dict() if p else {}), **who_fills[q]}
                          for q, p in state.items()], indent=2))
        return 0
    print(f"{'QUEUE':8} {'STATE':8} {'SINCE':25} {'BY':30} REASON")
    for q, p in state.items():
        if p is None:
            print(f"{q:8} running")
        else:
            print(f"{q:8} {'paused':8} {p.paused_at.isoformat(timespec='seconds'):25} {printable(p.paused_by[:30]):30} "
                  f"{printable(p.reason)}")
    lines = [line for q in state for line in _tenant_lines(q, who_fills[q])]
    print("\nWho is filling each queue: tasks waiting in the outbox, due now and retrying later, and the oldest due")
    if not lines:
        print("nothing waits in the outbox")
        return 0
    print(f"{'QUEUE':8} {'TENANT':40} {'WAITING':>8} {'LATER':>8} {'OLDEST':>8}")
    print("\n".join(lines))
    return 0


def _plan_text(tp) -> str:
    p = tp.plan
    own = f"own, set by {tp.updated_by} at {tp.updated_at.isoformat(timespec='seconds')}" if tp.own else "default"
    return f"plan {p.name}: {p.rate_per_second:g}/s, burst {p.burst}, weight {p.weight} ({own})"


def cmd_tenants(args, s: Settings) -> int:
    """`tenants list|show|set-plan|reset-plan`: each tenant's plan; a change is audited in the ops chain."""
    import redis

    from booking_core import db
    from booking_core.model.plans import Plan, default_plan
    from booking_core.ops import tenant_plans

    default = default_plan(s)
    with db.connect(s.database_url, autocommit=True) as conn:
        if args.tenants_cmd == "list":
            found = tenant_plans.list_tenants(conn, default, limit=args.limit, after=args.after)
            if args.json:
                print(json.dumps([t.as_dict() for t in found], indent=2))
                return 0
            print(f"{'TENANT':32} {'PLAN':16} {'RATE/S':>9} {'BURST':>8} {'WEIGHT':>6}  OWN")
            for t in found:
                p = t.plan
                print(f"{t.tenant[:32]:32} {p.name[:16]:16} {p.rate_per_second:>9g} {p.burst:>8} {p.weight:>6}  "
                      f"{'yes' if t.own else 'no (default)'}")
            return 0
        target = tenant_plans.find(conn, args.tenant, default)
        if target is None:
            print(f"no tenant named {args.tenant[:80]!r}", file=sys.stderr)
            return 1
        if args.tenants_cmd == "show":
            print(json.dumps(target.as_dict(), indent=2) if args.json else f"{target.tenant}: {_plan_text(target)}")
            return 0
        if args.tenants_cmd == "set-plan":
            base = target.plan
            plan = Plan(args.name or (base.name if target.own else "custom"),
                        base.rate_per_second if args.rate is None else args.rate,
                        base.burst if args.burst is None else args.burst,
                        base.weight if args.weight is None else args.weight)
            now, changed = tenant_plans.set_plan(conn, target, plan, actor=who(), default=default)
        else:
            now, changed = tenant_plans.reset_plan(conn, target, actor=who(), default=default)
    if changed:
        tenant_plans.announce(redis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5))
    print(f"{now.tenant}: {_plan_text(now)}" + ("" if changed else " (unchanged)"))
    return 0


def add_commands(sub: argparse._SubParsersAction, webhooks_extra: Callable | None = None) -> None:
    """Register the operator commands on a subparsers object (`func` = handler).

    `webhooks_extra(subparsers)` adds a front end's own `webhooks` subcommands.
    """
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
        d.add_argument("--tenant", help="only this tenant's (by name)")
        d.add_argument("--error", help="only those whose final error contains this text (any case)")
        d.add_argument("--since", type=_when, help="only those dead at or after this ISO-8601 time")
        d.add_argument("--before", type=_when, help="only those dead before this ISO-8601 time")
        if name == "list":
            d.add_argument("--json", action="store_true")
        else:
            d.add_argument("ids", nargs="*")
            d.add_argument("--all", action="store_true", help="every open dead letter that matches the filters")
            d.add_argument("--dry-run", action="store_true", help="only say how many would be affected")
    dlq.set_defaults(func=cmd_dlq)

    tasks = sub.add_parser("tasks", help="retry a booking's dead task")
    tsk = tasks.add_subparsers(dest="tasks_cmd", required=True)
    r = tsk.add_parser("retry", help="re-publish a dead task through the outbox, with fresh retries")
    r.add_argument("booking_id")
    r.add_argument("task", choices=TASKS)
    tasks.set_defaults(func=cmd_tasks)

    aud = sub.add_parser("audit", help="verify the audit trail's hash chains")
    asub = aud.add_subparsers(dest="audit_cmd", required=True)
    v = asub.add_parser("verify")
    v.add_argument("--tenant")
    v.add_argument("--json", action="store_true")
    aud.set_defaults(func=cmd_audit)

    que = sub.add_parser("queues", help="list queues running or paused; pause or resume one")
    que.add_argument("--json", action="store_true")
    qsub = que.add_subparsers(dest="queues_cmd")
    p = qsub.add_parser("pause", help="stop workers starting this queue's messages (they wait in Redis)")
    p.add_argument("name", choices=QUEUES)
    p.add_argument("--reason", default="", help="shown to other operators (at most 200 characters)")
    qsub.add_parser("resume", help="let workers take this queue's messages again").add_argument(
        "name", choices=QUEUES)
    que.set_defaults(func=cmd_queues)

    ten = sub.add_parser("tenants", help="tenants' plans: list, show, set or reset one (audited)")
    tsub = ten.add_subparsers(dest="tenants_cmd", required=True)
    ls = tsub.add_parser("list", help="tenants by name with their plans")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--limit", type=int, default=1000)
    ls.add_argument("--after", help="only tenants whose name sorts after this one (paging)")
    sh = tsub.add_parser("show", help="one tenant's plan")
    sh.add_argument("tenant", help="name or id")
    sh.add_argument("--json", action="store_true")
    sp = tsub.add_parser("set-plan", help="give a tenant a plan of its own; fields not given keep their value")
    sp.add_argument("tenant", help="name or id")
    sp.add_argument("--name", help="the plan's name (a-z, 0-9, '-', '_'); default: the current one, or 'custom'")
    sp.add_argument("--rate", type=float, help="bookings admitted per second, sustained")
    sp.add_argument("--burst", type=int, help="bookings admitted at once after a quiet spell")
    sp.add_argument("--weight", type=int, help="share of the workers while several tenants wait")
    tsub.add_parser("reset-plan", help="put a tenant back on the default plan").add_argument(
        "tenant", help="name or id")
    ten.set_defaults(func=cmd_tenants)

    from booking_core.ops import webhooks

    webhooks.add_commands(sub, webhooks_extra)


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
