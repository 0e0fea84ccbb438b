-- Bookings made before migration 0004 have task rows but no events, and 0004 did not
-- give them any: their progress streams and pages waited for events that never came
-- and sent heartbeats forever, even with every task done (issue 18).  Each task with
-- no event at all gets one now: its current state, at its last change.  A booking made
-- since 0004 has an event for every task (the insert trigger), and compaction (0008)
-- keeps each task's latest, so only those older bookings match.
--
-- SHARE mode keeps writers of booking_tasks out while the events are drawn: a worker
-- changing one of these tasks at the same moment could otherwise commit its event with
-- a smaller id than the backfilled state it replaces, and a stream, replaying in id
-- order, would end on the older state.  Readers are not blocked; writers wait for this
-- one INSERT ... SELECT.
LOCK TABLE booking_tasks IN SHARE MODE;

INSERT INTO booking_events (booking_id, task, state, attempts, last_error, at)
SELECT t.booking_id, t.task, t.state, t.attempts, t.last_error, t.updated_at
FROM booking_tasks t
WHERE NOT EXISTS (SELECT 1 FROM booking_events e WHERE e.booking_id = t.booking_id AND e.task = t.task)
ORDER BY t.booking_id, t.task;
