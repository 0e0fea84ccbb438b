-- A tenant's plan: how fast it may confirm bookings (a token bucket: a sustained rate and a
-- burst) and its weight in the fair share of the async work (docs/architecture.md, decision 13).
-- A tenant without a row is on the default plan, which comes from settings
-- (BOOKING_PLAN_DEFAULT_*), so a platform engineer sets it in the chart's values, not in SQL.
-- The bounds repeat booking_core.model.plans.check, which names the field that breaks them.
CREATE TABLE tenant_plans (
    tenant_id        uuid PRIMARY KEY REFERENCES tenants ON DELETE CASCADE,
    name             text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    rate_per_second  double precision NOT NULL CHECK (rate_per_second > 0 AND rate_per_second <= 100000),
    burst            integer NOT NULL CHECK (burst BETWEEN 1 AND 1000000),
    weight           integer NOT NULL CHECK (weight BETWEEN 1 AND 1000),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_by       text NOT NULL
);
