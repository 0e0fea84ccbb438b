-- Fair share of the async work between tenants (issue 20; docs/architecture.md, decision 13).
--
-- The outbox becomes the waiting room: the relay publishes into each Redis queue only a
-- bounded publish-ahead, choosing whose rows go next by tenant (outbox_relay.fairshare).
--
-- tenant_id: derived from the payload every message already carries, so no writer changes
-- and no writer can forget it ('' for a message of no tenant: it is a tenant of its own).
-- available_at: a retry waits out its backoff here, not in Redis's delayed queue, so it
-- queues behind the other tenants' work like any new message.
ALTER TABLE outbox
    ADD COLUMN tenant_id text GENERATED ALWAYS AS (coalesce(payload->>'tenant_id', '')) STORED,
    ADD COLUMN available_at timestamptz NOT NULL DEFAULT '-infinity';
CREATE INDEX outbox_queue_tenant ON outbox (queue, tenant_id, id);

-- The scheduler's state per queue: its virtual clock, and each tenant's finish tag while it is
-- ahead of the clock (a tag at or below it means the same as none, and is deleted).  Only the
-- relay holding the queue's turn (an advisory lock, docs/lock-order.md) reads or writes them.
CREATE TABLE fair_share_clocks (
    queue  text PRIMARY KEY,
    vtime  double precision NOT NULL DEFAULT 0
);
CREATE TABLE fair_share_tags (
    queue      text NOT NULL,
    tenant_id  text NOT NULL,
    finish     double precision NOT NULL,
    PRIMARY KEY (queue, tenant_id)
);
