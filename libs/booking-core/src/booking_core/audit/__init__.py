"""The audit trail: each tenant's hash chain (`chain`), and the events workers append with their work
(`booking_audit`)."""
