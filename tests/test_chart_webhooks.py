"""The chart runs the webhook worker like the other workers, keeps its sealing key, and fences its egress.

Rendered with real `helm` from the ci values (and, for the generated key, with
`helm template --dry-run=server` against KMock's emulator, tests/kube_standin.py,
since no Kubernetes API runs here). The egress policy is checked by evaluating the
rendered NetworkPolicy's ipBlocks against addresses: no test sends a packet.
"""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from helm_helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    component_name,
    helm_args,
    pod_labels,
    pod_specs,
    run_helm,
    selects,
    template,
)
from kube_standin import KubeStandIn

DEFAULT = CHART / "ci" / "default-values.yaml"
HOOK = component_name("webhook-worker")


@pytest.fixture(scope="module")
def docs(helm) -> list[dict]:
    return template(helm, *helm_args([DEFAULT]))


def pod_spec(docs: list[dict], name: str) -> dict:
    return by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]


def test_the_webhook_worker_runs_like_the_other_workers_on_its_own_queue(docs):
    hook, email = pod_spec(docs, HOOK), pod_spec(docs, component_name("email-worker"))
    assert hook["securityContext"] == email["securityContext"]
    assert hook["automountServiceAccountToken"] is False
    container, other = hook["containers"][0], email["containers"][0]
    assert container["securityContext"] == other["securityContext"]
    assert container["image"].rsplit("/", 1)[-1].split(":")[0] == "webhook-worker"
    assert container["command"][:4] == ["dramatiq", "webhook_worker.broker", "webhook_worker.actors",
                                         "--queues=webhook"]
    assert "--threads=16" in container["command"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [m["mountPath"] for m in other["volumeMounts"]]
    env = {e["name"]: e for e in container["env"]}
    # It signs, so it reads the sealing key, from the Secret; it sends no email.
    assert env["BOOKING_WEBHOOKS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "booking-webhooks-key", "key": "BOOKING_WEBHOOKS_KEY"}
    assert "SMTP_URL" not in env
    # The other workers never see the key.
    for q in ("email", "invoice", "audit"):
        names = {e["name"] for e in pod_spec(docs, component_name(f"{q}-worker"))["containers"][0]["env"]}
        assert "BOOKING_WEBHOOKS_KEY" not in names, q
    scaler = by_kind(docs, "QueueScaler")[HOOK]
    assert scaler["spec"]["queues"] == ["webhook"] and scaler["spec"]["scaleTargetRef"]["name"] == HOOK
    assert HOOK in by_kind(docs, "PodDisruptionBudget")


def test_the_api_reads_the_key_and_the_webhook_settings_come_from_values(helm):
    docs = template(helm, *helm_args([DEFAULT], {"webhooks.allowedNetworks": "203.0.113.0/24",
                                                 "webhooks.timeoutSeconds": "9"}))
    api = pod_spec(docs, component_name("api"))["containers"][0]
    assert "BOOKING_WEBHOOKS_KEY" in {e["name"] for e in api["env"]}
    config = by_kind(docs, "ConfigMap")[component_name("config")]["data"]
    assert config["BOOKING_WEBHOOKS_ALLOWED_NETWORKS"] == "203.0.113.0/24"
    assert config["BOOKING_WEBHOOKS_TIMEOUT_SECONDS"] == "9"
    # The webhook worker has no BOOKING_RETRY_* policy: its schedule is its own.
    assert not [k for k in config if k.startswith("BOOKING_RETRY_WEBHOOK")]


def egress_allows(policy: dict, address: str, port: int, protocol: str = "TCP") -> bool:
    """Whether one NetworkPolicy's egress rules let a pod it selects reach `address`:`port`."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = rule.get("ports")
        if ports and not any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block is None:
                continue
            net = ipaddress.ip_network(block["cidr"])
            if ip.version == net.version and ip in net and not any(
                    ip.version == ipaddress.ip_network(x).version and ip in ipaddress.ip_network(x)
                    for x in block.get("except", [])):
                return True
    return False


def test_the_webhook_worker_reaches_receivers_on_the_internet_but_not_the_cluster_or_private_ranges(docs):
    policies = [p for p in by_kind(docs, "NetworkPolicy").values() if "Egress" in p["spec"]["policyTypes"]]
    assert [p["metadata"]["name"] for p in policies] == [component_name("webhook-egress")]
    policy = policies[0]
    # It selects the webhook worker's pods and no other pod: only their egress is fenced.
    selected = {owner["metadata"]["name"] for owner, _ in pod_specs(docs)
                if selects(policy["spec"]["podSelector"], pod_labels(owner))}
    assert selected == {HOOK}
    for public in ("93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"):
        assert egress_allows(policy, public, 443) and egress_allows(policy, public, 80), public
    assert not egress_allows(policy, "93.184.216.34", 22)
    for inside in ("10.0.0.1", "10.96.0.10", "172.16.0.5", "192.168.1.1", "100.64.0.1", "127.0.0.1",
                   "169.254.169.254", "0.0.0.0", "::1", "fd00::1", "fe80::1"):  # noqa: S104 - an address checked
        assert not egress_allows(policy, inside, 443) and not egress_allows(policy, inside, 80), inside
    # DNS, and Postgres / Redis / OTLP wherever they run (their own ports only).
    assert egress_allows(policy, "10.96.0.10", 53, "UDP") and egress_allows(policy, "10.96.0.10", 53, "TCP")
    for port in (5432, 6379, 4317):
        assert egress_allows(policy, "10.1.2.3", port), port


def test_without_network_policies_the_webhook_egress_is_not_rendered(helm):
    docs = template(helm, *helm_args([DEFAULT], {"networkPolicy.enabled": "false"}))
    assert component_name("webhook-egress") not in by_kind(docs, "NetworkPolicy")
    docs = template(helm, *helm_args([DEFAULT], {"webhooks.networkPolicy.enabled": "false"}))
    assert component_name("webhook-egress") not in by_kind(docs, "NetworkPolicy")


def test_the_sealing_key_is_never_in_values_and_is_generated_only_where_it_can_be_kept(helm, tmp_path):
    from cryptography.fernet import Fernet

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["webhooks"]["key"] == {"existingSecret": "", "existingSecretKey": "BOOKING_WEBHOOKS_KEY"}
    generated = {"webhooks.key.existingSecret": ""}
    proc = run_helm(helm, "template", RELEASE, str(CHART), *helm_args([DEFAULT], generated))
    assert proc.returncode != 0
    assert "webhooks.key.existingSecret is required when the chart is rendered without a cluster" in proc.stderr
    name = component_name("webhooks-key")
    with KubeStandIn(tmp_path) as cluster:
        def render() -> list[dict]:
            proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server",
                            "--disable-openapi-validation", *helm_args([DEFAULT], generated),
                            kubeconfig=cluster.kubeconfig)
            assert proc.returncode == 0, proc.stderr
            return [d for d in yaml.safe_load_all(proc.stdout) if d]

        first = by_kind(render(), "Secret")[name]
        assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        made = first["stringData"]["BOOKING_WEBHOOKS_KEY"]
        Fernet(made)  # a valid Fernet key, as the worker's settings check it
        cluster.create_secret(NAMESPACE, name, {"BOOKING_WEBHOOKS_KEY": made}, release=RELEASE)  # as installed
        again = render()
        assert by_kind(again, "Secret")[name]["stringData"]["BOOKING_WEBHOOKS_KEY"] == made
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for spec in (pod_spec(again, HOOK),
                                                                    pod_spec(again, component_name("api")))
                for e in spec["containers"][0]["env"] if e["name"] == "BOOKING_WEBHOOKS_KEY"}
        assert refs == {name}
