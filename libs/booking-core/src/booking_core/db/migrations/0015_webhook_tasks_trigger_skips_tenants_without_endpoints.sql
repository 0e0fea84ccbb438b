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
