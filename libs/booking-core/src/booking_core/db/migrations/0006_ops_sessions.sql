-- The ops console (services/booking-events, /ops/): operator sessions and bulk dead-letter jobs.
--
-- A session is made by signing in with an admin API token.  Only a SHA-256 of the
-- random session id is stored (as for tokens), so a leaked table opens nothing; the
-- token it came from is kept so that revoking the token ends the session at once.
CREATE TABLE ops_sessions (
    id_hash       bytea PRIMARY KEY,
    token_id      uuid NOT NULL REFERENCES api_tokens ON DELETE CASCADE,
    operator      text NOT NULL,
    csrf_secret   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX ops_sessions_by_expiry ON ops_sessions (expires_at);

-- A requeue or discard of every letter matching a filter, run in batches; its row is the
-- progress every console pod can show (the job runs in the pod that started it).
CREATE TABLE ops_bulk_jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    action       text NOT NULL CHECK (action IN ('requeue', 'discard')),
    filter       jsonb NOT NULL,
    actor        text NOT NULL,
    matched      integer NOT NULL,
    done         integer NOT NULL DEFAULT 0,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished', 'failed')),
    error        text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz
);

-- The console's throughput ("done per minute over the last 15 minutes") reads only recent
-- `done` events; partial, so the accept path's `pending` rows never touch it.
CREATE INDEX booking_events_done_at ON booking_events (at) WHERE state = 'done';
