"""The chart's booking-events service: routed by the Ingress or the Gateway API, sharing the API's status secret.

Rendered by the real helm binary (see test_chart.py) and validated against Kubernetes'
schemas (the HTTPRoute against a closed schema written from the Gateway API's v1 CRD);
the stream path's regex is checked against real booking ids and the paths the API
must keep.
"""

from __future__ import annotations

import re
import uuid

import jsonschema
import pytest

from helm_helpers import CHART, by_kind, component_name, helm_args, install_helm, template, validate_manifest

PRODUCTION = CHART / "ci" / "production-values.yaml"


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
    # No buffering or timeout annotations: the events service sends `X-Accel-Buffering: no`, and a heartbeat
    # every 15 s (at most 55, by the schema) keeps streams under every controller's 60 s default read timeout.
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
    # production-values names a Secret of its own; the key the chart makes otherwise: tests/test_chart_status_key.py.
    assert secret_ref("api") == {"name": "booking-status", "key": "BOOKING_STATUS_SECRET"}


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


# --- one Ingress per concern, any controller -------------------------------------------------------

def annotations_of(doc: dict) -> dict[str, str]:
    return doc["metadata"].get("annotations") or {}


def test_exactly_one_ingress_carries_cert_managers_annotation(production):
    """cert-manager refuses a second Ingress that asks for the same Secret: only the API's asks."""
    ingresses = by_kind(production, "Ingress")
    assert len(ingresses) >= 2
    asking = [n for n, i in ingresses.items() if any(k.startswith("cert-manager.io/") for k in annotations_of(i))]
    assert asking == [component_name("api")]
    # Every Ingress of the host still serves it over TLS, with that one certificate.
    assert {str(i["spec"]["tls"]) for i in ingresses.values()} == {
        str([{"hosts": ["bookings.acme.example"], "secretName": "bookings-acme-tls"}])}


def test_under_traefik_no_nginx_annotation_renders_and_the_events_routes_still_exist():
    docs = template(install_helm(), *helm_args([PRODUCTION], set_strings={"api.ingress.className": "traefik"}))
    ingresses = by_kind(docs, "Ingress")
    for name, ing in ingresses.items():
        assert not [k for k in annotations_of(ing) if k.startswith("nginx.ingress.kubernetes.io/")], name
        assert ing["spec"]["ingressClassName"] == "traefik", name
        validate_manifest(ing)
    routes = _routes(docs)
    events = {"name": component_name("events"), "port": {"name": "http"}}
    assert routes["/status/"][:2] == ("Prefix", events) and routes["/ops"][:2] == ("Prefix", events)
    stream_path = next(p for p in routes if p.endswith("/events"))
    kind, backend, annotations = routes[stream_path]
    assert (kind, backend) == ("ImplementationSpecific", events)
    assert annotations["traefik.ingress.kubernetes.io/router.pathmatcher"] == "PathRegexp"
    booking = str(uuid.uuid4())
    assert re.search(stream_path, f"/api/v1/bookings/{booking}/events")
    assert not re.search(stream_path, f"/api/v1/bookings/{booking}/invoice")
    # The regex matcher is set on the stream's Ingress only: the Prefix paths stay prefixes.
    stream_ingress = next(i for i in ingresses.values()
                          if any(p["path"] == stream_path for r in i["spec"]["rules"] for p in r["http"]["paths"]))
    assert [p["path"] for r in stream_ingress["spec"]["rules"] for p in r["http"]["paths"]] == [stream_path]


def test_a_controller_without_regex_paths_gets_only_prefix_paths():
    docs = template(install_helm(), *helm_args([PRODUCTION], set_strings={"api.ingress.className": "gce"}))
    paths = [p for i in by_kind(docs, "Ingress").values() for r in i["spec"]["rules"] for p in r["http"]["paths"]]
    assert {p["pathType"] for p in paths} == {"Prefix"}
    assert {p["path"] for p in paths} == {"/", "/status/", "/ops"}
    assert not [k for i in by_kind(docs, "Ingress").values() for k in annotations_of(i)
                if k.startswith(("nginx.", "traefik."))]
    forced = template(install_helm(), *helm_args([PRODUCTION], set_strings={
        "api.ingress.className": "public", "events.ingress.streamRoute": "nginx"}))
    assert any(p["pathType"] == "ImplementationSpecific" for i in by_kind(forced, "Ingress").values()
               for r in i["spec"]["rules"] for p in r["http"]["paths"])


def test_the_events_ingresses_have_values_of_their_own():
    helm = install_helm()
    off = template(helm, *helm_args([PRODUCTION], {"events.ingress.enabled": "false"}))
    assert list(by_kind(off, "Ingress")) == [component_name("api")]
    own = template(helm, *helm_args([PRODUCTION], set_strings={
        "events.ingress.className": "internal", "events.ingress.annotations.team": "streams"}))
    for name, ing in by_kind(own, "Ingress").items():
        if name == component_name("api"):
            assert ing["spec"]["ingressClassName"] == "nginx" and "team" not in annotations_of(ing)
        else:
            assert ing["spec"]["ingressClassName"] == "internal" and annotations_of(ing)["team"] == "streams"


# --- the Gateway API -------------------------------------------------------------------------------

#: A closed schema of the HTTPRoute fields the chart may render, from the Gateway API's v1 CRD
#: (gateway.networking.k8s.io_httproutes.yaml, v1.2): an unknown or misspelt field fails.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PARENT = {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
    "group": {"type": "string"}, "kind": {"type": "string"}, "namespace": {"type": "string"}, "name": _NAME,
    "sectionName": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}
_MATCH = {"type": "object", "additionalProperties": False, "properties": {
    "path": {"type": "object", "additionalProperties": False, "required": ["type", "value"], "properties": {
        "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
        "value": {"type": "string", "pattern": "^/", "maxLength": 1024}}},
    "headers": {"type": "array", "maxItems": 16, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "value"], "properties": {
            "type": {"enum": ["Exact", "RegularExpression"]}, "name": {"type": "string"},
            "value": {"type": "string", "minLength": 1}}}},
    "method": {"enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]}}}
_BACKEND = {"type": "object", "additionalProperties": False, "required": ["name", "port"], "properties": {
    "group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME, "namespace": {"type": "string"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "weight": {"type": "integer", "minimum": 0}}}
HTTPROUTE = {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
             "properties": {
                 "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"},
                 "metadata": {"type": "object", "additionalProperties": False, "required": ["name", "namespace"],
                              "properties": {"name": _NAME, "namespace": _NAME,
                                             "labels": {"type": "object"}, "annotations": {"type": "object"}}},
                 "spec": {"type": "object", "additionalProperties": False, "required": ["parentRefs", "rules"],
                          "properties": {
                              "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": _PARENT},
                              "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string"}},
                              "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                                  "type": "object", "additionalProperties": False, "properties": {
                                      "matches": {"type": "array", "maxItems": 64, "items": _MATCH},
                                      "backendRefs": {"type": "array", "items": _BACKEND}}}}}}}}


def route_for(route: dict, path: str, headers: dict[str, str]) -> dict | None:
    """The backend the Gateway API's precedence picks: the longest matching path prefix, then most headers."""
    best = None
    for rule in route["spec"]["rules"]:
        for m in rule["matches"]:
            prefix = m["path"]["value"]
            if not (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                continue
            if any(headers.get(h["name"]) != h["value"] for h in m.get("headers", [])):
                continue
            key = (len(prefix), len(m.get("headers", [])))
            if best is None or key > best[0]:
                best = (key, rule["backendRefs"][0])
    return best and best[1]


def test_the_gateway_api_route_sends_streams_pages_and_the_api_where_they_belong():
    docs = template(install_helm(), *helm_args([CHART / "ci" / "default-values.yaml"], {
        "api.httpRoute.enabled": "true", "api.httpRoute.parentRefs[0].name": "public",
        "api.httpRoute.parentRefs[0].namespace": "gateways", "api.httpRoute.parentRefs[0].sectionName": "https"}))
    (route,) = by_kind(docs, "HTTPRoute").values()
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(HTTPROUTE).iter_errors(route)]
    assert not errors, errors
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["bookings.example.com"]
    services = by_kind(docs, "Service")
    api = {"name": component_name("api"), "port": services[component_name("api")]["spec"]["ports"][0]["port"]}
    events = {"name": component_name("events"), "port": services[component_name("events")]["spec"]["ports"][0]["port"]}
    booking = str(uuid.uuid4())
    sse = {"Accept": "text/event-stream"}  # what every EventSource sends
    assert route_for(route, f"/api/v1/bookings/{booking}/events", sse) == events
    assert route_for(route, f"/api/v1/bookings/{booking}/events", {}) == api  # not a stream: the API answers 404
    assert route_for(route, f"/api/v1/bookings/{booking}", {}) == api
    assert route_for(route, "/api/v1/bookings", {}) == api
    assert route_for(route, "/status/abc", {}) == events and route_for(route, "/ops/queues", {}) == events
    assert route_for(route, "/healthz", {}) == api
    assert not by_kind(docs, "Ingress")  # a Gateway instead of an Ingress
