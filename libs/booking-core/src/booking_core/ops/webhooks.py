"""`webhooks ...`: a tenant's webhook endpoints from the command line (bookingctl and booking-admin).

The same operations as /api/v1/webhooks, for the operator: on the tenant named
by --tenant (default `demo`, bookingctl's own).  A secret is printed only by
`add` and `rotate`; input is checked by the same rules as the API's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime

from booking_core.config import Settings
from booking_core.webhooks import deliveries, endpoints
from booking_core.webhooks.payload import EVENT_TYPES, message_id
from booking_core.webhooks.sealing import Sealer


def _tenant(conn, name: str) -> str:
    row = conn.execute("SELECT id::text FROM tenants WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise ValueError(f"no tenant named {name[:60]!r}")
    return row["id"]


def _print_endpoint(row: dict, secret: str | None = None) -> None:
    state = "enabled" if row["enabled"] else f"disabled ({row['disabled_reason']})" if row["disabled_reason"] \
        else "disabled"
    print(f"{row['id']}  {state}  {row['url']}")
    if row["event_types"]:
        print(f"  events: {', '.join(row['event_types'])}")
    if row["failing_since"]:
        print(f"  failing since {row['failing_since'].isoformat(timespec='seconds')}")
    if secret:
        print(f"  secret: {secret}   (shown only now)")
    if row["previous_secret_until"]:
        print(f"  previous secret signs too until {row['previous_secret_until'].isoformat(timespec='seconds')}")


def cmd_webhooks(args, s: Settings) -> int:
    from booking_core import db
    from booking_core.ops.admin import who  # admin registers these commands: imported here, not at the top

    cmd = args.webhooks_cmd
    with db.connect(s.database_url, autocommit=True) as conn:
        tenant = _tenant(conn, args.tenant)
        if cmd == "add":
            fields = endpoints.check({"url": args.url, "description": args.description,
                                      "event_types": args.event_type or []}, partial=False,
                                     allowed=s.webhooks_allowed_networks)
            row, secret = endpoints.create(conn, Sealer(list(s.webhooks_keys)), tenant, fields)
            _print_endpoint(row, secret)
            return 0
        if cmd == "list":
            rows = endpoints.list_(conn, tenant)
            if args.json:
                print(json.dumps(rows, indent=2, default=str))
            for row in [] if args.json else rows:
                _print_endpoint(row)
            return 0
        if cmd in ("enable", "disable"):
            row = endpoints.update(conn, tenant, args.id, {"enabled": cmd == "enable"})
            if row is None:
                raise _no_endpoint(args)
            _print_endpoint(row)
            return 0
        if cmd == "delete":
            if not endpoints.delete(conn, tenant, args.id):
                raise _no_endpoint(args)
            print(f"deleted {args.id}")
            return 0
        if cmd == "rotate":
            overlap = s.webhooks_rotation_overlap_seconds if args.overlap is None else args.overlap
            done = endpoints.rotate(conn, Sealer(list(s.webhooks_keys)), tenant, args.id, overlap_seconds=overlap)
            if done is None:
                raise _no_endpoint(args)
            _print_endpoint(*done)
            return 0
        if cmd == "deliveries":
            if endpoints.get(conn, tenant, args.id) is None:
                raise _no_endpoint(args)
            rows = deliveries.page(conn, tenant, args.id, state=args.state, limit=args.limit)
            print(f"{'DELIVERY':36} {'EVENT':22} {'STATE':9} {'TRIES':5} {'STATUS':6} {'NEXT':25} WEBHOOK-ID")
            for r in rows:
                nxt = r["next_attempt_at"].isoformat(timespec="seconds") if r["next_attempt_at"] else "-"
                print(f"{r['id']:36} {r['event_type']:22} {r['state']:9} {r['attempts']:5} "
                      f"{r['last_status'] or '-'!s:6} {nxt:25} {message_id(r['event_id'])}")
            return 0
        if cmd == "replay":
            if args.since is None:
                outcome = deliveries.replay(conn, tenant, args.id, actor=who())
                if outcome is None:
                    raise ValueError(f"no delivery {args.id[:40]} of tenant {args.tenant[:60]}")
                print("replayed" if outcome == "replayed" else "still being tried: nothing to replay")
                return 0 if outcome == "replayed" else 1
            if endpoints.get(conn, tenant, args.id) is None:
                raise _no_endpoint(args)
            n = deliveries.replay_since(conn, tenant, args.id, args.since, dry_run=args.dry_run, actor=who())
            print(f"{n} dead deliveries {'would be' if args.dry_run else 'were'} replayed")
            return 0
    raise ValueError(f"unknown webhooks command {cmd}")


def _no_endpoint(args) -> ValueError:
    """The error for an endpoint id the tenant does not have; both values cut short, as typed text."""
    return ValueError(f"no endpoint {args.id[:40]} of tenant {args.tenant[:60]}")


def _when(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2027-01-01T00:00:00+00:00")
    return when


def add_commands(sub: argparse._SubParsersAction, extra: Callable | None = None) -> None:
    """Register `webhooks`; `extra(wsub)` adds a front end's own subcommands (bookingctl's `listen`)."""
    hooks = sub.add_parser("webhooks", help="a tenant's webhook endpoints: add, list, rotate, replay, ...")
    hooks.add_argument("--tenant", default="demo", help="the tenant, by name (default demo)")
    wsub = hooks.add_subparsers(dest="webhooks_cmd", required=True)
    a = wsub.add_parser("add", help="add an endpoint (its secret is printed once)")
    a.add_argument("url")
    a.add_argument("--description", default="")
    a.add_argument("--event-type", action="append", choices=EVENT_TYPES, help="only these (repeat); default all")
    wsub.add_parser("list").add_argument("--json", action="store_true")
    for name in ("enable", "disable", "delete"):
        wsub.add_parser(name).add_argument("id")
    r = wsub.add_parser("rotate", help="a new secret; the old one signs too during the overlap")
    r.add_argument("id")
    r.add_argument("--overlap", type=int, help="seconds (default BOOKING_WEBHOOKS_ROTATION_OVERLAP_SECONDS)")
    d = wsub.add_parser("deliveries", help="an endpoint's delivery log, newest first")
    d.add_argument("id")
    d.add_argument("--state", choices=deliveries.STATES)
    d.add_argument("--limit", type=int, default=50)
    p = wsub.add_parser("replay", help="replay one delivery (its id), or with --since an endpoint's dead ones")
    p.add_argument("id", help="a delivery id; with --since, an endpoint id")
    p.add_argument("--since", type=_when, help="every dead delivery of the endpoint created since then")
    p.add_argument("--dry-run", action="store_true", help="with --since: only count")
    hooks.set_defaults(func=cmd_webhooks)
    if extra is not None:
        extra(wsub)


# -- the ops console's reads (every tenant's endpoints; an operator acts on any of them) -------------

#: Endpoints shown on the console's webhooks page: those failing first, then by tenant.
CONSOLE_LIMIT = 500


def console_endpoints(conn, *, limit: int = CONSOLE_LIMIT) -> list[dict]:
    """Live endpoints of every tenant with their tenant's name and delivery counts; never a secret."""
    return conn.execute(
        "SELECT e.id::text AS id, t.name AS tenant, e.url, e.enabled, e.disabled_reason, e.failing_since,"
        " (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'dead') AS dead,"
        " (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id"
        "   AND d.state IN ('pending', 'retrying')) AS open"
        " FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id WHERE e.deleted_at IS NULL"
        " ORDER BY e.failing_since IS NULL, e.enabled, t.name, e.created_at, e.id LIMIT %s", (limit,)).fetchall()


def console_endpoint(conn, endpoint_id: str, *, state: str | None = None) -> tuple[dict, list[dict]] | None:
    """(the endpoint with its tenant's name, its newest deliveries), or None when there is no such live endpoint."""
    found = conn.execute(
        "SELECT e.tenant_id::text AS tenant_id, t.name AS tenant FROM webhook_endpoints e"
        " JOIN tenants t ON t.id = e.tenant_id WHERE e.id::text = %s AND e.deleted_at IS NULL",
        (str(endpoint_id),)).fetchone()
    if found is None:
        return None
    row = endpoints.get(conn, found["tenant_id"], endpoint_id)
    return {**row, "tenant": found["tenant"]}, deliveries.page(conn, found["tenant_id"], endpoint_id, state=state)


def console_replay(conn, delivery_id: str, *, actor: str) -> tuple[str, str] | None:
    """Replay one delivery of any tenant, audited as `actor`: ("replayed" or "open", its endpoint's id), or None."""
    found = conn.execute("SELECT tenant_id::text AS tenant_id, endpoint_id::text AS endpoint_id"
                         " FROM webhook_deliveries WHERE id::text = %s", (str(delivery_id),)).fetchone()
    if found is None:
        return None
    outcome = deliveries.replay(conn, found["tenant_id"], delivery_id, actor=actor)
    return None if outcome is None else (outcome, found["endpoint_id"])
