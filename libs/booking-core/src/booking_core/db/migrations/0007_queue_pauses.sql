-- Paused queues (issue 11): one row per paused queue, none while it runs.  Every worker
-- polls this table, so a pause reaches all of them and outlives their restarts.
CREATE TABLE queue_pauses (
    queue      text PRIMARY KEY CHECK (queue IN ('email', 'invoice', 'audit')),
    paused_by  text NOT NULL CHECK (length(paused_by) BETWEEN 1 AND 200),
    paused_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason     text NOT NULL DEFAULT '' CHECK (length(reason) <= 200)
);

-- The platform's own tenant: the audit chain of operator actions that belong to no
-- customer (pausing and resuming queues).  A fixed id (uuid5 of the URL
-- "booking-platform:ops"), so every process finds it without a lookup.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenants WHERE name = 'platform-ops'
               AND id <> 'd22cc515-7637-5483-8c70-c24a5137cc44') THEN
        RAISE EXCEPTION 'a customer tenant is named platform-ops; rename it, then migrate again';
    END IF;
END $$;
INSERT INTO tenants (id, name) VALUES ('d22cc515-7637-5483-8c70-c24a5137cc44', 'platform-ops')
    ON CONFLICT (id) DO NOTHING;
