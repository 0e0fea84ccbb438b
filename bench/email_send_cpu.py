"""What one confirmation email costs the email worker in CPU: compose + SMTP, before and after.

Two implementations of the worker's compose-and-send step, alternated within each
round (the order swapped every round) so both see the same machine:

- `before`: `compose.py` and `send.py` as they were at `--baseline` (read from git):
  the message built through the email package's full API and flattened twice (to
  check the headers, then by `smtplib.send_message`), a new SMTP session per email
  (name lookup, connect, greeting, EHLO, QUIT);
- `now`: the working tree's, as `actors.py` calls it: static headers parsed once,
  one flatten, the checked bytes sent on a kept session (`send.sessions`).

Each round sends `--emails` confirmations from `--threads` threads (a worker
process's Dramatiq threads share one GIL, as here) to the real SMTP sink
(`booking_embedded.EmbeddedSmtp`, a separate process on 127.0.0.1).  Reported
per implementation: the median over rounds of this process's CPU per email
(all threads, `time.process_time`), the same for compose alone (one thread, no
I/O), the sink's CPU per email (from /proc: its side of the sessions), and
now ÷ before.

`--actor-emails N` (default 200; 0 skips it) adds the whole actor,
`send_confirmation_email.fn` with its Postgres statements (lock, already-sent check,
load, record with the audit append and the task's done state) against embedded
Postgres and Redis: the worker process's CPU per email with the actor's `confirmation`
and `send` as they are, and with them swapped for the baseline's (what the actor
called before), alternated the same way.  Postgres's own CPU is not counted (its
statements did not change).  The machine is shared: read the ratios, not the
absolute figures.

    .venv/bin/python bench/email_send_cpu.py [--rounds 7] [--emails 400] [--threads 4] \
        [--actor-emails 200] [--baseline b2a3a32]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType, SimpleNamespace

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report  # bench/report.py: a script's own folder is on sys.path

from booking_embedded import EmbeddedSmtp, free_port
from email_worker import compose, send
from email_worker.smtp_url import parse_smtp_url

ROOT = Path(__file__).resolve().parent.parent
SRC = "services/email-worker/src/email_worker"
MAIL_FROM = "Bookings <bookings@hotel.example>"
#: The commit before the worker kept sessions and composed with cached headers.
BASELINE = "b2a3a32"


def baseline(rev: str, name: str) -> ModuleType:
    """`email_worker.<name>` as it was at `rev`, loaded beside today's as `baseline_<name>`."""
    code = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{SRC}/{name}.py"],
                          check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"baseline_{name}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(code, f"{rev}:{SRC}/{name}.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def booking(n: int) -> dict:
    """A typical booking row (ASCII name, short item), distinct per email."""
    return {"id": str(uuid.UUID(int=n + 1)), "customer_name": "Ada Lovelace",
            "customer_email": f"guest{n}@example.test", "item": f"Room {n % 40}",
            "check_in": date(2030, 5, 1), "check_out": date(2030, 5, 4),
            "amount": Decimal("249.90"), "currency": "EUR"}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_threads(work: Callable[[int], None], emails: int, threads: int) -> None:
    """Call `work(n)` for n in range(emails), spread over `threads` threads."""
    errors: list[BaseException] = []

    def part(k: int) -> None:
        try:
            for n in range(k, emails, threads):
                work(n)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=part, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def actor_cpu(args, sink_url: str, old_compose: ModuleType, old_send: ModuleType) -> dict[str, list[float]]:
    """The worker process's CPU per email of the whole actor, `now` and `before`, per round."""
    from booking_core import db
    from booking_core.messaging.contracts import EMAIL
    from booking_core.model import bookings, tenants

    def before_confirmation(booking: dict, *, mail_from: str) -> SimpleNamespace:
        """What the actor did before: compose the message, read its Message-ID and recipient back."""
        message = old_compose.confirmation_message(booking, mail_from=mail_from)
        return SimpleNamespace(envelope=message, message_id=message["Message-ID"],
                               recipient=message["To"].addresses[0].addr_spec)

    out: dict[str, list[float]] = {"before": [], "now": []}
    with loadgen.embedded_settings() as settings:
        for var, value in {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                           "SMTP_URL": sink_url, "BOOKING_MAIL_FROM": MAIL_FROM}.items():
            os.environ[var] = value
        actors = importlib.import_module("email_worker.actors")
        calls = {"now": (actors.confirmation, actors.send),
                 "before": (before_confirmation, old_send.send)}
        with db.connect(settings.database_url) as conn, conn.transaction():
            tenant = tenants.ensure_tenant(conn, f"bench-{uuid.uuid4().hex[:8]}")["id"]
        try:
            for r in range(args.rounds + 1):  # the first round warms up and is not counted
                order = list(calls) if r % 2 == 0 else list(calls)[::-1]
                for mode in order:
                    with db.connect(settings.database_url) as conn, conn.transaction():
                        ids = [bookings.create(conn, tenant_id=tenant, actor="bench", booking=bookings.NewBooking(
                            "Ada Lovelace", f"guest{n}@example.test", f"Room {n % 40}", date(2030, 5, 1),
                            date(2030, 5, 4), Decimal("249.90"), "EUR"))["id"]
                            for n in range(args.actor_emails)]
                    actors.confirmation, actors.send = calls[mode]
                    start = time.process_time()
                    run_threads(lambda n, ids=ids: actors.send_confirmation_email.fn(
                        task=EMAIL.task, booking_id=ids[n], tenant_id=tenant), len(ids), args.threads)
                    if r:
                        out[mode].append((time.process_time() - start) / len(ids))
        finally:
            actors.confirmation, actors.send = calls["now"]
            actors.broker.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--emails", type=int, default=400)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--actor-emails", type=int, default=200, help="emails per mode and round through the actor")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the `before` implementation")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "email_send_cpu.json")
    args = ap.parse_args()

    old_compose, old_send = baseline(args.baseline, "compose"), baseline(args.baseline, "send")

    def before(n: int, url) -> None:
        old_send.send(old_compose.confirmation_message(booking(n), mail_from=MAIL_FROM), url)

    def now(n: int, url) -> None:
        send.send(compose.confirmation(booking(n), mail_from=MAIL_FROM).envelope, url)

    composers = {"before": lambda n: old_compose.confirmation_message(booking(n), mail_from=MAIL_FROM),
                 "now": lambda n: compose.confirmation(booking(n), mail_from=MAIL_FROM)}
    senders = {"before": before, "now": now}
    load = [os.getloadavg()]
    per_email: dict[str, list[float]] = {m: [] for m in senders}
    compose_only: dict[str, list[float]] = {m: [] for m in senders}
    sink_cpu: dict[str, list[float]] = {m: [] for m in senders}
    with tempfile.TemporaryDirectory() as tmp:
        mail = Path(tmp) / "mail"
        mail.mkdir()
        sink = EmbeddedSmtp(mail, free_port(), Path(tmp) / "logs")
        sink.start()
        try:
            url = parse_smtp_url(sink.url)
            pid = sink.child.proc.pid
            for mode in senders:  # warm-up: imports, caches, the first sessions
                run_threads(lambda n, mode=mode: senders[mode](n, url), 20, args.threads)
            for r in range(args.rounds):
                order = list(senders) if r % 2 == 0 else list(senders)[::-1]
                for mode in order:
                    start, served = time.process_time(), process_cpu(pid)
                    run_threads(lambda n, mode=mode: senders[mode](n, url), args.emails, args.threads)
                    per_email[mode].append((time.process_time() - start) / args.emails)
                    sink_cpu[mode].append((process_cpu(pid) - served) / args.emails)
                    start = time.process_time()
                    for n in range(args.emails):
                        composers[mode](n)
                    compose_only[mode].append((time.process_time() - start) / args.emails)
                    for f in mail.glob("*.eml"):
                        f.unlink()
            sessions_opened = send.sessions.opened
            actor = actor_cpu(args, sink.url, old_compose, old_send) if args.actor_emails else None
        finally:
            send.sessions.close_all()
            sink.stop()
    load.append(os.getloadavg())

    def us(values: list[float]) -> float:
        return round(statistics.median(values) * 1e6, 1)

    result = {
        "command": report.command(), "baseline": args.baseline, "rounds": args.rounds,
        "emails_per_round": args.emails, "threads": args.threads,
        "cpu_us_per_email": {m: us(v) for m, v in per_email.items()},
        "compose_cpu_us_per_email": {m: us(v) for m, v in compose_only.items()},
        "sink_cpu_us_per_email": {m: us(v) for m, v in sink_cpu.items()},
        "now_over_before": {
            "worker_cpu": round(us(per_email["now"]) / us(per_email["before"]), 3),
            "compose_cpu": round(us(compose_only["now"]) / us(compose_only["before"]), 3),
            "sink_cpu": round(us(sink_cpu["now"]) / us(sink_cpu["before"]), 3),
        },
        "sessions_opened_now": sessions_opened,
        **({"actor_cpu_us_per_email": {m: us(v) for m, v in actor.items()},
            "actor_now_over_before": round(us(actor["now"]) / us(actor["before"]), 3),
            "actor_emails_per_round": args.actor_emails} if actor else {}),
        "rounds_cpu_us_per_email": {m: [round(v * 1e6) for v in vs] for m, vs in per_email.items()},
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in load],
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
