-- The per-booking event log behind the progress stream (GET /api/v1/bookings/{id}/events).
--
-- Triggers on booking_tasks append one row per visible change (state, attempts or
-- last_error), inside the transaction that made the change: every writer (the API's
-- insert, the workers' middleware, the CLI's requeue) is covered, and an event exists
-- exactly when its change committed.  Statement-level triggers with transition tables
-- run once per statement, not once per row, so the API's hot path pays one extra
-- INSERT ... SELECT for its three task rows.
--
-- Ordering: readers ask for `id > last_seen`.  Within one booking that must be exact
-- (Last-Event-ID replay), so writers that change an existing booking's tasks take a
-- transaction-scoped advisory lock on the booking before drawing ids: two workers
-- finishing tasks of the same booking draw their ids in commit order.  Across
-- bookings ids may still commit out of order; the events service's poller handles
-- those gaps (see services/booking-events/README.md).  No NOTIFY: it takes a global
-- lock at commit, which the accept path must not pay.

CREATE TABLE booking_events (
    id          bigserial PRIMARY KEY,
    booking_id  uuid NOT NULL REFERENCES bookings ON DELETE CASCADE,
    task        text NOT NULL,
    state       text NOT NULL,
    attempts    integer NOT NULL,
    last_error  text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX booking_events_by_booking ON booking_events (booking_id, id);

CREATE FUNCTION booking_events_from_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A new booking's rows: no other transaction can see the booking yet, so no lock.
    INSERT INTO booking_events (booking_id, task, state, attempts, last_error)
    SELECT n.booking_id, n.task, n.state, n.attempts, n.last_error
    FROM new_rows n ORDER BY n.booking_id, n.task;
    RETURN NULL;
END $$;

CREATE FUNCTION booking_events_from_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1702260340, hashtext(b.booking_id::text))
    FROM (SELECT DISTINCT n.booking_id FROM new_rows n ORDER BY 1) b;
    INSERT INTO booking_events (booking_id, task, state, attempts, last_error)
    SELECT n.booking_id, n.task, n.state, n.attempts, n.last_error
    FROM new_rows n JOIN old_rows o USING (booking_id, task)
    WHERE (n.state, n.attempts, n.last_error) IS DISTINCT FROM (o.state, o.attempts, o.last_error)
    ORDER BY n.booking_id, n.task;
    RETURN NULL;
END $$;

CREATE TRIGGER booking_tasks_log_insert
    AFTER INSERT ON booking_tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION booking_events_from_insert();

CREATE TRIGGER booking_tasks_log_update
    AFTER UPDATE ON booking_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION booking_events_from_update();
