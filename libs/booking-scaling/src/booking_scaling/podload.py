"""Which pod each worker process runs in, and how busy it is: what a scale-down needs to spare busy pods.

When the operator lowers a Deployment's replicas, the ReplicaSet picks the pods to
delete; among ready pods it deletes those with the lowest
`controller.kubernetes.io/pod-deletion-cost` first.  To set that well the operator
must know, per pod, how much work a deletion would interrupt.  Dramatiq knows it
per *process* (its ack sets, `layout.in_flight`), and nothing in Redis says which
pod a process runs in.  So every worker process adds one field to
`ns:__pods__.<queue>` (a hash: broker id -> JSON `{"host", "lastWorkMs", "bootMs", "at"}`)
with the presence stamp it already writes every few seconds
(booking_core.queues.presence): its host name, which in a Deployment's pod is the
pod's name (the local runner, whose processes share a host, names each process
instead: BOOKING_WORKER_HOST), when it last finished a message, and when it booted (ready to consume:
with the pod's creation time, the pod start latency the promise predicts with).  A field not restamped within
`TTL_MS` (a crashed process) is ignored, and the hash expires when no worker
stamps it.  This is the platform's own key, not Dramatiq's, so it is named here
rather than in `layout`; the in-flight sets it is joined with are Dramatiq's and
are named by `layout`.

The values are written by worker processes and read by the operator, which
patches pods by these names: a host that is not a valid pod name is dropped
here, and the operator only ever patches pods its target's selector lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from booking_scaling.layout import Layout

#: Three missed stamps (every 5 s) and a process no longer counts, as for presence.
TTL_MS = 15_000
#: A pod's name is a DNS-1123 subdomain (at most 253 characters).
_POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def key(namespace: str, queue: str) -> str:
    """The hash of `queue`'s worker processes: broker id -> their pod and last work."""
    return f"{namespace}:__pods__.{queue}"


def add(pipe: Any, namespace: str, queues: Iterable[str], worker_id: str, host: str,
        last_work_ms: int | None, now_ms: int, boot_ms: int | None = None) -> None:
    """Queue the writes of one process's record for each of its `queues` on a Redis pipeline."""
    record = json.dumps({"host": host, "lastWorkMs": last_work_ms, "bootMs": boot_ms, "at": now_ms},
                        separators=(",", ":"))
    for q in sorted(queues):
        pipe.hset(key(namespace, q), worker_id, record)
        pipe.pexpire(key(namespace, q), TTL_MS * 4)


def remove(pipe: Any, namespace: str, queues: Iterable[str], worker_id: str) -> None:
    """Queue the removal of one process's records (it stops)."""
    for q in sorted(queues):
        pipe.hdel(key(namespace, q), worker_id)


@dataclass(frozen=True)
class PodLoad:
    """One pod's work right now, summed over its worker processes and the pool's queues."""

    #: Messages its processes hold un-acked (running, or fetched ahead): a deletion interrupts or requeues them.
    in_flight: int
    #: When one of its processes last finished a message (ms); None: never.
    last_work_ms: int | None
    #: Its worker processes that stamped within TTL_MS.
    workers: int
    #: When its first worker process booted (ms); None: not recorded.
    booted_ms: int | None = None


def _ms(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse(raw: bytes | str, now_ms: int) -> tuple[str, int | None, int | None] | None:
    """(host, last work, boot) of one record, None when malformed, not a pod name, or stale."""
    try:
        record = json.loads(raw)
        host, at = record["host"], int(record["at"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(host, str) or not _POD_NAME.fullmatch(host) or now_ms - at > TTL_MS:
        return None
    return host, _ms(record.get("lastWorkMs")), _ms(record.get("bootMs"))


def read(client: redis.Redis, namespace: str, queues: Iterable[str], now_ms: int) -> dict[str, PodLoad]:
    """Each pod's load (by pod name) from its processes' records and Dramatiq's in-flight sets.

    Two round trips: the records of every queue, then the size of each live process's
    in-flight set per queue.  Raises redis.RedisError when Redis cannot be read.
    """
    queues = sorted(set(queues))
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.hgetall(key(namespace, q))
    records = pipe.execute()
    workers: dict[str, tuple[str, int | None, int | None]] = {}
    for fields in records:
        for worker_id, raw in fields.items():
            parsed = _parse(raw, now_ms)
            if parsed is not None:
                workers[worker_id.decode() if isinstance(worker_id, bytes) else worker_id] = parsed
    layout = Layout(namespace)
    pipe = client.pipeline(transaction=False)
    pairs = [(w, q) for w in sorted(workers) for q in queues]
    for w, q in pairs:
        pipe.scard(layout.in_flight(w, q))
    counts = pipe.execute() if pairs else []
    in_flight: dict[str, int] = {}
    for (w, _), n in zip(pairs, counts, strict=True):
        in_flight[w] = in_flight.get(w, 0) + int(n)
    pods: dict[str, PodLoad] = {}
    for w, (host, last, boot) in workers.items():
        seen = pods.get(host)
        lasts = [t for t in (last, seen.last_work_ms if seen else None) if t is not None]
        boots = [t for t in (boot, seen.booted_ms if seen else None) if t is not None]
        pods[host] = PodLoad(in_flight=in_flight.get(w, 0) + (seen.in_flight if seen else 0),
                             last_work_ms=max(lasts) if lasts else None,
                             workers=1 + (seen.workers if seen else 0),
                             booted_ms=min(boots) if boots else None)
    return pods
