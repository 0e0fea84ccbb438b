"""The resident memory of every process of a local platform, by service and role, read from /proc.

A service's process (`Platform.children`) may have children of its own: gunicorn
its workers, Dramatiq's parent its worker process and the Prometheus exposition
fork.  Each is named `<service>/<role>`: `parent`, then for Dramatiq `worker`
(the process that runs the actors: it has the consumer and worker threads) or
`fork-<n>` (a middleware's fork, one or two threads), for gunicorn `worker-<n>`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: A Dramatiq child with at least this many threads runs actors; a middleware fork has one or two.
WORKER_THREADS = 4
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_DRAMATIQ = re.compile(r"[a-z]+-worker-\d+")


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, oldest pid first."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(found)


def _one(pid: int) -> dict:
    with open(f"/proc/{pid}/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {"pid": pid, "rss_mb": round(rss_pages * _PAGE_MB, 1), "threads": int(_status(pid)["Threads"])}


def snapshot(children: dict[str, int | None]) -> dict[str, dict]:
    """`{"<service>/<role>": {"pid", "rss_mb", "threads"}}` for every live process under `children` (name -> pid)."""
    out: dict[str, dict] = {}
    for service, pid in sorted(children.items()):
        if pid is None:
            continue
        try:
            out[f"{service}/parent"] = _one(pid)
            for index, kid in enumerate(_children(pid), start=1):
                info = _one(kid)
                if service == "api":
                    role = f"worker-{index}"
                elif _DRAMATIQ.fullmatch(service):
                    role = "worker" if info["threads"] >= WORKER_THREADS else f"fork-{index}"
                else:
                    role = f"child-{index}"
                out[f"{service}/{role}"] = info
        except (OSError, KeyError, ValueError):  # gone between the listing and the read: it shows as missing
            continue
    return out
