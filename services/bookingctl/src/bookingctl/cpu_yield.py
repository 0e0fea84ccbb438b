"""The local runner's yield: pools with slack are paused while a tighter promise is at risk.

Only `bookingctl up` does this, because only there do the pools share the same cores
(booking_scaling.yielding says which pools yield and why; in a cluster each pod has CPU
of its own and the operator never pauses anything).  The pause is the operators' own
(booking_core.queues.pauses): every worker honours it within its pause poll, a message
already running finishes, nothing is lost, and it is audited and shown in the console
and `bookingctl queues` as paused by ACTOR with the reason.

It only lifts its own pauses (`only_own`): a queue a person paused stays paused, a queue
a person had paused before is left to them, and a person who resumes a held queue wins
until the yield ends.  Its pauses are lifted when the runner starts (left by a runner
that was killed) and when it stops.  A database error leaves things as they are, logged
once per outage: the pools go on, and the yield is retried at the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg

from booking_core.queues import pauses
from booking_core.queues.pausewatch import PauseReader
from booking_scaling import yielding
from booking_scaling.yielding import Promise

log = logging.getLogger("bookingctl.autoscale")

#: Who the yield's pauses are audited as.
ACTOR = "bookingctl up (cpu yield)"


class CpuYield:
    """Pauses and resumes the pools booking_scaling.yielding names, remembering which it paused.

    It writes on the connection the autoscaler reads the paused queues on (`PauseReader.connection`).
    """

    def __init__(self, reader: PauseReader):
        self.reader = reader
        #: The last round's decision (the hysteresis' memory).
        self.last = yielding.Yielding()
        #: The queues this runner paused and has not resumed.
        self.held: set[str] = set()
        self.failing = False

    def apply(self, promises: Mapping[str, Promise]) -> yielding.Yielding:
        """Pause the pools that should yield now, resume those that no longer should; the decision."""
        decision = yielding.decide(promises, self.last)
        self.last = decision
        want = decision.yielding
        if want == self.held:
            return decision
        reason = decision.reason(promises)[:pauses.MAX_REASON_CHARS]
        self._write(lambda conn: self._change(conn, want, reason))
        return decision

    def _change(self, conn: psycopg.Connection, want: frozenset[str], reason: str) -> None:
        for queue in sorted(want - self.held):
            if pauses.pause(conn, queue, actor=ACTOR, reason=reason):
                self.held.add(queue)
                log.warning("%s workers: paused, %s", queue, reason)
            else:
                # Paused by someone else since the round's read: theirs to resume, never ours (from the next
                # round on the autoscaler leaves a queue paused by others out of the promises it hands here).
                log.info("%s workers: already paused by someone else; left to them", queue)
        for queue in sorted(self.held - want):
            if pauses.resume(conn, queue, actor=ACTOR, only_own=True):
                log.warning("%s workers: resumed (no tighter promise at risk, or its own is now)", queue)
            else:
                log.info("%s workers: no longer held by the yield, and resumed or paused again by someone else",
                         queue)
            self.held.discard(queue)

    def release(self) -> None:
        """Lift every pause of ACTOR: at start (a killed runner's) and at stop."""
        def lift(conn: psycopg.Connection) -> None:
            for queue in pauses.paused(conn):  # `only_own` leaves everyone else's pauses as they are
                if pauses.resume(conn, queue, actor=ACTOR, only_own=True):
                    log.warning("%s workers: resumed (the runner's yield lifted)", queue)
            self.held.clear()
            self.last = yielding.Yielding()
        self._write(lift)

    def _write(self, change) -> None:
        try:
            change(self.reader.connection())
        except psycopg.Error as e:
            self.reader.close()
            if not self.failing:
                log.warning("cannot pause or resume queues for the CPU yield (%s); retrying next round", e)
                self.failing = True
            return
        if self.failing:
            log.warning("the CPU yield can write the paused queues again")
            self.failing = False
