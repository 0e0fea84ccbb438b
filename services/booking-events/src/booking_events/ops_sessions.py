"""Ops console sessions: an admin API token exchanged for a server-side session.

The browser holds only a random session id (256 bits) in an HttpOnly cookie;
Postgres keeps its SHA-256, so the table alone opens nothing.  Each session
remembers the token it came from: revoking that token (or taking its admin
flag) ends the session on its next request, as it ends the token's API access.
A session dies `max_seconds` after sign-in whatever happens, and `idle_seconds`
after its last use.  The CSRF secret is per session (synchronizer token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import psycopg

from booking_core.model import tenants

#: The audit chain's actor field holds at most 200 characters (booking_core.audit.chain.MAX_ACTOR_CHARS).
_MAX_LABEL = 80
#: `last_seen_at` is written at most this often, not on every request.
_TOUCH_SECONDS = 60


class SignInRefused(ValueError):
    """The token may not open a console session; the message says why, for the operator."""


@dataclass(frozen=True)
class Session:
    """A live session: who is signed in, and the secret their forms must echo."""

    token_id: str
    operator: str
    csrf_secret: str

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether a form's CSRF field is this session's secret (constant-time)."""
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf_secret.encode())


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def operator_name(identity: dict, label: str) -> str:
    """The audit actor for an operator: `ops:<token label, else its prefix> (tenant <name>)`."""
    who = " ".join(label.split())[:_MAX_LABEL] or identity["prefix"]
    return f"ops:{who} (tenant {identity['tenant']})"


def sign_in(conn: psycopg.Connection, token: str, *, max_seconds: int) -> tuple[str, Session]:
    """A new session for an admin token: (the session id for the cookie, the session).

    SignInRefused for an unknown or revoked token and for a client (non-admin) token.
    """
    identity = tenants.authenticate(conn, token.strip())
    if identity is None:
        raise SignInRefused("This token is unknown or revoked.")
    if not identity["admin"]:
        raise SignInRefused("This is a client token. The ops console needs an admin token "
                            "(bookingctl tokens create --admin).")
    label = conn.execute("SELECT label FROM api_tokens WHERE id = %s", (identity["token_id"],)).fetchone()["label"]
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    operator = operator_name(identity, label)
    conn.execute("INSERT INTO ops_sessions (id_hash, token_id, operator, csrf_secret, expires_at)"
                 " VALUES (%s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))",
                 (_hash(session_id), identity["token_id"], operator, csrf, max_seconds))
    return session_id, Session(identity["token_id"], operator, csrf)


def lookup(conn: psycopg.Connection, session_id: str | None, *, idle_seconds: int) -> Session | None:
    """The live session for the cookie's id; None when unknown, expired, idle too long or its token revoked."""
    if not session_id or len(session_id) > 100:
        return None
    row = conn.execute(
        "SELECT s.token_id::text, s.operator, s.csrf_secret,"
        " s.last_seen_at < clock_timestamp() - make_interval(secs => %s) AS touch"
        " FROM ops_sessions s JOIN api_tokens k ON k.id = s.token_id"
        " WHERE s.id_hash = %s AND s.expires_at > clock_timestamp()"
        " AND s.last_seen_at > clock_timestamp() - make_interval(secs => %s)"
        " AND k.revoked_at IS NULL AND k.is_admin",
        (_TOUCH_SECONDS, _hash(session_id), idle_seconds)).fetchone()
    if row is None:
        return None
    if row["touch"]:
        conn.execute("UPDATE ops_sessions SET last_seen_at = clock_timestamp() WHERE id_hash = %s",
                     (_hash(session_id),))
    return Session(row["token_id"], row["operator"], row["csrf_secret"])


def sign_out(conn: psycopg.Connection, session_id: str) -> bool:
    """Delete the session; False when there was none."""
    return conn.execute("DELETE FROM ops_sessions WHERE id_hash = %s", (_hash(session_id),)).rowcount == 1


def purge_expired(conn: psycopg.Connection, *, idle_seconds: int) -> int:
    """Delete sessions past either limit (called at each sign-in; the table stays small)."""
    return conn.execute("DELETE FROM ops_sessions WHERE expires_at <= clock_timestamp()"
                        " OR last_seen_at <= clock_timestamp() - make_interval(secs => %s)",
                        (idle_seconds,)).rowcount
