"""Tracing is on only when the OTEL_* environment asks for an exporter."""

from __future__ import annotations

import pytest

from booking_core.telemetry.sdk import tracing_enabled


@pytest.mark.parametrize(("env", "enabled"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_tracing_enabled_follows_the_standard_variables(env, enabled):
    assert tracing_enabled(env) is enabled
