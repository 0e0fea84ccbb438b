"""Names, namespaces and subcharts: what `helm template | kubectl apply -n` and umbrella charts rely on.

Rendered by the real helm binary; every object of the renders is checked, hooks and
test hooks included.  Kubernetes refuses a name over 63 characters (a DNS label) and
a StatefulSet over 52 (its pods' `controller-revision-hash` label adds 11); Helm
itself refuses a release name over 53.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from helm_helpers import CHART, CI_VALUES, NAMESPACE, by_kind, helm_args, run_helm, template, validate_manifest

CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "IngressClass",
                  "Namespace", "StorageClass", "GatewayClass"}
#: Every optional object switched on, so that every name the chart can make is rendered.
EVERYTHING = {
    "api.ingress.enabled": "true", "api.ingress.tls.enabled": "true",
    "metrics.serviceMonitor.enabled": "true", "metrics.prometheusRule.enabled": "true",
    "grafana.dashboards.enabled": "true", "operator.peering.enabled": "true",
    "api.httpRoute.enabled": "true", "api.httpRoute.parentRefs[0].name": "gateway",
    "api.autoscaling.enabled": "true", "caBundle.configMap": "private-ca",
}
DEV = CHART / "ci" / "dev-values.yaml"
LONG_RELEASE = "r" * 39 + "-production-eu"  # 53 characters, Helm's limit


def render(helm: str, release: str, *flags: str) -> list[dict]:
    proc = run_helm(helm, "template", release, str(CHART), "--namespace", NAMESPACE, *flags)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def label_values(doc: dict) -> list[str]:
    """Every label value of an object and of the pods it runs."""
    out = list(doc["metadata"].get("labels", {}).values())
    template_meta = (doc.get("spec") or {}).get("template", {}).get("metadata", {})
    return out + list(template_meta.get("labels", {}).values())


@pytest.mark.parametrize("release", ["booking", "bookings-platform-x" * 2 + "abcdefghijklmno", LONG_RELEASE])
def test_every_name_is_unique_and_valid_whatever_the_release_name(helm, release):
    assert len(release) <= 53
    docs = render(helm, release, *helm_args([DEV], EVERYTHING))
    seen: dict[tuple[str, str], int] = {}
    for d in docs:
        name = d["metadata"]["name"]
        key = (d["kind"], name)
        seen[key] = seen.get(key, 0) + 1
        if d["kind"] == "CustomResourceDefinition":
            continue
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), f"{d['kind']}/{name}"
        if d["kind"] == "StatefulSet":
            assert len(name) <= 52, f"StatefulSet/{name}: its pods' controller-revision-hash label would exceed 63"
        for value in label_values(d):
            assert len(str(value)) <= 63, f"{d['kind']}/{name}: label value {value!r}"
    dupes = [k for k, n in seen.items() if n > 1]
    assert not dupes, f"two objects of one kind share a name: {dupes}"
    # Each component keeps its whole suffix: the alert rules and the README's commands name them so.
    deployments = by_kind(docs, "Deployment")
    for component in ("api", "events", "relay", "operator", "email-worker", "invoice-worker", "audit-worker"):
        assert sum(n.endswith(f"-{component}") for n in deployments) == 1, (component, sorted(deployments))
    prefixes = {n.rsplit("-" + c, 1)[0] for n in deployments
                for c in ("api", "events", "relay", "operator", "email-worker", "invoice-worker", "audit-worker")
                if n.endswith("-" + c)}
    assert len(prefixes) == 1, f"the components do not share one prefix: {prefixes}"


def test_two_long_release_names_that_share_their_start_still_get_names_of_their_own(helm):
    a = by_kind(render(helm, LONG_RELEASE, *helm_args([DEV])), "Deployment")
    b = by_kind(render(helm, LONG_RELEASE[:-1] + "w", *helm_args([DEV])), "Deployment")
    assert not set(a) & set(b)


def test_a_long_fullname_override_keeps_every_component_suffix(helm):
    docs = render(helm, "booking", *helm_args([CHART / "ci" / "default-values.yaml"], {"fullnameOverride": "x" * 48}))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "CustomResourceDefinition"}
    assert all(len(n) <= 63 for _, n in names), names
    # The operator may read this Secret by name: it must be the Redis URL's, never a truncated neighbour's.
    assert any(k == "Secret" and n.endswith("-redis-connection") for k, n in names), names
    assert any(k == "Deployment" and n.endswith("-invoice-worker") for k, n in names), names


@pytest.mark.parametrize("values_file", [*CI_VALUES, "everything"], ids=[*(f.name for f in CI_VALUES), "everything"])
def test_every_namespaced_object_names_the_release_namespace(helm, values_file):
    """`helm template | kubectl apply -n OTHER` must not scatter objects: each carries its namespace."""
    flags = helm_args([DEV], EVERYTHING) if values_file == "everything" else helm_args([values_file])
    docs = template(helm, *flags)
    dashboards_ns = None
    if values_file != "everything":
        dashboards_ns = (yaml.safe_load(values_file.read_text()).get("grafana") or {}).get(
            "dashboards", {}).get("namespace")
    checked = 0
    for d in docs:
        if d["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in d["metadata"], f"{d['kind']}/{d['metadata']['name']} is cluster-scoped"
            continue
        want = NAMESPACE
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {}) and dashboards_ns:
            want = dashboards_ns
        assert d["metadata"].get("namespace") == want, f"{d['kind']}/{d['metadata']['name']}"
        checked += 1
    assert checked >= 10


def test_the_chart_renders_as_a_subchart_of_an_umbrella_chart_with_global_values(helm, tmp_path):
    """Helm hands every subchart a `global` key: the strict schema must let it through."""
    umbrella = tmp_path / "umbrella"
    (umbrella / "charts").mkdir(parents=True)
    (umbrella / "templates").mkdir()
    (umbrella / "templates" / "stack.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-stack\n"
        "  namespace: {{ .Release.Namespace }}\ndata:\n  registry: {{ .Values.global.imageRegistry | quote }}\n")
    shutil.copytree(CHART, umbrella / "charts" / "booking-platform")
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    (umbrella / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "bookings-stack", "version": "1.0.0", "icon": "https://example.com/icon.png",
        "dependencies": [{"name": "booking-platform", "version": chart_version}]}))
    sub_values = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
    (umbrella / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
        "booking-platform": sub_values}))
    for cmd in (["lint", "--strict", str(umbrella)], ["template", "stack", str(umbrella), "--namespace", NAMESPACE]):
        proc = run_helm(helm, *cmd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    api = by_kind(docs, "Deployment")["stack-booking-platform-api"]
    validate_manifest(api)
    assert api["metadata"]["namespace"] == NAMESPACE
