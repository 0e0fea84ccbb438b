"""The chart's booking-events service: routed by the Ingress, sharing the API's status secret, serving /ops.

Rendered by the real helm binary (see test_chart.py); the stream path's regex is
checked against real booking ids and the paths the API must keep.
"""

from __future__ import annotations

import re
import uuid

import pytest

from helm_helpers import CHART, by_kind, component_name, helm_args, install_helm, template


@pytest.fixture(scope="module")
def production():
    helm = install_helm()
    return template(helm, *helm_args([CHART / "ci" / "production-values.yaml"]))


def _routes(docs) -> dict[str, tuple[str, dict]]:
    out = {}
    for ing in by_kind(docs, "Ingress").values():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                out[p["path"]] = (p["pathType"], p["backend"]["service"], ing["metadata"].get("annotations", {}))
    return out


def test_the_ingress_sends_streams_and_progress_pages_to_the_events_service(production):
    routes = _routes(production)
    events = {"name": component_name("events"), "port": {"name": "http"}}
    stream_path = next(p for p in routes if p.endswith("/events"))
    kind, backend, annotations = routes[stream_path]
    assert (kind, backend) == ("ImplementationSpecific", events)
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > 15
    assert routes["/status/"][:2] == ("Prefix", events)
    assert routes["/ops"][:2] == ("Prefix", events), "the ops console, its streams and assets"
    assert routes["/"][1] == {"name": component_name("api"), "port": {"name": "http"}}
    # The regex takes a booking's stream, and nothing the API serves.
    booking = str(uuid.uuid4())
    assert re.fullmatch(stream_path, f"/api/v1/bookings/{booking}/events")
    for api_path in (f"/api/v1/bookings/{booking}", f"/api/v1/bookings/{booking}/invoice", "/api/v1/bookings"):
        assert not re.match(stream_path, api_path)


def test_the_events_service_selects_its_pods_on_the_port_the_pods_serve(production):
    service = by_kind(production, "Service")[component_name("events")]
    pod = by_kind(production, "Deployment")[component_name("events")]["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["command"] == ["booking-events"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": int(env["BOOKING_EVENTS_PORT"])}
    assert env["BOOKING_EVENTS_HEARTBEAT_MS"] == "15000"


def test_the_api_and_the_events_service_read_one_status_secret(production):
    def secret_ref(component: str) -> dict:
        spec = by_kind(production, "Deployment")[component_name(component)]["spec"]["template"]["spec"]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        return env["BOOKING_STATUS_SECRET"]["valueFrom"]["secretKeyRef"]

    assert secret_ref("api") == secret_ref("events")
    api = by_kind(production, "Deployment")[component_name("api")]["spec"]["template"]["spec"]["containers"][0]
    ttl = next(e["value"] for e in api["env"] if e["name"] == "BOOKING_STATUS_TTL_SECONDS")
    assert ttl == "2592000", "an integer, as Settings reads it (not helm's 2.592e+06)"
    secret = by_kind(production, "Secret")[secret_ref("api")["name"]]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["stringData"]["BOOKING_STATUS_SECRET"]) >= 48


def test_the_console_trusts_the_ingress_for_https_and_takes_its_settings():
    helm = install_helm()
    docs = template(helm, *helm_args([CHART / "ci" / "production-values.yaml"],
                                     set_values={"events.console.sessionMaxSeconds": 3600},
                                     set_strings={"events.console.traceUrlTemplate":
                                                  "https://jaeger.example/trace/{trace_id}"}))
    container = by_kind(docs, "Deployment")[component_name("events")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BOOKING_TRUST_FORWARDED_PROTO"] == "true"
    assert env["BOOKING_FORWARDED_FOR_HOPS"] == "1"  # the stream caps count the client the Ingress saw
    assert env["BOOKING_TRACE_URL_TEMPLATE"] == "https://jaeger.example/trace/{trace_id}"
    assert env["BOOKING_OPS_SESSION_MAX_SECONDS"] == "3600" and env["BOOKING_OPS_SESSION_IDLE_SECONDS"] == "28800"


def test_the_schema_refuses_a_trace_template_without_its_placeholder():
    helm = install_helm()
    with pytest.raises(AssertionError, match="traceUrlTemplate"):
        template(helm, *helm_args([CHART / "ci" / "production-values.yaml"],
                                  set_strings={"events.console.traceUrlTemplate": "javascript:alert(1)"}))
