"""The audit trail: one SHA-256 hash chain per tenant, so edits and deletions show.

Each entry's hash covers the previous entry's hash and a canonical JSON of its own
fields, and `audit_heads` remembers each chain's newest link.  `verify` recomputes
the chain: an edited row, a deleted row (a gap in `seq`) or deleted last rows (the
chain ends before its head) are all reported.  The `audit_log` trigger refuses
UPDATE and DELETE, so editing entries already needs the rights to disable it.

Canonical JSON (what the hash covers, after `prev_hash`): the fields tenant_id,
seq, event_id, kind, booking_id, actor, details, occurred_at; keys sorted, no
whitespace, UTF-8, uuids as lowercase strings, timestamps as UTC
`YYYY-MM-DDTHH:MM:SS.ffffffZ`.  `details` is hashed as Postgres stores it (jsonb).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq

from booking_core.messaging.contracts import AUDIT_KINDS
from booking_core.messaging.errors import PermanentTaskError
from booking_core.messaging.ids import parse_uuid

GENESIS_HASH = "0" * 64
#: First half of the two-int advisory lock key that serialises one tenant's appends.
_LOCK_CLASS = 0x61756474  # "audt"
HASHED_FIELDS = (
    "tenant_id", "seq", "event_id", "kind", "booking_id", "actor", "details", "occurred_at",
)
MAX_ACTOR_CHARS = 200
_REQUIRED = ("event_id", "kind", "tenant_id", "actor", "occurred_at")
_ALLOWED = frozenset((*_REQUIRED, "booking_id", "details", "task"))


class InvalidAuditEvent(PermanentTaskError, ValueError):
    """A payload that can never be recorded (retrying it cannot help)."""


class AuditChainBroken(RuntimeError):
    """A chain whose head is missing while entries exist: append refuses to fork it."""


def _canonical_value(value: Any) -> Any:
    """JSON-ready form of one hashed field: uuids as strings, timestamps in UTC."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("audit timestamps must carry a time zone")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def canonical_json(entry: Mapping[str, Any]) -> str:
    """The canonical JSON of an entry's hashed fields (other keys are ignored)."""
    doc = {name: _canonical_value(entry[name]) for name in HASHED_FIELDS}
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        default=_canonical_value,
    )


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """SHA-256 hex of `prev_hash` followed by the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode("utf-8")).hexdigest()


def _uuid(payload: Mapping[str, Any], name: str, *, optional: bool = False) -> uuid.UUID | None:
    """Field `name` as a UUID, or InvalidAuditEvent."""
    raw = payload.get(name)
    if raw is None and optional:
        return None
    return parse_uuid(raw, name, error=InvalidAuditEvent)


def _timestamp(raw: Any) -> datetime:
    """An ISO-8601 string (or datetime) with a time zone, or InvalidAuditEvent."""
    try:
        value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError:
        raise InvalidAuditEvent(f"occurred_at is not an ISO-8601 timestamp: {raw!r}") from None
    if value.tzinfo is None:
        raise InvalidAuditEvent(f"occurred_at has no time zone: {raw!r}")
    return value


def parse_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an `audit_payload` dict; return its fields typed, or InvalidAuditEvent."""
    unknown = sorted(set(payload) - _ALLOWED)
    if unknown:
        raise InvalidAuditEvent(f"unknown audit payload field(s): {', '.join(unknown)}")
    missing = [n for n in _REQUIRED if payload.get(n) is None]
    if missing:
        raise InvalidAuditEvent(f"missing audit payload field(s): {', '.join(missing)}")
    kind, actor, details = payload["kind"], payload["actor"], payload.get("details") or {}
    if kind not in AUDIT_KINDS:
        raise InvalidAuditEvent(f"unknown audit event kind {kind!r}")
    if not isinstance(actor, str) or not actor or len(actor) > MAX_ACTOR_CHARS:
        raise InvalidAuditEvent(f"actor must be a string of 1..{MAX_ACTOR_CHARS} characters")
    if not isinstance(details, dict):
        raise InvalidAuditEvent("details must be a JSON object")
    try:
        details_json = json.dumps(details, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEvent(f"details are not plain JSON: {exc}") from None
    return {
        "event_id": _uuid(payload, "event_id"),
        "kind": kind,
        "tenant_id": _uuid(payload, "tenant_id"),
        "booking_id": _uuid(payload, "booking_id", optional=True),
        "actor": actor,
        "occurred_at": _timestamp(payload["occurred_at"]),
        "details_json": details_json,
    }


def append(conn: psycopg.Connection, payload: Mapping[str, Any]) -> bool:
    """Add one event to its tenant's chain; False when its event_id is already recorded."""
    fields = parse_payload(payload)
    tenant_id = fields["tenant_id"]
    try:
        with conn.transaction(), conn.cursor() as cur:
            # Rank 5 of docs/lock-order.md: after the booking's own work, before its task rows.
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, str(tenant_id))
            )
            cur.execute("SELECT 1 FROM audit_log WHERE event_id = %s", (fields["event_id"],))
            if cur.fetchone() is not None:
                return False
            cur.execute("SELECT seq, hash FROM audit_heads WHERE tenant_id = %s", (tenant_id,))
            head = _row(cur.fetchone(), ("seq", "hash"))
            if head is None:
                cur.execute("SELECT 1 FROM audit_log WHERE tenant_id = %s LIMIT 1", (tenant_id,))
                if cur.fetchone() is not None:
                    raise AuditChainBroken(f"tenant {tenant_id} has audit entries but no head")
            seq, prev_hash = (head["seq"] + 1, head["hash"]) if head else (1, GENESIS_HASH)
            # Hash `details` as jsonb will store and return them (numbers, key order).
            cur.execute("SELECT %s::jsonb::text AS details", (fields["details_json"],))
            stored_details = json.loads(_row(cur.fetchone(), ("details",))["details"])
            entry = {**fields, "seq": seq, "details": stored_details}
            digest = entry_hash(prev_hash, entry)
            cur.execute(
                "INSERT INTO audit_log (tenant_id, seq, event_id, kind, booking_id, actor, details,"
                " occurred_at, prev_hash, hash) VALUES (%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s,%s)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING id",
                (tenant_id, seq, fields["event_id"], fields["kind"], fields["booking_id"],
                 fields["actor"], fields["details_json"], fields["occurred_at"], prev_hash, digest),
            )
            if cur.fetchone() is None:  # the same event_id under another tenant's lock
                return False
            cur.execute(
                "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
                (tenant_id, seq, digest),
            )
    except psycopg.errors.ForeignKeyViolation:
        raise InvalidAuditEvent(f"unknown tenant {tenant_id}") from None
    except psycopg.errors.DataError as exc:  # e.g. a NUL or lone surrogate jsonb refuses
        raise InvalidAuditEvent(f"payload refused by Postgres: {exc}") from None
    except UnicodeEncodeError:  # a lone surrogate in `actor` cannot even be sent
        raise InvalidAuditEvent("payload text is not valid Unicode") from None
    return True


def _row(row: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    """A fetched row as a dict whatever the connection's row factory."""
    if row is None or isinstance(row, Mapping):
        return row
    return dict(zip(names, row, strict=True))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a chain: whose, at which seq, and what."""

    tenant_id: str
    tenant: str
    seq: int | None
    issue: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "chain"
        return f"tenant {self.tenant}: {where}: {self.issue}"


@dataclass
class ChainReport:
    """The verification of one tenant's chain."""

    tenant_id: str
    tenant: str
    entries: int = 0
    head_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    #: All problems found, even beyond the `max_problems` kept in `problems`.
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


_VERIFY_COLUMNS = (
    "tenant_id::text AS tenant_id, seq, event_id::text AS event_id, kind,"
    " booking_id::text AS booking_id, actor, details::text AS details, occurred_at,"
    " prev_hash, hash"
)
_VERIFY_NAMES = (
    "tenant_id", "seq", "event_id", "kind", "booking_id", "actor", "details", "occurred_at",
    "prev_hash", "hash",
)


class _Walker:
    """Checks one tenant's rows as they stream past, in seq order."""

    def __init__(self, report: ChainReport, head: dict | None, max_problems: int):
        self.report, self.head, self.max_problems = report, head, max_problems
        self.expected_seq, self.prev_hash = 1, GENESIS_HASH

    def problem(self, seq: int | None, issue: str) -> None:
        self.report.problem_count += 1
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(
                Problem(self.report.tenant_id, self.report.tenant, seq, issue)
            )

    def row(self, row: dict) -> None:
        seq = row["seq"]
        self.report.entries += 1
        gap = seq != self.expected_seq
        if gap:
            missing = (
                f"seq {self.expected_seq}" if seq == self.expected_seq + 1
                else f"seqs {self.expected_seq}..{seq - 1}"
            )
            self.problem(self.expected_seq, f"{missing} missing: entries were deleted")
        entry = {**row, "details": json.loads(row["details"])}
        if entry_hash(row["prev_hash"], entry) != row["hash"]:
            self.problem(seq, "hash does not match the entry's content: the entry was altered")
        if not gap and row["prev_hash"] != self.prev_hash:
            self.problem(
                seq, f"prev_hash does not match the hash of seq {seq - 1}: the chain was rewritten"
            )
        self.expected_seq, self.prev_hash = seq + 1, row["hash"]

    def finish(self) -> ChainReport:
        last_seq = self.expected_seq - 1
        head = self.head
        if head is None:
            if last_seq:
                self.problem(None, f"entries up to seq {last_seq} but no head: it was deleted")
        elif last_seq < head["seq"]:
            lost = f"seq {head['seq']}" if last_seq + 1 == head["seq"] else (
                f"seqs {last_seq + 1}..{head['seq']}")
            self.problem(last_seq + 1, f"{lost} missing: the head is at seq {head['seq']} but "
                         f"the chain ends at seq {last_seq}; the last entries were deleted")
        elif last_seq > head["seq"]:
            self.problem(head["seq"] + 1, f"entries after the head (seq {head['seq']}): "
                         "they were added outside append, or the head was rolled back")
        elif head["hash"] != self.prev_hash:
            self.problem(last_seq, "the last entry's hash differs from the head's")
        return self.report


def _stream(conn: psycopg.Connection, tenant_id: str | None, itersize: int) -> Iterator[dict]:
    """Every entry (of one tenant, or all) in (tenant, seq) order, through a server cursor."""
    with conn.cursor(name=f"audit_verify_{uuid.uuid4().hex[:8]}") as cur:
        cur.itersize = itersize
        # Two literal queries, so each walks the (tenant_id, seq) index in order.
        if tenant_id is None:
            cur.execute(f"SELECT {_VERIFY_COLUMNS} FROM audit_log ORDER BY tenant_id, seq")
        else:
            cur.execute(
                f"SELECT {_VERIFY_COLUMNS} FROM audit_log WHERE tenant_id = %s ORDER BY seq",
                (tenant_id,),
            )
        for row in cur:
            yield _row(row, _VERIFY_NAMES)


def _verify(conn: psycopg.Connection, tenant_id: str | None, max_problems: int,
            itersize: int) -> list[ChainReport]:
    """The walk itself, inside the caller's snapshot."""
    tenants = conn.execute(
        "SELECT t.id::text AS id, t.name, h.seq, h.hash FROM tenants t"
        " LEFT JOIN audit_heads h ON h.tenant_id = t.id"
        " WHERE (%(tenant)s::uuid IS NULL AND (h.tenant_id IS NOT NULL"
        "        OR EXISTS (SELECT 1 FROM audit_log l WHERE l.tenant_id = t.id)))"
        " OR t.id = %(tenant)s::uuid ORDER BY t.id",
        {"tenant": tenant_id},
    ).fetchall()
    walkers: dict[str, _Walker] = {}
    for raw in tenants:
        t = _row(raw, ("id", "name", "seq", "hash"))
        head = {"seq": t["seq"], "hash": t["hash"]} if t["seq"] is not None else None
        report = ChainReport(t["id"], t["name"], head_seq=t["seq"])
        walkers[t["id"]] = _Walker(report, head, max_problems)
    for row in _stream(conn, tenant_id, itersize):
        walker = walkers.get(row["tenant_id"])
        if walker is not None:  # None only for a chain begun after the tenant list, off-snapshot
            walker.row(row)
    return [w.finish() for w in walkers.values()]


def verify(
    conn: psycopg.Connection,
    tenant_id: str | None = None,
    *,
    max_problems: int = 1000,
    itersize: int = 2000,
) -> list[ChainReport]:
    """Recompute every chain (or one tenant's) and report what is wrong, per tenant.

    Runs in one REPEATABLE READ, read-only snapshot when `conn` is idle, so appends
    committed meanwhile cannot look like tampering; rows stream through a server
    cursor, so memory stays flat whatever the log's size.
    """
    if tenant_id is not None:
        try:
            tenant_id = str(uuid.UUID(str(tenant_id)))
        except ValueError:
            raise ValueError(f"tenant_id is not a uuid: {tenant_id!r}") from None
    idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _verify(conn, tenant_id, max_problems, itersize)


def problems(reports: list[ChainReport]) -> list[Problem]:
    """Every kept problem of `reports`, in tenant then seq order."""
    return [p for r in reports for p in r.problems]


def entries_for_booking(conn: psycopg.Connection, booking_id: str) -> list[dict]:
    """A booking's audit entries in chain order: what happened to it, and who did it."""
    try:
        booking_id = str(uuid.UUID(str(booking_id)))
    except ValueError:
        raise ValueError(f"booking_id is not a uuid: {booking_id!r}") from None
    return conn.execute(
        "SELECT seq, kind, actor, details, occurred_at, recorded_at, event_id::text AS event_id"
        " FROM audit_log WHERE booking_id = %s ORDER BY tenant_id, seq", (booking_id,)).fetchall()
