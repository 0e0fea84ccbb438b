-- Signed webhooks (docs/architecture.md, decision 14): a tenant's endpoints, the events of its
-- bookings, and one delivery of each event to each matching endpoint.
--
-- Events are written by triggers, inside the transaction of the change that causes them, so
-- every writer (the accept path, the workers' task-state writes, requeues, the reconciler) is
-- covered and an event exists exactly when its change committed.  An event is recorded only
-- while the tenant has an enabled endpoint that wants its type: a tenant without webhooks pays
-- one index probe per change, and an endpoint hears about changes from its creation on (as
-- Stripe's do).  The same trigger fans the event out: one `webhook_deliveries` row and one
-- outbox message (queue `webhook`) per matching endpoint.
--
-- Locks (docs/lock-order.md): the accept path's insert trigger reads endpoints without locking
-- them and inserts rows no one else can see.  The booking_tasks update trigger runs under the
-- booking's event numbering lock (rank 7, taken by booking_events_from_update, and again here),
-- so a booking's event sequence numbers are drawn in commit order.  Deliveries carry no foreign
-- key to their endpoint: a key check would take a KEY SHARE lock on the endpoint row on every
-- fan-out, so endpoints are never deleted, only marked deleted (and their history kept).

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
    url                  text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description          text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- Empty: every event type.
    event_types          text[] NOT NULL DEFAULT '{}',
    enabled              boolean NOT NULL DEFAULT true,
    -- Fernet tokens (BOOKING_WEBHOOKS_KEY): a dump of this table alone cannot sign.
    secret               text NOT NULL,
    previous_secret      text,
    -- Until then both the previous and the current secret sign each delivery.
    previous_secret_until timestamptz,
    -- Set when the platform disabled the endpoint after failing continuously; NULL otherwise.
    disabled_reason      text,
    disabled_at          timestamptz,
    -- The first failure of the current run of failures; NULL after any success.
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at           timestamptz
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (tenant_id) WHERE enabled AND deleted_at IS NULL;

CREATE TABLE webhook_events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL,
    booking_id   uuid NOT NULL REFERENCES bookings ON DELETE CASCADE,
    -- Per booking, from 1, in commit order: receivers order by it (delivery order is not guaranteed).
    sequence     integer NOT NULL,
    type         text NOT NULL,
    -- The Standard Webhooks payload, {type, timestamp, data}, exactly as signed and sent.
    payload      jsonb NOT NULL,
    trace_id     text,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When its deliveries were written; NULL while a new booking's event waits for the webhook
    -- worker to fan it out (the confirm writes only the event and one message, see webhook_emit).
    fanned_out_at timestamptz,
    UNIQUE (booking_id, sequence)
);
CREATE INDEX webhook_events_unfanned ON webhook_events (occurred_at) WHERE fanned_out_at IS NULL;
-- A booking is created, emailed, invoiced and completed once; a task may die more than once.
CREATE UNIQUE INDEX webhook_events_once ON webhook_events (booking_id, type) WHERE type <> 'booking.task_dead';

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id         uuid NOT NULL REFERENCES webhook_events ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL,
    tenant_id        uuid NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'retrying', 'delivered', 'dead')),
    -- Attempts in the current round: a replay starts a new round (the log keeps every attempt).
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    last_response    text,
    last_latency_ms  integer,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at     timestamptz,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (endpoint_id, updated_at) WHERE state = 'dead';
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (created_at) WHERE state IN ('pending', 'retrying');
-- The ops console's deliveries per minute (the last 15 minutes).
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at) WHERE state = 'delivered';

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    -- The attempt's number within its round (a replay starts a new round at 1).
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    status       integer,
    error        text,
    latency_ms   integer NOT NULL,
    response     text,
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);

-- Write the deliveries of an event (one per live endpoint that wants its type) and one outbox
-- message per delivery; idempotent (a second call writes nothing).  Returns how many it wrote.
CREATE FUNCTION webhook_fan_out(p_event uuid) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    ev record;
    n integer;
BEGIN
    SELECT id, tenant_id, type, trace_id INTO ev FROM webhook_events WHERE id = p_event AND fanned_out_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH d AS (
        INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id)
        SELECT ev.id, e.id, ev.tenant_id FROM webhook_endpoints e
        WHERE e.tenant_id = ev.tenant_id AND e.enabled AND e.deleted_at IS NULL
          AND (e.event_types = '{}' OR ev.type = ANY (e.event_types))
        ORDER BY e.id
        ON CONFLICT DO NOTHING
        RETURNING id
    ), o AS (
        INSERT INTO outbox (message_id, queue, actor, payload, options)
        SELECT d.id, 'webhook', 'deliver_webhook',
               jsonb_build_object('delivery_id', d.id::text, 'tenant_id', ev.tenant_id::text),
               -- The booking's trace: the delivery's spans join it (the parent span id stands in for
               -- the trigger, which has no span of its own).
               CASE WHEN ev.trace_id ~ '^[0-9a-f]{32}$' AND ev.trace_id <> repeat('0', 32) THEN
                   jsonb_build_object('trace_context', jsonb_build_object(
                       'traceparent', '00-' || ev.trace_id || '-' || substr(replace(d.id::text, '-', ''), 1, 16) || '-01'))
               ELSE '{}'::jsonb END
        FROM d RETURNING 1
    )
    SELECT count(*) INTO n FROM o;
    UPDATE webhook_events SET fanned_out_at = clock_timestamp() WHERE id = ev.id;
    IF n > 0 THEN
        PERFORM pg_notify('booking_outbox', '') FROM relay_wakeup WHERE sleeping;
    END IF;
    RETURN n;
END $$;

-- Record one event of a booking; nothing when no live endpoint wants `p_type`.  The workers'
-- changes fan it out at once; the confirm (`p_defer`) writes one message instead, and the webhook
-- worker fans it out (webhook_fan_out): ten endpoints would otherwise add twenty-one rows to the
-- accept path's statement (bench/webhooks_accept.py measured 1.8x its time).
CREATE FUNCTION webhook_emit(p_tenant uuid, p_booking uuid, p_type text, p_data jsonb, p_trace text,
                             p_at timestamptz, p_defer boolean DEFAULT false) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_event uuid;
    v_seq integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.tenant_id = p_tenant AND e.enabled AND e.deleted_at IS NULL
                     AND (e.event_types = '{}' OR p_type = ANY (e.event_types))) THEN
        RETURN;
    END IF;
    v_seq := coalesce((SELECT max(sequence) FROM webhook_events WHERE booking_id = p_booking), 0) + 1;
    INSERT INTO webhook_events (tenant_id, booking_id, sequence, type, payload, trace_id, occurred_at)
    VALUES (p_tenant, p_booking, v_seq, p_type,
            jsonb_build_object(
                'type', p_type,
                'timestamp', to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'data', p_data || jsonb_build_object('booking_id', p_booking::text, 'sequence', v_seq)),
            p_trace, p_at)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_event;
    IF v_event IS NULL THEN
        RETURN;  -- already recorded (a redelivered change)
    END IF;
    IF NOT p_defer THEN
        PERFORM webhook_fan_out(v_event);
        RETURN;
    END IF;
    INSERT INTO outbox (message_id, queue, actor, payload, options)
    VALUES (v_event, 'webhook', 'fan_out_webhook_event',
            jsonb_build_object('event_id', v_event::text, 'tenant_id', p_tenant::text),
            CASE WHEN p_trace ~ '^[0-9a-f]{32}$' AND p_trace <> repeat('0', 32) THEN
                jsonb_build_object('trace_context', jsonb_build_object(
                    'traceparent', '00-' || p_trace || '-' || substr(replace(v_event::text, '-', ''), 1, 16) || '-01'))
            ELSE '{}'::jsonb END);
END $$;

CREATE FUNCTION webhook_events_from_booking() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    -- A new booking: no other transaction can see it yet, so its sequence needs no lock.
    FOR b IN SELECT * FROM new_rows ORDER BY id LOOP
        PERFORM webhook_emit(b.tenant_id, b.id, 'booking.created',
            jsonb_build_object('status', b.status, 'item', b.item, 'check_in', b.check_in,
                               'check_out', b.check_out, 'amount', b.amount::text, 'currency', b.currency,
                               'customer_name', b.customer_name, 'customer_email', b.customer_email,
                               'created_at', b.created_at),
            b.trace_id, b.created_at, true);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_events_from_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_now timestamptz := clock_timestamp();
BEGIN
    FOR c IN
        SELECT n.booking_id, n.task, n.state, n.attempts, b.tenant_id, b.trace_id
        FROM new_rows n JOIN old_rows o USING (booking_id, task) JOIN bookings b ON b.id = n.booking_id
        WHERE n.state IN ('done', 'dead') AND n.state IS DISTINCT FROM o.state
        ORDER BY n.booking_id, n.task
    LOOP
        -- The booking's event numbering lock (rank 7): sequence numbers follow commit order.
        PERFORM pg_advisory_xact_lock(1702260340, hashtext(c.booking_id::text));
        IF c.state = 'dead' THEN
            PERFORM webhook_emit(c.tenant_id, c.booking_id, 'booking.task_dead',
                                 jsonb_build_object('task', c.task, 'attempts', c.attempts), c.trace_id, v_now);
            CONTINUE;
        END IF;
        IF c.task = 'email' THEN
            PERFORM webhook_emit(c.tenant_id, c.booking_id, 'booking.email_sent',
                                 coalesce((SELECT jsonb_build_object('recipient', s.recipient, 'sent_at', s.sent_at)
                                           FROM email_sends s WHERE s.booking_id = c.booking_id), '{}'::jsonb),
                                 c.trace_id, v_now);
        ELSIF c.task = 'invoice' THEN
            PERFORM webhook_emit(c.tenant_id, c.booking_id, 'booking.invoice_issued',
                                 coalesce((SELECT jsonb_build_object('invoice_number', i.number,
                                                                     'issued_at', i.issued_at)
                                           FROM invoices i WHERE i.booking_id = c.booking_id), '{}'::jsonb)
                                 || jsonb_build_object('invoice_url', '/api/v1/bookings/' || c.booking_id || '/invoice'),
                                 c.trace_id, v_now);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM booking_tasks t WHERE t.booking_id = c.booking_id AND t.state <> 'done') THEN
            PERFORM webhook_emit(c.tenant_id, c.booking_id, 'booking.completed',
                                 jsonb_build_object('tasks', (SELECT jsonb_agg(t.task ORDER BY t.task)
                                                              FROM booking_tasks t WHERE t.booking_id = c.booking_id)),
                                 c.trace_id, v_now);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER bookings_webhook_events
    AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_from_booking();

CREATE TRIGGER booking_tasks_webhook_events
    AFTER UPDATE ON booking_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_from_tasks();

-- The webhook queue is one of the platform's queues (booking_core.messaging.contracts.QUEUES):
-- an operator pauses it like the others.
ALTER TABLE queue_pauses DROP CONSTRAINT queue_pauses_queue_check;
ALTER TABLE queue_pauses ADD CONSTRAINT queue_pauses_queue_check
    CHECK (queue IN ('email', 'invoice', 'audit', 'webhook'));
