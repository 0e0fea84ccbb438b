-- A fair turn reads only due rows (issue 20; docs/architecture.md, decision 13).
--
-- A turn reads each tenant's due rows oldest first up to its room.  Through (queue, tenant_id, id)
-- it had to read past every row still waiting out a retry's backoff (available_at was not in the
-- index), so one tenant's pile of waiting retries (webhooks back off up to 6 h) slowed every turn
-- of the queue for every tenant.  Keyed (queue, tenant_id, available_at, id), each tenant's due
-- rows come first in the index, in the order they became due, and a scan stops at the first row
-- not yet due.
--
-- available_at now means when the row became (or becomes) due: a new row is due at its insert
-- (it was '-infinity'), so a tenant's new rows keep their insert order and a due retry takes its
-- place among them when its backoff ends, as Dramatiq's delayed queue would put it; with
-- '-infinity' every new row of the tenant would go before its due retries, however late it came.
ALTER TABLE outbox ALTER COLUMN available_at SET DEFAULT clock_timestamp();
UPDATE outbox SET available_at = created_at WHERE available_at = '-infinity';
DROP INDEX outbox_queue_tenant;
CREATE INDEX outbox_queue_tenant_due ON outbox (queue, tenant_id, available_at, id);
