-- Bulk dead-letter jobs are run by a runner in a long-lived service (the relay), whoever started
-- them (the API or the console): a job is `queued` until a runner claims it, and a running job
-- whose runner stops reporting (`heartbeat_at`) is claimed again by another runner. `claim` is
-- the current runner's token: a runner that lost its claim stops at its next batch.
ALTER TABLE ops_bulk_jobs DROP CONSTRAINT ops_bulk_jobs_state_check;
ALTER TABLE ops_bulk_jobs ADD CONSTRAINT ops_bulk_jobs_state_check
    CHECK (state IN ('queued', 'running', 'finished', 'failed'));
ALTER TABLE ops_bulk_jobs ALTER COLUMN state SET DEFAULT 'queued';
ALTER TABLE ops_bulk_jobs ADD COLUMN claim uuid;
ALTER TABLE ops_bulk_jobs ADD COLUMN heartbeat_at timestamptz;
ALTER TABLE ops_bulk_jobs ADD COLUMN claims integer NOT NULL DEFAULT 0;
-- The runners' claim reads only the open jobs.
CREATE INDEX ops_bulk_jobs_open ON ops_bulk_jobs (created_at) WHERE state IN ('queued', 'running');
-- The trace of the request that started the job (W3C carrier), which the runner's work continues.
ALTER TABLE ops_bulk_jobs ADD COLUMN trace_context jsonb;
