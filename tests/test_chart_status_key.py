"""The progress-page signing key stays the same across renders, or the chart refuses to render.

Under Argo CD, Flux or `helm template | kubectl apply`, the chart is rendered without a
cluster, where `lookup` sees nothing: a generated key would change at every sync and
void every progress-page link. So without `events.statusSecret.existingSecret` the
chart renders only where `lookup` works. That branch is rendered for real with
`helm template --dry-run=server` against KMock's emulator (tests/kube_standin.py).
"""

from __future__ import annotations

import yaml

from helm_helpers import CHART, NAMESPACE, RELEASE, by_kind, component_name, helm_args, run_helm
from kube_standin import KubeStandIn

DEFAULT = CHART / "ci" / "default-values.yaml"
GENERATED = {"events.statusSecret.existingSecret": ""}


def render(helm: str, *flags: str, kubeconfig=None) -> tuple[str, list[dict]]:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *flags, kubeconfig=kubeconfig)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, [d for d in yaml.safe_load_all(proc.stdout) if d]


def status_key_refs(docs: list[dict]) -> set[tuple[str, str]]:
    """(Secret, key) every container reads BOOKING_STATUS_SECRET from."""
    return {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", []) if e["name"] == "BOOKING_STATUS_SECRET"}


def test_with_an_existing_secret_two_renders_are_the_same(helm):
    first, docs = render(helm, *helm_args([DEFAULT]))
    second, _ = render(helm, *helm_args([DEFAULT]))
    assert first == second
    assert status_key_refs(docs) == {("booking-status", "BOOKING_STATUS_SECRET")}
    assert component_name("status-secret") not in by_kind(docs, "Secret")


def test_the_chart_makes_a_key_only_where_it_can_keep_it(helm, tmp_path):
    # Without a cluster (helm template, --dry-run=client, a GitOps tool's render): refused, with what to do.
    args = helm_args([DEFAULT], GENERATED)
    for cmd in (["template", RELEASE, str(CHART)], ["install", RELEASE, str(CHART), "--dry-run=client"]):
        proc = run_helm(helm, *cmd, *args)
        assert proc.returncode != 0, f"helm {cmd[0]} rendered a key it cannot keep"
        assert "events.statusSecret.existingSecret is required when the chart is rendered without a cluster" in (
            proc.stderr)
    # Against a cluster: made at the install, then the same at every later render.
    name = component_name("status-secret")
    with KubeStandIn(tmp_path) as cluster:
        def key(docs: list[dict]) -> str:
            secret = by_kind(docs, "Secret")[name]
            assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            return secret["stringData"]["BOOKING_STATUS_SECRET"]

        flags = ("--dry-run=server", "--disable-openapi-validation", *helm_args([DEFAULT], GENERATED))
        _, install = render(helm, *flags, kubeconfig=cluster.kubeconfig)
        made = key(install)
        assert len(made) >= 48 and status_key_refs(install) == {(name, "BOOKING_STATUS_SECRET")}
        cluster.create_secret(NAMESPACE, name, {"BOOKING_STATUS_SECRET": made}, release=RELEASE)  # as installed
        _, upgrade = render(helm, *flags, kubeconfig=cluster.kubeconfig)
        _, again = render(helm, *flags, kubeconfig=cluster.kubeconfig)
        assert key(upgrade) == key(again) == made
