"""The booking write model in Postgres: bookings with their tasks, tenants and tokens, idempotency keys,
and the value rules the API and the workers share (currencies, email addresses, progress-page links)."""
