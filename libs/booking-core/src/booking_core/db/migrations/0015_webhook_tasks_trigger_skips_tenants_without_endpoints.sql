-- A task completion of a tenant without webhooks pays one index probe for them, not the events'
-- payloads (issue 22, review of migration 0013).
--
-- webhook_events_from_tasks (0013) took the booking's numbering lock and built each event's data
-- (the email_sends and invoices lookups, the completion check over booking_tasks and its
-- jsonb_agg) before webhook_emit looked for an endpoint and dropped the event: most tenants have
-- none, and every worker's commit paid that work.  The loop now reads only the rows whose tenant
-- has a live endpoint (webhook_endpoints_live makes that one probe per row).  For a tenant with
-- one nothing changes: the same rows in the same order, the same lock (rank 7 in
-- docs/lock-order.md, already held from booking_events_from_update) before the same emits, and
-- webhook_emit still matches each event's type.  An endpoint created between the two reads hears
-- the change or not, as it could already with webhook_emit's own read.
--
-- The outbox message's trace context, written by both webhook_fan_out and webhook_emit, is one
-- function now.

-- The outbox options that put a webhook message in the booking's trace: its spans join the trace
-- with `p_span_of` (the delivery's or the event's id) standing in for the parent span, which the
-- trigger does not have.  '{}' for a missing or malformed trace id.
CREATE FUNCTION webhook_trace_options(p_trace text, p_span_of uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_trace ~ '^[0-9a-f]{32}$' AND p_trace <> repeat('0', 32) THEN
               jsonb_build_object('trace_context', jsonb_build_object(
                   'traceparent', '00-' || p_trace || '-' || substr(replace(p_span_of::text, '-', ''), 1, 16) || '-01'))
           ELSE '{}'::jsonb END
$$;

CREATE OR REPLACE FUNCTION webhook_fan_out(p_event uuid) RETURNS integer LANGUAGE plpgsql AS $$
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
               webhook_trace_options(ev.trace_id, d.id)
        FROM d RETURNING 1
    )
    SELECT count(*) INTO n FROM o;
    UPDATE webhook_events SET fanned_out_at = clock_timestamp() WHERE id = ev.id;
    IF n > 0 THEN
        PERFORM pg_notify('booking_outbox', '') FROM relay_wakeup WHERE sleeping;
    END IF;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION webhook_emit(p_tenant uuid, p_booking uuid, p_type text, p_data jsonb, p_trace text,
                                        p_at timestamptz, p_defer boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
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
            webhook_trace_options(p_trace, v_event));
END $$;

CREATE OR REPLACE FUNCTION webhook_events_from_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_now timestamptz := clock_timestamp();
BEGIN
    FOR c IN
        SELECT n.booking_id, n.task, n.state, n.attempts, b.tenant_id, b.trace_id
        FROM new_rows n JOIN old_rows o USING (booking_id, task) JOIN bookings b ON b.id = n.booking_id
        WHERE n.state IN ('done', 'dead') AND n.state IS DISTINCT FROM o.state
          -- A tenant without a live endpoint records no event: skip its rows before any work.
          AND EXISTS (SELECT 1 FROM webhook_endpoints e
                      WHERE e.tenant_id = b.tenant_id AND e.enabled AND e.deleted_at IS NULL)
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
