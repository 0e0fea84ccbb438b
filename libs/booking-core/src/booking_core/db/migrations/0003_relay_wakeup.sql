-- Wake the relay only when it sleeps (issue 9).
--
-- A NOTIFY takes a database-wide lock at commit, so one on every booking
-- serialises the commits of every writer behind it.  The relay now says when
-- it is about to sleep; writers NOTIFY only then.  While it is busy (the case
-- under load) nobody notifies and it simply keeps draining.
--
-- UNLOGGED: the flag is a hint, not data.  After a crash the table is empty,
-- nobody notifies, and the relay's sweep (every BOOKING_RELAY_SWEEP_MS) both
-- publishes what waits and writes the row back.
CREATE UNLOGGED TABLE relay_wakeup (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    sleeping boolean NOT NULL DEFAULT false
);
INSERT INTO relay_wakeup (id, sleeping) VALUES (1, true);
