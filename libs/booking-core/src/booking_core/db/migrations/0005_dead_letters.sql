-- Dead letters are durable in Postgres (issue 10, defect 1).
--
-- Dramatiq keeps dead letters in Redis' `<queue>.XQ` set, which expires (7 days
-- by default) and is lost with Redis' data.  So the worker records each one
-- here in the transaction that marks its task `dead`; the `.XQ` set is only a
-- cache.  A record is never deleted while unresolved; once requeued or
-- discarded it is kept for BOOKING_DEAD_LETTER_RETENTION_DAYS (the relay purges
-- it after that), so "who requeued what, when" stays answerable meanwhile.
CREATE TABLE dead_letters (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id   uuid NOT NULL,
    queue        text NOT NULL,
    actor        text NOT NULL,
    task         text,
    tenant_id    uuid,
    booking_id   uuid,
    args         jsonb NOT NULL DEFAULT '[]'::jsonb,
    kwargs       jsonb NOT NULL DEFAULT '{}'::jsonb,
    options      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    dead_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at  timestamptz,
    resolution   text CHECK (resolution IN ('requeued', 'discarded')),
    resolved_by  text,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);
-- One open record per message: a message that dies again after a requeue gets a new one.
CREATE UNIQUE INDEX dead_letters_open_message ON dead_letters (message_id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letters_open_by_age ON dead_letters (dead_at, id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letters_by_task ON dead_letters (booking_id, task);
CREATE INDEX dead_letters_resolved ON dead_letters (resolved_at) WHERE resolved_at IS NOT NULL;
