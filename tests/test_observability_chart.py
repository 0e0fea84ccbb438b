"""Observability in the chart: metrics wiring, Prometheus Operator objects, alert rules, the dashboard.

PromQL is checked by Prometheus' own parser, never by eye: `promtool check rules`
on the rendered PrometheusRule's groups and on every dashboard query wrapped as a
recording rule, and `promtool test rules` proves each alert fires on the series it
should, after its `for`, and stays quiet otherwise. The tests that need promtool
take the `promtool` fixture and FAIL, never skip, without it: it comes with
Debian's `prometheus` package (`apt-get install --no-install-recommends prometheus`).
The Prometheus Operator's objects are not in Kubernetes' schemas; they are checked
against closed schemas written here from its v1 CRDs. The last test runs the
rendered processes and scrapes each where the monitors say.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml

from helm_helpers import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    ROOT,
    LocalRelease,
    by_kind,
    component_name,
    containers,
    helm_args,
    pod_labels,
    selects,
    template,
)

DASHBOARD = CHART / "dashboards" / "booking-platform.json"
QUEUES = ("email", "invoice", "audit", "webhook")
#: The queues a booking's tasks go through (a booking without webhook endpoints sends no webhook message).
TASK_QUEUES = ("email", "invoice", "audit")
SERVICES = {"api": "booking-api", "relay": "booking-relay", "email-worker": "email-worker",
            "invoice-worker": "invoice-worker", "audit-worker": "audit-worker"}
#: Everything switched on, at the default thresholds.
OBSERVED = {"metrics.serviceMonitor.enabled": "true", "metrics.prometheusRule.enabled": "true",
            "grafana.dashboards.enabled": "true"}
DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"

#: The series the platform exports (the Python side of issue 3), with histograms' sample names.
EXPORTED = {
    "booking_http_requests_total", "booking_outbox_messages", "booking_outbox_oldest_age_seconds",
    "booking_queue_messages", "booking_queue_oldest_age_seconds", "booking_pipeline_read_ok",
    "booking_dead_letters_open", "booking_api_degraded", "queue_autoscaler_ready", "queue_autoscaler_fallback",
    "booking_webhook_longest_failing_seconds",
    "booking_relay_published_total", "booking_relay_failures_total",
    "booking_outbox_queue_messages", "booking_queue_oldest_waiting_age_seconds", "booking_tenant_backlog_messages",
    "booking_tenant_oldest_age_seconds",
    "dramatiq_messages_total", "dramatiq_message_errors_total", "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total", "dramatiq_messages_inprogress",
    *(f"{h}_{s}" for h in ("booking_http_request_duration_seconds", "booking_relay_batch_duration_seconds",
                           "dramatiq_message_duration_milliseconds") for s in ("bucket", "sum", "count")),
}
#: Labelled counters that have no sample until their first event (an error, a retry, a failure).
FIRST_EVENT_ONLY = {"booking_relay_failures_total", "dramatiq_message_errors_total",
                    "dramatiq_message_retries_total", "dramatiq_message_rejects_total"}
#: Per-tenant series the relay serves only while a tenant has rows waiting in the outbox (its labels
#: are those tenants; none waits once the test's one booking is published).  Their exposition with
#: rows waiting is checked in services/outbox-relay/tests/test_backlog_report.py.
WHILE_A_TENANT_WAITS = {"booking_tenant_backlog_messages", "booking_tenant_oldest_age_seconds"}


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' promtool; its absence is a failure, so CI cannot pass without checking PromQL."""
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool is not installed: `apt-get install --no-install-recommends prometheus` "
                    "(Debian's package ships it); the PromQL checks must not be skipped")
    return path


@pytest.fixture(scope="module")
def rendered(helm) -> dict[str, list[dict]]:
    """Each ci values file's rendering, and `observed`: the defaults with everything observable switched on."""
    out = {f.name: template(helm, *helm_args([f])) for f in CI_VALUES}
    out["observed"] = template(helm, *helm_args([DEFAULT_VALUES], OBSERVED))
    return out


def only(docs: list[dict], kind: str) -> dict:
    (doc,) = by_kind(docs, kind).values()
    return doc


def container_of(docs: list[dict], component: str) -> dict:
    return {o["metadata"]["name"]: c for o, c in containers(docs)}[component_name(component)]


def pod_spec_of(docs: list[dict], component: str) -> dict:
    return by_kind(docs, "Deployment")[component_name(component)]["spec"]["template"]


def volume_of(pod: dict, container: dict, path: str) -> dict:
    """The volume a container's `path` lives on (the longest mount prefix)."""
    mounts = [m for m in container["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
    assert mounts, f"{path} is on the read-only root filesystem"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])


def port_named(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container.get("ports", []) if p["name"] == name)


def env_list(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


# --- metrics wiring -----------------------------------------------------------------------------

def test_the_api_runs_gunicorn_with_its_config_and_a_multiprocess_dir_on_an_emptydir(rendered):
    docs = rendered["default-values.yaml"]
    api = container_of(docs, "api")
    assert api["command"][:2] == ["gunicorn", "--config=python:booking_api.gunicorn_conf"]
    directory = env_list(api)["PROMETHEUS_MULTIPROC_DIR"]
    assert "emptyDir" in volume_of(pod_spec_of(docs, "api"), api, directory)
    assert api["securityContext"]["readOnlyRootFilesystem"] is True


def test_relay_and_workers_serve_metrics_on_a_port_named_metrics_from_values(rendered, helm):
    docs = rendered["default-values.yaml"]
    relay = container_of(docs, "relay")
    assert port_named(relay, "metrics") == 9100 == int(env_list(relay)["BOOKING_METRICS_PORT"])
    for q in QUEUES:
        worker = container_of(docs, f"{q}-worker")
        env = env_list(worker)
        assert port_named(worker, "metrics") == 9191 == int(env["dramatiq_prom_port"])
        assert env["dramatiq_prom_host"] == "0.0.0.0"  # noqa: S104 - the pod's IP, for Prometheus
        assert "emptyDir" in volume_of(pod_spec_of(docs, f"{q}-worker"), worker, env["dramatiq_prom_db"])
    moved = template(helm, *helm_args([DEFAULT_VALUES], {"metrics.relayPort": 9400, "metrics.workerPort": 9500}))
    assert int(env_list(container_of(moved, "relay"))["BOOKING_METRICS_PORT"]) == 9400
    worker = container_of(moved, "audit-worker")
    assert port_named(worker, "metrics") == 9500 == int(env_list(worker)["dramatiq_prom_port"])


def test_extra_env_still_overrides_the_metrics_settings(helm):
    docs = template(helm, *helm_args([DEFAULT_VALUES], {"workers.email.extraEnv[0].name": "dramatiq_prom_db",
                                                        "workers.email.extraEnv[0].value": "/scratch/prom"}))
    env = container_of(docs, "email-worker")["env"]
    # Kubernetes takes the last of two same-named variables: the user's.
    assert [e["value"] for e in env if e["name"] == "dramatiq_prom_db"][-1] == "/scratch/prom"
    assert env[-1]["name"] == "dramatiq_prom_db"


def test_scrape_annotations_point_at_each_pods_metrics_and_pod_annotations_win(rendered, helm):
    docs = rendered["default-values.yaml"]
    expected = {"api": "9100", "relay": "9100", **{f"{q}-worker": "9191" for q in QUEUES}}
    for component, port in expected.items():
        ann = pod_spec_of(docs, component)["metadata"]["annotations"]
        assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]) == (
            "true", port, "/metrics"), component
        assert "checksum/config" in ann
    # production-values scrapes through the PodMonitor: its podAnnotations turn annotation scraping off.
    prod = rendered["production-values.yaml"]
    assert pod_spec_of(prod, "relay")["metadata"]["annotations"]["prometheus.io/scrape"] == "false"
    off = template(helm, *helm_args([DEFAULT_VALUES], {"metrics.scrapeAnnotations": "false"}))
    assert not any(k.startswith("prometheus.io/") for k in pod_spec_of(off, "api")["metadata"]["annotations"])


def test_monitors_are_only_rendered_when_asked_for(rendered):
    for name in ("default-values.yaml", "dev-values.yaml", "fixed-replicas-values.yaml"):
        kinds = {d["kind"] for d in rendered[name]}
        assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}, name
        assert component_name("dashboards") not in by_kind(rendered[name], "ConfigMap")


def test_the_servicemonitor_scrapes_the_api_pods_through_their_metrics_service(rendered):
    docs = rendered["observed"]
    sm = only(docs, "ServiceMonitor")
    service = by_kind(docs, "Service")[component_name("api-metrics")]
    assert selects(sm["spec"]["selector"], service["metadata"]["labels"])
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    # The metrics port, never the HTTP port that the Ingress routes.
    assert endpoint["port"] == "metrics" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    services = by_kind(docs, "Service").values()
    assert [d for d in services if selects(sm["spec"]["selector"], d["metadata"]["labels"])] == [service]
    # A ClusterIP Service of its own: the API's Service, which may be a LoadBalancer, has no metrics port.
    assert service["spec"]["clusterIP"] == "None" and service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert [p["name"] for p in by_kind(docs, "Service")[component_name("api")]["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("variant", ["fixed-replicas-values.yaml", "production-values.yaml", "observed"])
def test_no_service_published_outside_the_cluster_carries_a_metrics_port(rendered, variant):
    docs = rendered[variant]
    published = [s for s in by_kind(docs, "Service").values()
                 if s["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort")]
    if variant == "fixed-replicas-values.yaml":
        assert published, "the LoadBalancer variant publishes the API"
    for service in published:
        pods = [d for d in docs if d["kind"] == "Deployment" and selects(
            {"matchLabels": service["spec"]["selector"]}, pod_labels(d))]
        metrics_ports = {p["containerPort"] for d in pods for c in d["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", []) if p["name"] == "metrics"}
        for port in service["spec"]["ports"]:
            assert port["name"] != "metrics" and port["targetPort"] not in ("metrics", *metrics_ports), (
                f"{service['metadata']['name']} publishes {port}")


def test_the_podmonitor_scrapes_the_relay_the_operator_the_events_pods_and_every_worker_only(rendered):
    docs = rendered["observed"]
    pm = only(docs, "PodMonitor")
    endpoints = {e["port"]: e for e in pm["spec"]["podMetricsEndpoints"]}
    assert {(p, e["path"]) for p, e in endpoints.items()} == {("metrics", "/metrics"), ("http", "/metrics")}
    selected = {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "Pod", "Job", "StatefulSet")
                and selects(pm["spec"]["selector"], pod_labels(d))}
    assert selected == {component_name(c) for c in ("relay", "operator", "events", *(f"{q}-worker" for q in QUEUES))}
    for name in selected:
        c = by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"] for p in c["ports"]}
        # Each pod is scraped by exactly one endpoint: the events pods serve /metrics on `http`, the rest on `metrics`.
        assert len(ports & set(endpoints)) == 1, (name, ports)
    # Targets carry the pods' component and release, so alerts need no pod-name patterns.
    for monitor in (pm, only(docs, "ServiceMonitor")):
        assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "app.kubernetes.io/component"]


def test_monitor_labels_let_a_prometheus_select_them(rendered):
    prod = rendered["production-values.yaml"]
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert only(prod, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    assert only(prod, "ServiceMonitor")["spec"]["endpoints"][0]["interval"] == "15s"


def test_a_scraper_in_the_releases_own_namespace_is_matched_by_pod_labels(helm, tmp_path):
    values = tmp_path / "scraper.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": {"metricsScraper": {"namespaces": [],
                                                                           "podLabels": {"app": "prom"}}}}))
    docs = template(helm, *helm_args([DEFAULT_VALUES, values]))
    policy = by_kind(docs, "NetworkPolicy")[component_name("metrics")]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}],
                                          "from": [{"podSelector": {"matchLabels": {"app": "prom"}}}]}]
    prod = by_kind(template(helm, *helm_args([CHART / "ci" / "production-values.yaml"])), "NetworkPolicy")
    assert prod[component_name("metrics")]["spec"]["ingress"][0]["from"] == [{
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]


# --- tracing settings ---------------------------------------------------------------------------

def test_otel_settings_come_from_values_and_each_service_names_itself(rendered):
    prod = rendered["production-values.yaml"]
    config = by_kind(prod, "ConfigMap")[component_name("config")]["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317"
    assert config["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert (config["OTEL_TRACES_SAMPLER"], config["OTEL_TRACES_SAMPLER_ARG"]) == ("parentbased_traceidratio", "0.25")
    attributes = dict(kv.split("=", 1) for kv in config["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attributes["deployment.environment"] == "production"
    assert attributes["k8s.namespace.name"] == NAMESPACE
    assert "OTEL_SDK_DISABLED" not in config
    for component, service in SERVICES.items():
        assert env_list(container_of(prod, component))["OTEL_SERVICE_NAME"] == service
    assert any(e["name"] == "OTEL_EXPORTER_OTLP_HEADERS" for e in container_of(prod, "api")["env"])
    default = by_kind(rendered["default-values.yaml"], "ConfigMap")[component_name("config")]["data"]
    assert default["OTEL_SDK_DISABLED"] == "true"
    assert not any(k.startswith("OTEL_TRACES") or k.startswith("OTEL_EXPORTER") for k in default)


# --- the Prometheus Operator's objects, against closed schemas of its v1 CRDs -------------------

DURATION = {"type": "string",
            "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
LABEL_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": STRINGS,
    "matchExpressions": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["key", "operator"],
        "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                       "values": {"type": "array", "items": {"type": "string"}}}}}}}
NAMESPACE_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}}
ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
    "port": {"type": "string", "minLength": 1}, "path": {"type": "string", "pattern": "^/"},
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]}, "interval": DURATION, "scrapeTimeout": DURATION,
    "honorLabels": {"type": "boolean"}}}


def cr_schema(kind: str, spec: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                "metadata": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
                    "name": NAME, "namespace": NAME, "labels": STRINGS, "annotations": STRINGS}},
                "spec": spec}}


RULE = {"type": "object", "additionalProperties": False, "required": ["expr"],
        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
        "properties": {"alert": {"type": "string", "minLength": 1}, "record": {"type": "string", "minLength": 1},
                       "expr": {"type": "string", "minLength": 1}, "for": DURATION, "keep_firing_for": DURATION,
                       "labels": STRINGS, "annotations": STRINGS}}
CR_SCHEMAS = {
    "ServiceMonitor": cr_schema("ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"], "properties": {
            "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}}}),
    "PodMonitor": cr_schema("PodMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "podMetricsEndpoints"],
        "properties": {"selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR,
                       "jobLabel": {"type": "string"},
                       "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                       "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}}}),
    "PrometheusRule": cr_schema("PrometheusRule", {
        "type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"], "properties": {
                    "name": {"type": "string", "minLength": 1}, "interval": DURATION,
                    "rules": {"type": "array", "minItems": 1, "items": RULE}}}}}}),
}


def cr_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(CR_SCHEMAS[doc["kind"]])
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("variant", ["observed", "production-values.yaml"])
def test_monitoring_objects_are_valid_against_the_prometheus_operator_crds(rendered, variant):
    docs = [d for d in rendered[variant] if d["kind"] in CR_SCHEMAS]
    assert {d["kind"] for d in docs} == set(CR_SCHEMAS)
    for d in docs:
        assert not cr_errors(d), f"{d['kind']}/{d['metadata']['name']}: {cr_errors(d)}"


def test_the_crd_check_refuses_unknown_fields_and_bad_durations(rendered):
    sm = only(rendered["observed"], "ServiceMonitor")
    bad_field = json.loads(json.dumps(sm))
    bad_field["spec"]["endpoints"][0]["bogus"] = 1
    bad_duration = json.loads(json.dumps(sm))
    bad_duration["spec"]["endpoints"][0]["interval"] = "30 seconds"
    rule = json.loads(json.dumps(only(rendered["observed"], "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["record"] = "both:alert_and_record"
    for doc in (bad_field, bad_duration, rule):
        assert cr_errors(doc)


def test_every_alert_says_what_is_wrong_and_what_to_do(rendered):
    rule = only(rendered["observed"], "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} == {
        "BookingQueueBacklogGrowing", "BookingDeadLetters", "BookingOutboxStuck", "BookingWorkerStalled",
        "BookingApiErrorRateHigh", "BookingTaskErrorRateHigh", "BookingRelayFailing", "BookingMetricsReadFailing",
        "BookingMetricsMissing", "BookingScrapeTargetDown", "BookingApiDegraded", "BookingOperatorDown",
        "BookingQueueScalerNotReady", "BookingQueueScalerFallback", "BookingQueueOldestTaskOld",
        "BookingWebhookEndpointFailing"}
    for r in alerts:
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert len(r["annotations"]["summary"]) > 30 and "kubectl" in r["annotations"]["description"], r["alert"]
        # Scoped to the release's namespace: another release's series never fire this one's alerts.
        assert f'namespace="{NAMESPACE}"' in r["expr"], r["alert"]
    dead = next(r for r in alerts if r["alert"] == "BookingDeadLetters")
    admin = f"kubectl -n {NAMESPACE} exec deploy/{component_name('api')} -- booking-admin"
    assert f"{admin} dlq list --queue" in dead["annotations"]["description"]
    prod = only(rendered["production-values.yaml"], "PrometheusRule")
    prod_dead = next(r for g in prod["spec"]["groups"] for r in g["rules"] if r["alert"] == "BookingDeadLetters")
    assert prod_dead["for"] == "1m" and prod_dead["labels"] == {"severity": "critical", "team": "bookings"}


RUNBOOKS = ROOT / "docs" / "runbooks"


def test_every_alert_links_its_own_runbook_and_every_runbook_has_an_alert(rendered, helm):
    rules = alert_rules(rendered["observed"])
    base = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]["runbookBaseUrl"]
    for r in rules:
        url = r["annotations"]["runbook_url"]
        assert url == f"{base}/{r['alert']}.md", r["alert"]
        page = RUNBOOKS / f"{r['alert']}.md"
        assert page.is_file(), f"{r['alert']}: {page.relative_to(ROOT)} is missing"
        text = page.read_text()
        assert text.startswith(f"# {r['alert']}\n"), page.name
        for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
            assert section in text, f"{page.name} lacks {section}"
    assert {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"} == {r["alert"] for r in rules}
    moved = template(helm, *helm_args([DEFAULT_VALUES], OBSERVED, {
        "metrics.prometheusRule.runbookBaseUrl": "https://git.acme.example/bookings/-/blob/v2/docs/runbooks"}))
    assert all(r["annotations"]["runbook_url"].startswith("https://git.acme.example/bookings/-/blob/v2/docs/runbooks/")
               for r in alert_rules(moved))
    # Without the operator there is nothing to alert about it.
    off = template(helm, *helm_args([DEFAULT_VALUES], {**OBSERVED, "operator.enabled": "false"}))
    assert not {r["alert"] for r in alert_rules(off)} & {
        "BookingOperatorDown", "BookingQueueScalerNotReady", "BookingQueueScalerFallback"}


# --- the dashboard ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    return [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    return [(f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"])
            for p in all_panels(dashboard) for t in p.get("targets", [])]


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable(dashboard):
    assert dashboard["uid"] == "booking-platform" and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "queue"} <= set(variables)
    ds = {"type": "prometheus", "uid": "${datasource}"}
    assert variables["namespace"]["datasource"] == variables["queue"]["datasource"] == ds
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {p['id']} overlap"
                cells[(x, y)] = p["id"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == ds and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ds and t["expr"].strip(), p["title"]


def test_the_dashboard_shows_what_the_on_call_needs(dashboard):
    text = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in all_panels(dashboard)}
    everything = " ".join(text.values())
    latency = text["Accept latency: POST /api/v1/bookings"]
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(booking_http_request_duration_seconds_bucket" in latency
    assert 'route="/api/v1/bookings", method="POST"' in latency
    assert "sum by (status) (rate(booking_http_requests_total" in text["Throughput: POST /api/v1/bookings by status"]
    assert "max by (queue, state) (booking_queue_messages" in text["Queue depth by state"]
    assert "booking_queue_oldest_age_seconds" in text["Oldest ready message age"]
    assert "booking_dead_letters_open" in text["Dead letters"]
    for metric in ("dramatiq_messages_total", "dramatiq_message_errors_total", "dramatiq_message_retries_total",
                   "dramatiq_message_rejects_total", "booking_outbox_messages", "booking_outbox_oldest_age_seconds",
                   "booking_relay_published_total", "booking_relay_failures_total"):
        assert f"{metric}{{" in everything, metric
    assert not summed_gauges(everything)


def summed_gauges(promql: str) -> list[str]:
    """Queue and outbox gauges summed straight: every API pod reports the same values, so that counts them twice."""
    return re.findall(r"sum(?:\s+by\s*\([^)]*\))?\s*\(\s*((?:booking_queue|booking_outbox)\w*)", promql)


def test_the_dashboard_ships_in_a_configmap_for_grafanas_sidecar(rendered, helm):
    cm = by_kind(rendered["observed"], "ConfigMap")[component_name("dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE  # the release's, unless grafana.dashboards.namespace names another
    assert cm["data"]["booking-platform.json"] == DASHBOARD.read_text().rstrip("\n")
    prod = by_kind(rendered["production-values.yaml"], "ConfigMap")[component_name("dashboards")]
    assert prod["metadata"]["namespace"] == "monitoring"
    assert prod["metadata"]["annotations"] == {"grafana_folder": "Bookings"}
    other = template(helm, *helm_args([DEFAULT_VALUES], {"grafana.dashboards.enabled": "true",
                                                         "grafana.dashboards.label": "dashboards"},
                                      {"grafana.dashboards.labelValue": "bookings"}))
    assert by_kind(other, "ConfigMap")[component_name("dashboards")]["metadata"]["labels"]["dashboards"] == "bookings"


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b((?:booking|dramatiq|queue_autoscaler)_[a-z_]+)\b", expr))
    if re.search(r"\bup\{", expr):
        names.add("up")
    return names


def alert_rules(docs: list[dict]) -> list[dict]:
    return [r for g in only(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]


def test_the_dashboard_and_the_alerts_use_only_series_the_platform_exports(rendered, dashboard):
    used = set()
    for where, expr in queries(dashboard) + [(r["alert"], r["expr"]) for r in alert_rules(rendered["observed"])]:
        names = metric_names(expr)
        assert names, f"{where}: no metric of the platform in {expr}"
        unknown = names - EXPORTED - {"up"}
        assert not unknown, f"{where}: {unknown} is not exported"
        used |= names
        assert not summed_gauges(expr), f"{where}: sums gauges every API pod reports alike"
    assert used >= EXPORTED - {f"{h}_{s}" for h in ("booking_http_request_duration_seconds",
                                                    "booking_relay_batch_duration_seconds",
                                                    "dramatiq_message_duration_milliseconds")
                               for s in ("sum", "count")}


# --- PromQL, checked by promtool ----------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$namespace": NAMESPACE, "$queue": "email|invoice"}


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Grafana would send it (with sample variable values)."""
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    left = re.findall(r"\$\{?[A-Za-z_]\w*", expr)
    assert not left, f"unknown Grafana variables {left} in {expr}"
    return expr


def write_rules(path: Path, groups: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_rules(promtool: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variant", ["observed", "production-values.yaml", "tuned"])
def test_promtool_accepts_the_rendered_alert_rules(promtool, rendered, helm, variant, tmp_path):
    if variant == "tuned":
        docs = template(helm, *helm_args([DEFAULT_VALUES], {
            **OBSERVED, "metrics.prometheusRule.alerts.backlogGrowing.minutes": 45,
            "metrics.prometheusRule.alerts.apiErrors.ratio": 0.5,
            "metrics.prometheusRule.alerts.outboxStuck.for": "90s",
            "fullnameOverride": "bookings.v2", "metrics.prometheusRule.alertLabels.team": "stays"}))
    else:
        docs = rendered[variant]
    spec = only(docs, "PrometheusRule")["spec"]
    proc = check_rules(promtool, write_rules(tmp_path / "rules.yaml", spec["groups"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in spec['groups'])} rules found" in proc.stdout


def test_promtool_accepts_every_dashboard_query(promtool, dashboard, tmp_path):
    rules = [{"record": f"dashboard:panel_{i}:query", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(queries(dashboard))]
    assert len(rules) >= 20
    proc = check_rules(promtool, write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_promtool_refuses_broken_promql_so_the_checks_above_mean_something(promtool, tmp_path):
    for bad in ("sum(rate(booking_http_requests_total[5m])", 'booking_queue_messages{state="dead"} >',
                "rate(booking_queue_messages)"):
        proc = check_rules(promtool, write_rules(tmp_path / "bad.yaml", [
            {"name": "bad", "rules": [{"record": "bad:rule", "expr": bad}]}]))
        assert proc.returncode != 0, bad


# --- the alerts, unit-tested with `promtool test rules` -----------------------------------------

def expand(template_text: str, labels: dict[str, str], value: str) -> str:
    """An annotation as Prometheus renders it, for the two fields these use: $labels.NAME and $value."""
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m[1]], template_text)
    text = re.sub(r"\{\{\s*\$value(\s*\|\s*\w+)?\s*\}\}", value, text)
    assert "{{" not in text, text
    return text


def series(name: str, values: str, **labels: str) -> dict:
    labels = {"namespace": NAMESPACE, **labels}
    return {"series": f"{name}{{{', '.join(f'{k}={json.dumps(v)}' for k, v in labels.items())}}}", "values": values}


API_POD = {"pod": "booking-booking-platform-api-6d4f9-x2x7q"}
OTHER_API_POD = {"pod": "booking-booking-platform-api-6d4f9-k9mzt"}
POST = {"route": "/api/v1/bookings", "method": "POST"}
#: The labels podTargetLabels gives every target of the release.
TARGET = {"app_kubernetes_io_instance": "booking"}
WORKER = {"app_kubernetes_io_component": "email-worker"}
OPERATOR = {"pod": "booking-booking-platform-operator-5d-q2", "exported_namespace": NAMESPACE}

#: alert -> (input series, [(eval time, [(alert labels, rendered $value)]), ...]). An empty list: must not fire.
ALERT_CASES = {
    "BookingDeadLetters": (
        [series("booking_dead_letters_open", "0x5 2x30", queue="email", **API_POD),
         series("booking_dead_letters_open", "0x5 2x30", queue="email", **OTHER_API_POD),
         series("booking_dead_letters_open", "0x40", queue="invoice", **API_POD),
         # Redis' cached copy says nothing: the alert reads the Postgres record.
         series("booking_queue_messages", "7x40", queue="invoice", state="dead", **API_POD)],
        [("9m", []), ("12m", [({"queue": "email"}, "2")])]),
    "BookingOutboxStuck": (
        # Old rows while the relay publishes are the fair order's backlog (from 12m): no alert.
        [series("booking_outbox_oldest_age_seconds", "0+60x30", **API_POD),
         series("booking_outbox_oldest_age_seconds", "0+60x30", **OTHER_API_POD),
         series("booking_relay_published_total", "0x12 0+100x20", queue="email",
                pod="booking-booking-platform-relay-5c-h4")],
        [("6m", []), ("10m", [({}, "10m 0s")]), ("20m", [])]),
    "BookingQueueOldestTaskOld": (
        [series("booking_queue_oldest_waiting_age_seconds", "0+60x40", queue="email",
                pod="booking-booking-platform-relay-5c-h4"),
         series("booking_queue_oldest_waiting_age_seconds", "0+60x40", queue="email",
                pod="booking-booking-platform-relay-5c-k2"),
         series("booking_queue_oldest_waiting_age_seconds", "100x40", queue="invoice",
                pod="booking-booking-platform-relay-5c-h4")],
        [("20m", []), ("30m", [({"queue": "email"}, "30m 0s")])]),
    "BookingWorkerStalled": (
        [series("booking_queue_messages", "5x40", queue="email", state="ready", **API_POD),
         series("booking_queue_messages", "5x40", queue="email", state="ready", **OTHER_API_POD),
         series("booking_queue_messages", "0x40", queue="email", state="in_flight", **API_POD),
         series("dramatiq_messages_total", "0x40", queue_name="email", actor_name="send_confirmation"),
         # invoice: a backlog but no worker at all (no series); audit: a backlog that moves.
         series("booking_queue_messages", "2x40", queue="invoice", state="in_flight", **API_POD),
         series("booking_queue_messages", "9x40", queue="audit", state="ready", **API_POD),
         series("dramatiq_messages_total", "0+30x40", queue_name="audit", actor_name="record_audit")],
        [("8m", []), ("15m", [({"queue": "email"}, "5"), ({"queue": "invoice"}, "2")])]),
    "BookingQueueBacklogGrowing": (
        # email: Redis' ready list flat at the publish-ahead, the outbox growing behind it (fair order).
        [series("booking_queue_messages", "16x40", queue="email", state="ready", **API_POD),
         series("booking_outbox_queue_messages", "0+10x40", queue="email", state="waiting",
                pod="booking-booking-platform-relay-5c-h4"),
         series("booking_queue_messages", "0+10x40", queue="invoice", state="ready", **API_POD),
         series("booking_queue_messages", "500x40", queue="flat", state="ready", **API_POD),
         series("booking_queue_messages", "400-10x40", queue="audit", state="ready", **API_POD),
         series("booking_queue_messages", "0+0.2x40", queue="audit", state="delayed", **API_POD)],
        [("5m", []), ("25m", [({"queue": "email"}, "266"), ({"queue": "invoice"}, "250")])]),
    "BookingApiErrorRateHigh": (
        [series("booking_http_requests_total", "0+90x30", status="201", **POST, **API_POD),
         series("booking_http_requests_total", "0+10x30", status="500", **POST, **API_POD),
         # Failing readiness probes are not the API's error rate.
         series("booking_http_requests_total", "0+500x30", route="/readyz", method="GET", status="503", **API_POD)],
        [("3m", []), ("15m", [({}, "10%")])]),
    "BookingTaskErrorRateHigh": (
        [series("dramatiq_messages_total", "0+10x40", queue_name="email", actor_name="send_confirmation"),
         series("dramatiq_message_errors_total", "0+5x40", queue_name="email", actor_name="send_confirmation"),
         series("dramatiq_messages_total", "0+10x40", queue_name="audit", actor_name="record_audit"),
         series("dramatiq_message_errors_total", "0+1x40", queue_name="audit", actor_name="record_audit")],
        [("10m", []), ("30m", [({"queue_name": "email"}, "50%")])]),
    "BookingRelayFailing": (
        [series("booking_relay_failures_total", "0+1x30", kind="redis", pod="booking-booking-platform-relay-5c-h4"),
         series("booking_relay_failures_total", "0x30", kind="postgres", pod="booking-booking-platform-relay-5c-h4")],
        [("8m", []), ("20m", [({"kind": "redis"}, "")])]),
    "BookingMetricsReadFailing": (
        [series("booking_pipeline_read_ok", "1x5 0x30", source="redis", **API_POD),
         series("booking_pipeline_read_ok", "1x40", source="redis", **OTHER_API_POD),
         series("booking_pipeline_read_ok", "1x40", source="postgres", **API_POD)],
        [("8m", []), ("15m", [({"source": "redis"}, "")])]),
    "BookingMetricsMissing": (
        [series("booking_pipeline_read_ok", "1x40", namespace="elsewhere", source="redis", **API_POD),
         series("booking_pipeline_read_ok", "1x5", source="redis", **API_POD)],
        [("8m", []), ("25m", [({}, "")])]),
    "BookingScrapeTargetDown": (
        # Matched on the pods' labels (podTargetLabels), not their names: a long release's pod names are cut.
        [series("up", "0x30", pod="booking-booking-platform-email-wo-7d9f8-abcde", **TARGET, **WORKER),
         series("up", "0x30", pod="booking-booking-platform-events-7d9f8-abcde", **TARGET,
                app_kubernetes_io_component="events"),
         series("up", "1x30", **API_POD, **TARGET, app_kubernetes_io_component="api"),
         series("up", "0x30", pod="some-other-app-7d9f8-abcde"),
         series("up", "0x30", pod="another-release-relay-7d9f8-abcde", app_kubernetes_io_instance="other",
                app_kubernetes_io_component="relay")],
        [("5m", []), ("15m", [({"pod": "booking-booking-platform-email-wo-7d9f8-abcde", **TARGET, **WORKER}, ""),
                              ({"pod": "booking-booking-platform-events-7d9f8-abcde", **TARGET,
                                "app_kubernetes_io_component": "events"}, "")])]),
    "BookingApiDegraded": (
        [series("booking_api_degraded", "0x5 1x30", dependency="redis", **API_POD),
         series("booking_api_degraded", "0x40", dependency="redis", **OTHER_API_POD)],
        [("8m", []), ("12m", [({"dependency": "redis"}, "1")])]),
    "BookingWebhookEndpointFailing": (
        # Two API pods report the same Postgres figure: combined with max, never summed.
        [series("booking_webhook_longest_failing_seconds", "172000+60x30", **API_POD),
         series("booking_webhook_longest_failing_seconds", "172000+60x30", **OTHER_API_POD)],
        [("10m", []), ("25m", [({}, "2d 0h 11m 40s")])]),
    "BookingOperatorDown": (
        # Up, then down (up 0), then gone (no target at all): both fire after `for`.
        [series("up", "1x10 0x10", pod="booking-booking-platform-operator-5d-q2", **TARGET,
                app_kubernetes_io_component="operator"),
         series("up", "1x40", **API_POD, **TARGET, app_kubernetes_io_component="api")],
        [("8m", []), ("17m", [({}, "1")]), ("28m", [({}, "1")])]),
    "BookingQueueScalerNotReady": (
        [series("queue_autoscaler_ready", "1x5 0x30", scaler="booking-booking-platform-invoice-worker", **OPERATOR),
         series("queue_autoscaler_ready", "1x40", scaler="booking-booking-platform-email-worker", **OPERATOR)],
        [("8m", []), ("12m", [({"scaler": "booking-booking-platform-invoice-worker"}, "0")])]),
    "BookingQueueScalerFallback": (
        [series("queue_autoscaler_fallback", "0x5 1x30", scaler="booking-booking-platform-email-worker", **OPERATOR),
         series("queue_autoscaler_fallback", "0x40", scaler="booking-booking-platform-audit-worker", **OPERATOR)],
        [("12m", []), ("17m", [({"scaler": "booking-booking-platform-email-worker"}, "1")])]),
}


def promtool_test(promtool: str, rules: list[dict], groups: list[dict], alert: str,
                  cases: tuple[list[dict], list], tmp_path: Path) -> subprocess.CompletedProcess:
    """`promtool test rules` of one alert: the rendered rules, the input series, the expected alerts."""
    rule = next(r for r in rules if r.get("alert") == alert)
    inputs, evaluations = cases
    tests = []
    for at, firing in evaluations:
        expected = []
        for labels, value in firing:
            all_labels = {"namespace": NAMESPACE, **labels, **rule["labels"]}
            expected.append({"exp_labels": all_labels, "exp_annotations": {
                k: expand(v, all_labels, value) for k, v in rule["annotations"].items()}})
        tests.append({"eval_time": at, "alertname": alert, "exp_alerts": expected})
    write_rules(tmp_path / "rules.yaml", groups)
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": inputs, "alert_rule_test": tests}]}, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)


@pytest.mark.parametrize("alert", sorted(ALERT_CASES))
def test_promtool_proves_each_alert_fires_on_its_condition_after_its_for_and_not_otherwise(
        promtool, rendered, alert, tmp_path):
    groups = only(rendered["observed"], "PrometheusRule")["spec"]["groups"]
    proc = promtool_test(promtool, alert_rules(rendered["observed"]), groups, alert, ALERT_CASES[alert], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_promtool_unit_test(rendered):
    assert {r["alert"] for r in alert_rules(rendered["observed"])} == set(ALERT_CASES)


def test_promtool_proves_the_dead_letter_alert_waits_for_the_configured_time(promtool, helm, tmp_path):
    docs = template(helm, *helm_args([DEFAULT_VALUES], {**OBSERVED,
                                                        "metrics.prometheusRule.alerts.deadLetters.for": "10m",
                                                        "metrics.prometheusRule.alerts.deadLetters.severity": "page"}))
    cases = ([series("booking_dead_letters_open", "0x5 3x30", queue="audit", **API_POD)],
             [("12m", []), ("17m", [({"queue": "audit"}, "3")])])
    groups = only(docs, "PrometheusRule")["spec"]["groups"]
    proc = promtool_test(promtool, alert_rules(docs), groups, "BookingDeadLetters", cases, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And the harness notices an alert that fires when it should not.
    early = (cases[0], [("12m", [({"queue": "audit"}, "3")])])
    failed = promtool_test(promtool, alert_rules(docs), groups, "BookingDeadLetters", early, tmp_path)
    assert failed.returncode != 0 and "FAILED" in failed.stdout + failed.stderr


# --- scraped for real ---------------------------------------------------------------------------

@pytest.fixture
def own_database(database_url):
    """A migrated database of the test's own (tests/scratch_database.py): on the session's, the release's relay and
    webhook worker would also run what other tests left in the outbox, such as deliveries to their endpoints."""
    from scratch_database import scratch_database

    with scratch_database(database_url, "obs") as url:
        yield url


@pytest.mark.e2e
def test_each_rendered_process_serves_where_its_monitor_scrapes_every_series_the_dashboard_uses(
        helm, own_database, redis_url, tmp_path, dashboard):
    from prometheus_client.parser import text_string_to_metric_families

    from booking_embedded import EmbeddedSmtp, free_port
    from e2e_helpers import wait_until

    smtp = EmbeddedSmtp(tmp_path / "mail", free_port(), tmp_path / "logs")
    smtp.start()
    port = free_port()
    docs = template(helm, *helm_args(
        [DEFAULT_VALUES], {**OBSERVED, "api.containerPort": port, "api.gunicorn.workers": 2,
                           "config.relaySweepMs": 500, "tests.timeoutSeconds": 90},
        {"externalDatabase.url": own_database, "externalRedis.url": redis_url, "smtp.url": smtp.url,
         "config.redisNamespace": f"obs-{uuid.uuid4().hex[:8]}"}))
    release = LocalRelease(docs, tmp_path)
    sm, pm = only(docs, "ServiceMonitor"), only(docs, "PodMonitor")
    [service] = [d for d in by_kind(docs, "Service").values()
                 if selects(sm["spec"]["selector"], d["metadata"]["labels"])]
    # Where Prometheus would scrape: the ServiceMonitor's Service port leads to a container port, the
    # PodMonitor names the container port (the one of its endpoints the pod has).
    (sm_endpoint,) = sm["spec"]["endpoints"]
    api_port = next(p["targetPort"] for p in service["spec"]["ports"] if p["name"] == sm_endpoint["port"])
    targets = {"api": (api_port, sm_endpoint["path"])}
    for component in ("relay", *(f"{q}-worker" for q in QUEUES)):
        ports = {p["name"] for p in release.container(component)["ports"]}
        [pm_endpoint] = [e for e in pm["spec"]["podMetricsEndpoints"] if e["port"] in ports]
        targets[component] = (pm_endpoint["port"], pm_endpoint["path"])

    def scrape(component: str) -> dict[str, list]:
        import urllib.request

        port_name, path = targets[component]
        url = f"http://127.0.0.1:{release.local_port(component, port_name)}{path}"
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a local test URL
            text = r.read().decode()
        samples: dict[str, list] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append(s)
        return samples

    try:
        assert release.migrate().returncode == 0
        release.start()
        # One booking through the rendered API, its three tasks done (the helm test itself is read-only).
        from booking_core import db
        from booking_core.model import tenants
        from e2e_helpers import Api

        with db.connect(own_database, autocommit=True) as conn:
            token = tenants.create_token(conn, tenants.ensure_tenant(conn, "observed")["id"], label="test")["token"]
        api = Api(f"http://127.0.0.1:{port}", token)
        booking = api.book(name="Observed", email="observed@example.com")
        api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"}, timeout=90)

        def all_served():
            try:
                got = {c: scrape(c) for c in targets}
            except OSError:
                return None
            return got if all("dramatiq_messages_total" in got[f"{q}-worker"] for q in TASK_QUEUES) else None

        served = wait_until(all_served, timeout=30, what="every process's metrics")
        names = set().union(*served.values())
        used = set().union(*(metric_names(e) for _, e in queries(dashboard))) - {"up"}
        missing = used - names - FIRST_EVENT_ONLY - WHILE_A_TENANT_WAITS
        assert not missing, f"the dashboard uses series no process serves: {missing}"
        # The booking went through: the API counted it, the relay published it, each worker processed it.
        posts = [s for s in served["api"]["booking_http_requests_total"]
                 if s.labels["route"] == "/api/v1/bookings" and s.labels["method"] == "POST"]
        assert sum(s.value for s in posts if s.labels["status"] == "201") >= 1
        # Only the booking's tasks: the database is the test's own, and its tenant has no webhook endpoint.
        assert {s.labels["queue"] for s in served["relay"]["booking_relay_published_total"]} == set(TASK_QUEUES)
        for q in TASK_QUEUES:
            done = served[f"{q}-worker"]["dramatiq_messages_total"]
            assert [s.labels["queue_name"] for s in done] == [q] and done[0].value >= 1
        depth = {(s.labels["queue"], s.labels["state"]) for s in served["api"]["booking_queue_messages"]}
        # The webhook queue's depth too (its deliveries come from the outbox like the others' work).
        assert depth == {(q, st) for q in QUEUES for st in ("ready", "in_flight", "delayed", "dead")}
        assert {s.labels["source"]: s.value for s in served["api"]["booking_pipeline_read_ok"]} == {
            "postgres": 1, "redis": 1}
        assert all(c.alive() for c in release.children), release.logs()
    finally:
        release.stop()
        smtp.stop()


#: The relay's backlog series: one relay reads the outbox per interval and every relay exports that reading
#: (outbox_relay.report_turn), so each is one copy per relay replica.
COPIED_BY_EVERY_RELAY = ("booking_outbox_queue_messages", "booking_queue_oldest_waiting_age_seconds",
                         "booking_tenant_backlog_messages", "booking_tenant_oldest_age_seconds")


def test_the_relays_backlog_series_are_read_with_max_never_summed_over_relays():
    # A sum over the relays' copies would double the backlog with two relays and change as they come and go.
    uses = []
    for path in [*(CHART / "templates").glob("*.yaml"), *(CHART / "dashboards").glob("*.json")]:
        text = path.read_text()
        for name in COPIED_BY_EVERY_RELAY:
            for m in re.finditer(rf"{name}\{{", text):  # a selector: PromQL, not prose
                uses.append((path.name, name, text[max(0, m.start() - 40):m.start()]))
    assert {n for _, n, _ in uses} == set(COPIED_BY_EVERY_RELAY), "every series is on the dashboard or an alert"
    for file, name, before in uses:
        assert re.search(r"max by \([a-z, ]+\) \($", before), f"{file}: {name} not under `max by (...)`: {before!r}"
