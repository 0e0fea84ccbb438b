"""The one failure every actor declares in `throws`: work that no retry can ever do.

Dramatiq's Retries middleware gives up at once (dead-letters the message) on an
exception listed in the actor's `throws`.  Every worker lists this one base, so
"permanent" means the same thing on every queue; a worker that needs a sharper
name (an SMTP 5xx, an unknown booking, a malformed audit event) subclasses it.
Anything else an actor raises is retried with backoff; a database outage is
retried without using up the retry budget (see `booking_core.tasks.outage`).
"""

from __future__ import annotations


class PermanentTaskError(Exception):
    """This message can never succeed as sent: dead-letter it now instead of retrying."""


class InvalidMessage(PermanentTaskError):
    """The message's arguments cannot name real work (wrong task, an id that is no UUID)."""


class UnknownBooking(PermanentTaskError):
    """The message names no booking of its tenant (never was, deleted, or another tenant's)."""
