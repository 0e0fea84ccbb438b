-- Compaction of the booking event log (services/outbox-relay/src/outbox_relay/compaction.py).  Once a booking's
-- events are older than BOOKING_EVENT_HISTORY_DAYS, each task keeps only its latest
-- event (its final state), so the log grows by about three rows per booking, not by
-- every transition and retry.  Compaction walks the log in id order from this cursor:
-- every event at or below `last_id` has been looked at, so no pass re-reads the rows
-- that stay.
CREATE TABLE booking_events_compaction (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id   bigint NOT NULL DEFAULT 0
);
INSERT INTO booking_events_compaction DEFAULT VALUES;
