-- The booking platform's schema.  See libs/booking-core/README.md for the why of each table.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each bearer token is kept; the token is shown once.
CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants,
    token_hash  bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    is_admin    boolean NOT NULL DEFAULT false,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE bookings (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants,
    customer_name   text NOT NULL,
    customer_email  text NOT NULL,
    item            text NOT NULL,
    check_in        date NOT NULL,
    check_out       date NOT NULL CHECK (check_out > check_in),
    amount          numeric(12, 2) NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL DEFAULT 'confirmed',
    trace_id        text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bookings_by_tenant_newest ON bookings (tenant_id, created_at DESC, id DESC);

CREATE TABLE booking_tasks (
    booking_id  uuid NOT NULL REFERENCES bookings ON DELETE CASCADE,
    task        text NOT NULL CHECK (task IN ('email', 'invoice', 'audit')),
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'retrying', 'done', 'dead')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    trace_id    text,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (booking_id, task)
);
CREATE INDEX booking_tasks_unfinished ON booking_tasks (state, booking_id) WHERE state <> 'done';

-- Messages waiting to be published to Redis by the relay (transactional outbox).
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL,
    queue       text NOT NULL,
    actor       text NOT NULL,
    payload     jsonb NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE idempotency_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer NOT NULL,
    body          jsonb NOT NULL,
    location      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- At most one recorded confirmation email per booking.
CREATE TABLE email_sends (
    booking_id  uuid PRIMARY KEY REFERENCES bookings ON DELETE CASCADE,
    message_id  text NOT NULL,
    recipient   text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);

-- Per-tenant gapless counters (invoice numbers).
CREATE TABLE tenant_counters (
    tenant_id  uuid NOT NULL REFERENCES tenants,
    name       text NOT NULL,
    value      bigint NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- One invoice (and invoice number) per booking; the PDF arrives after the number.
CREATE TABLE invoices (
    booking_id  uuid PRIMARY KEY REFERENCES bookings ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants,
    number      text NOT NULL,
    pdf         bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    issued_at   timestamptz,
    UNIQUE (tenant_id, number)
);

-- Append-only audit trail, hash-chained per tenant.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants,
    seq          bigint NOT NULL,
    event_id     uuid NOT NULL UNIQUE,
    kind         text NOT NULL,
    booking_id   uuid,
    actor        text NOT NULL,
    details      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    prev_hash    text NOT NULL,
    hash         text NOT NULL,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_log_by_booking ON audit_log (booking_id);

-- The newest link of each tenant's chain, so deleting the last rows is detected too.
CREATE TABLE audit_heads (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants,
    seq        bigint NOT NULL,
    hash       text NOT NULL
);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
