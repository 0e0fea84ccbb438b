"""OpenTelemetry: the SDK set up from `OTEL_*` (`sdk`), and trace context carried across the queue (`tracing`)."""
