"""OpenTelemetry SDK set-up from the standard `OTEL_*` environment variables.

With no exporter configured (no `OTEL_EXPORTER_OTLP_*ENDPOINT`, or
`OTEL_TRACES_EXPORTER=none`, or `OTEL_SDK_DISABLED=true`) nothing is installed
and the API's no-op tracer stays in place: tracing then costs nothing.  The
SDK itself reads the sampler (`OTEL_TRACES_SAMPLER[_ARG]`), resource attributes
and batch settings; we only pick the OTLP transport
(`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf`, the default, or `grpc`).
Call once per process, after any fork (gunicorn and Dramatiq import the app in
each worker process, which is where this runs).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import trace

log = logging.getLogger(__name__)
_configured = False


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """True when the environment asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").lower() in ("none", ""):
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporter(env: Mapping[str, str]):
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, got {protocol!r}")
    return OTLPSpanExporter()


def setup_tracing(default_service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with an OTLP exporter if configured; instrument psycopg and redis.

    Returns whether tracing is on.  `OTEL_SERVICE_NAME` overrides the default name.
    """
    global _configured
    env = os.environ if env is None else env
    if _configured or not tracing_enabled(env):
        return _configured
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or default_service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(skip_dep_check=True)
    RedisInstrumentor().instrument()
    _configured = True
    log.info("tracing on: exporting OTLP spans as %s", resource.attributes["service.name"])
    return True


def shutdown() -> None:
    """Flush spans still in the batch queue (on orderly exit)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
