"""A database outage is weather, not a verdict on the message: retry it, never dead-letter it.

Dramatiq's Retries middleware counts every failed attempt against the actor's
`max_retries` and dead-letters the message once they are spent.  An unreachable
Postgres fails every message alike, so counting those attempts would
dead-letter a whole backlog during a long outage, and even a short one would
use up the retries meant for the work's own failures (an SMTP server saying
4xx).  `DatabaseOutageRetries` is added after Retries, so its
`after_process_message` runs just before Retries' (after-hooks run in reverse
order).  When an attempt failed because Postgres could not be reached, it
raises that message's own `max_retries` option (which Retries reads before the
actor's) by one: the attempt is retried with the actor's usual backoff, capped
at its `max_backoff`, and costs none of its budget.  The number of such
attempts is kept in the message's `db_outages` option, for operators.
"""

from __future__ import annotations

import logging

import dramatiq
import psycopg
from dramatiq.middleware import Middleware, Retries

log = logging.getLogger(__name__)

#: SQLSTATE prefixes that mean "the server cannot serve anyone right now": connection
#: exceptions (08), insufficient resources (53: too many connections, disk full) and
#: the operator interventions of a shutdown or restart (57P01-57P03, 57P05).
OUTAGE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "57P05")
#: How far down `__cause__` / `__context__` an outage is looked for.
MAX_CHAIN = 8


def is_database_outage(exc: BaseException | None) -> bool:
    """True when `exc` (or what caused it) says Postgres is unreachable, restarting or full.

    Client-side failures have no SQLSTATE: refused or lost connections, a pool
    that found no working connection in time (`PoolTimeout`).  Errors about the
    statement itself (a constraint, bad data, a lock or statement timeout) are
    not outages: they keep their retry budget.
    """
    for _ in range(MAX_CHAIN):
        if exc is None:
            return False
        if isinstance(exc, psycopg.OperationalError):
            state = exc.sqlstate
            return state is None or state.startswith(OUTAGE_SQLSTATES)
        exc = exc.__cause__ or exc.__context__
    return False


class DatabaseOutageRetries(Middleware):
    """Give each attempt that failed on a database outage back to the message's retry budget.

    An actor with its own `retry_when` decides alone (Retries then ignores
    `max_retries`); none of ours has one.
    """

    def after_process_message(self, broker, message: dramatiq.Message, *, result=None,
                              exception=None):
        if exception is None or message.failed or not is_database_outage(exception):
            return
        retries = next((m for m in broker.middleware if isinstance(m, Retries)), None)
        if retries is None:
            return  # without Retries nothing is retried or counted
        actor = broker.get_actor(message.actor_name)
        # The same lookup Retries makes: the message's option, the actor's, Retries' default.
        budget = message.options.get("max_retries",
                                     actor.options.get("max_retries", retries.max_retries))
        if budget is None:
            return  # unlimited already
        message.options["max_retries"] = budget + 1
        message.options["db_outages"] = int(message.options.get("db_outages", 0)) + 1
        log.warning("message %s (%s) failed because Postgres is unreachable (%s); retrying"
                    " without using its retry budget (%d such attempts)", message.message_id,
                    message.actor_name, type(exception).__name__, message.options["db_outages"])
