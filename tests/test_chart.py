"""The Helm chart, checked with a real helm binary: lint, render, Kubernetes schemas, policies.

Every `ci/*-values.yaml` variant is linted with `--strict` and rendered; each
rendered manifest validates against the Kubernetes JSON schemas of a current
release (kubernetes-validate, strict: unknown fields fail), and each QueueScaler
against the CRD's own openAPIV3Schema.  Policies (limits, probes, non-root,
read-only root filesystem, no `latest`, PDBs, images from values, RBAC) are
asserted over what renders, not read by eye.  The last test runs the rendered
commands and env for real against embedded Postgres, Redis and SMTP, then the
chart's `helm test` script against them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helm_helpers import (
    CHART,
    CI_VALUES,
    EXISTING_SECRETS,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    ROOT,
    LocalRelease,
    by_kind,
    component_name,
    containers,
    env_of,
    helm_args,
    local_argv,
    pod_labels,
    pod_specs,
    run_helm,
    selects,
    template,
    validate_manifest,
)

#: Kubernetes release the manifests must be valid for: that of helm v4.1's client.
CRD_FILE = CHART / "crds" / "queuescalers.yaml"
#: Validated against their CRDs (the Prometheus Operator's in test_observability_chart.py), not Kubernetes' schemas.
CUSTOM_KINDS = {"QueueScaler", "KopfPeering", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
QUEUES = ("email", "invoice", "audit", "webhook")


@pytest.fixture(scope="session")
def rendered(helm) -> dict[str, list[dict]]:
    """Each ci values file's rendering, by file name."""
    return {f.name: template(helm, *helm_args([f])) for f in CI_VALUES}


@pytest.fixture(scope="session")
def queuescaler_crd() -> dict:
    if not CRD_FILE.exists():
        pytest.fail(f"{CRD_FILE.relative_to(ROOT)} is missing: the QueueScaler CRD ships in the chart's crds/")
    return yaml.safe_load(CRD_FILE.read_text())


def all_docs(rendered) -> list[tuple[str, dict]]:
    return [(name, d) for name, docs in rendered.items() for d in docs]


ci_ids = [f.name for f in CI_VALUES]


def test_the_ci_variants_cover_external_bundled_and_fixed_setups():
    assert {"default-values.yaml", "production-values.yaml", "dev-values.yaml",
            "fixed-replicas-values.yaml"} <= set(ci_ids)


# --- helm lint and template -------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_ids)
def test_helm_lint_strict_passes(helm, values_file):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_ids)
def test_every_rendered_manifest_validates_against_kubernetes_schemas(rendered, values_file):
    docs = rendered[values_file.name]
    checked = 0
    for d in docs:
        if d["kind"] in CUSTOM_KINDS:
            continue
        try:
            validate_manifest(d)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{d['kind']}/{d['metadata']['name']} is invalid for Kubernetes {KUBE_VERSION}: "
                        f"{path}: {e.message}")
        checked += 1
    assert checked >= 8


def test_the_crd_ships_with_the_chart_and_is_valid(helm, queuescaler_crd):
    validate_manifest(queuescaler_crd)
    spec = queuescaler_crd["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"], spec["scope"]) == (
        "scaling.booking-platform.io", "QueueScaler", "queuescalers", "Namespaced")
    # helm installs it from crds/ (rendered here with --include-crds).
    docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml"]))
    assert "queuescalers.scaling.booking-platform.io" in by_kind(docs, "CustomResourceDefinition")


def crd_json_schema(node):
    """A CRD's OpenAPI v3.0 schema as JSON Schema, as strict as the API server.

    `nullable` becomes a null type, boolean exclusive bounds become numbers, and an
    object with declared properties refuses others: the API server would silently
    prune such a field, so a chart that renders one has a bug.
    """
    if isinstance(node, list):
        return [crd_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
    for bound, limit in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        if out.get(bound) is True:
            out[bound] = out.pop(limit)
        elif out.get(bound) is False:
            del out[bound]
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_ids)
def test_every_queuescaler_validates_against_the_crds_own_schema(rendered, queuescaler_crd, values_file):
    docs = rendered[values_file.name]
    scalers = by_kind(docs, "QueueScaler")
    group = queuescaler_crd["spec"]["group"]
    versions = {v["name"]: v for v in queuescaler_crd["spec"]["versions"]}
    for name, qs in scalers.items():
        api_group, _, version = qs["apiVersion"].partition("/")
        assert api_group == group and version in versions and versions[version]["served"], qs["apiVersion"]
        schema = crd_json_schema(versions[version]["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(qs), key=lambda e: list(e.path))
        assert not errors, f"QueueScaler {name}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_crd_check_refuses_unknown_fields_and_out_of_range_values(queuescaler_crd):
    schema = crd_json_schema(queuescaler_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    good = {"apiVersion": "scaling.booking-platform.io/v1alpha1", "kind": "QueueScaler", "metadata": {},
            "spec": {"scaleTargetRef": {"name": "w"}, "queues": ["email"],
                     "redis": {"urlSecretRef": {"name": "s", "key": "k"}}, "scaleUp": {"maxStep": None}}}
    jsonschema.Draft7Validator(schema).validate(good)
    for bad in ({"tolerance": 1}, {"minReplicaCount": -1}, {"targetBacklog": 5}, {"queues": []}):
        spec = {**good["spec"], **bad}
        assert list(jsonschema.Draft7Validator(schema).iter_errors({**good, "spec": spec})), bad


@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_ids)
def test_one_queuescaler_per_autoscaled_worker_targets_its_deployment(rendered, values_file):
    docs = rendered[values_file.name]
    scalers = by_kind(docs, "QueueScaler")
    deployments = by_kind(docs, "Deployment")
    fixed = values_file.name == "fixed-replicas-values.yaml"  # the one variant without autoscaling
    assert {qs["spec"]["queues"][0] for qs in scalers.values()} == (set() if fixed else set(QUEUES))
    for qs in scalers.values():
        queue = qs["spec"]["queues"][0]
        target = deployments[qs["spec"]["scaleTargetRef"]["name"]]
        assert target["metadata"]["name"] == component_name(f"{queue}-worker")
        assert f"--queues={queue}" in target["spec"]["template"]["spec"]["containers"][0]["command"]
        # The operator reads the queue from the same Redis, under the same key prefix, as the worker.
        worker_env = target["spec"]["template"]["spec"]["containers"][0]["env"]
        redis_ref = next(e["valueFrom"]["secretKeyRef"] for e in worker_env if e["name"] == "REDIS_URL")
        assert qs["spec"]["redis"]["urlSecretRef"] == {"name": redis_ref["name"], "key": redis_ref["key"]}
        config = by_kind(docs, "ConfigMap")[component_name("config")]["data"]
        assert qs["spec"]["redis"]["namespace"] == config["BOOKING_REDIS_NAMESPACE"]


SCHEMA_BREAKING = [
    # (what is wrong, --set flags, words the error must contain)
    ("unknown key", {"workers.email.bogus": "1"}, "additional properties 'bogus' not allowed"),
    ("unknown worker", {"workers.sms.replicaCount": "1"}, "additional properties 'sms' not allowed"),
    ("wrong type", {"api.replicaCount": "two"}, "/api/replicaCount': got string, want integer"),
    ("no cpu limit", {"api.resources.limits.cpu": "null"}, "/api/resources/limits': missing property 'cpu'"),
    ("bad enum", {"image.pullPolicy": "Sometimes"}, "value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ("unknown access log mode", {"api.gunicorn.accessLog": "verbose"}, "value must be one of 'errors', 'all', 'off'"),
    ("negative event history", {"config.eventHistoryDays": "-1"}, "/config/eventHistoryDays': minimum: got -1, want 0"),
    ("root user", {"securityContext.runAsUser": "0"}, "/securityContext/runAsUser': minimum: got 0, want 1"),
    ("no burst", {"config.planDefault.burst": "0"}, "/config/planDefault/burst': minimum: got 0, want 1"),
    ("no rate", {"config.planDefault.ratePerSecond": "0"}, "/config/planDefault/ratePerSecond'"),
    ("no webhook deadline", {"webhooks.timeoutSeconds": "0"}, "/webhooks/timeoutSeconds': exclusiveMinimum"),
    ("webhook receivers not a CIDR", {"webhooks.networkPolicy.receivers[0].cidr": "internet"},
     "/webhooks/networkPolicy/receivers/0/cidr': 'internet' does not match pattern"),
    ("webhook worker with a retry policy", {"workers.webhook.retry.maxRetries": "3"},
     "additional properties 'retry' not allowed"),
    ("wrong scheme", {"externalRedis.url": "http://cache:6379"},
     "'http://cache:6379' does not match pattern '^(rediss?://.+)?$'"),
]

#: Rules across keys, checked by the templates: `helm template`/`install` fail on them;
#: `helm lint` (which turns `fail` into a log line) prints the same message.
TEMPLATE_CHECKS = [
    ("latest tag", {"image.tag": "latest"}, 'image booking-api: the tag "latest" is refused'),
    ("latest service tag", {"workers.invoice.image.tag": "latest"},
     'image invoice-worker: the tag "latest" is refused'),
    ("min above max", {"workers.email.autoscaling.minReplicaCount": "11"},
     "workers.email.autoscaling: minReplicaCount (11) exceeds maxReplicaCount (10)"),
    ("short grace period", {"api.terminationGracePeriodSeconds": "10"},
     "api.terminationGracePeriodSeconds must exceed api.preStopSleepSeconds + api.gunicorn.gracefulTimeoutSeconds"),
    ("metrics on the http port", {"metrics.apiPort": "8000"},
     "metrics.apiPort must differ from api.containerPort"),
    ("reconciler inside the heartbeat", {"config.reconcileAfterMs": "30000"},
     "config.reconcileAfterMs (30000) must exceed config.heartbeatTimeoutMs (60000)"),
    ("no database", {"externalDatabase.url": ""},
     "No database: set externalDatabase.url or externalDatabase.existingSecret"),
]


@pytest.mark.parametrize(("flags", "message"), [(f, m) for _, f, m in SCHEMA_BREAKING],
                         ids=[w for w, _, _ in SCHEMA_BREAKING])
def test_values_breaking_the_schema_are_refused_by_lint_and_template_with_a_clear_message(helm, flags, message):
    args = helm_args([CHART / "ci" / "default-values.yaml"], flags)
    for cmd in (["lint", "--strict", str(CHART)], ["template", RELEASE, str(CHART)]):
        proc = run_helm(helm, *cmd, *args)
        assert proc.returncode != 0, f"helm {cmd[0]} accepted {flags}"
        assert message in proc.stdout + proc.stderr, f"helm {cmd[0]}: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(("flags", "message"), [(f, m) for _, f, m in TEMPLATE_CHECKS],
                         ids=[w for w, _, _ in TEMPLATE_CHECKS])
def test_inconsistent_values_fail_template_and_install_with_a_clear_message(helm, flags, message):
    args = helm_args([CHART / "ci" / "default-values.yaml"], flags)
    for cmd in (["template", RELEASE, str(CHART)], ["install", RELEASE, str(CHART), "--dry-run=client"]):
        proc = run_helm(helm, *cmd, *args)
        assert proc.returncode != 0, f"helm {cmd[0]} accepted {flags}"
        assert message in proc.stderr, f"helm {cmd[0]}: {proc.stderr}"
    lint = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert message.replace('"', '\\"') in lint.stdout + lint.stderr


def test_values_schema_is_strict_and_accepts_the_defaults():
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    # Every object of the schema is closed, except the free-form Kubernetes maps and objects.
    open_ok = {"nodeSelector", "affinity", "podAnnotations", "podLabels", "annotations", "ingressControllerPodLabels"}

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "envList" not in path:
                assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            elif node.get("type") == "object" and path.split(".")[-1] not in open_ok and "items" not in path:
                assert "additionalProperties" in node, f"{path} is an open object"
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(schema, "$")


# --- policies over what renders ---------------------------------------------------------------


def test_the_default_plan_and_the_limiter_reach_every_process_as_settings_read_them(helm, tmp_path):
    """The chart's plan values become BOOKING_PLAN_DEFAULT_* that `Settings` accepts, fractions and large ones too."""
    from booking_core.config import Settings
    from booking_core.model import plans

    own = tmp_path / "plan-values.yaml"  # a file, not --set: --set reads 2.5 as a string
    own.write_text("config:\n  limitsEnabled: false\n  planDefault: {ratePerSecond: 2.5, burst: 1000000, weight: 7}\n")
    docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml", own]))
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")]
    env = {"DATABASE_URL": "postgresql://db", "REDIS_URL": "redis://cache", **config["data"]}
    s = Settings.from_env(env)
    assert plans.default_plan(s) == plans.Plan("default", 2.5, 1_000_000, 7) and s.limits_enabled is False
    default = [d for d in template(helm, *helm_args([CHART / "ci" / "default-values.yaml"]))
               if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")][0]["data"]
    s = Settings.from_env({"DATABASE_URL": "postgresql://db", "REDIS_URL": "redis://cache", **default})
    assert plans.default_plan(s) == plans.Plan("default", 50.0, 500, 1) and s.limits_enabled is True


def test_every_container_has_cpu_and_memory_requests_and_limits(rendered):
    for name, d in all_docs(rendered):
        for owner, c in containers([d]):
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(res.get(kind, {}))
                where = f"{name}: {owner['kind']}/{owner['metadata']['name']}/{c['name']}"
                assert not missing, f"{where} lacks {kind} {missing}"


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if str(quantity).endswith("m") else float(quantity)


def test_the_api_is_guaranteed_qos_and_outweighs_every_worker_for_cpu(rendered):
    # The accept path comes first on a cluster too: requests == limits for every API container
    # (Guaranteed QoS: evicted last), and more CPU shares than any worker asks for.
    docs = rendered["default-values.yaml"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = deployments[component_name("api")]
    api_cpu = None
    for _, c in containers([api]):
        res = c["resources"]
        assert res["requests"] == res["limits"], f"API container {c['name']} is not Guaranteed: {res}"
        api_cpu = _cpu(res["requests"]["cpu"])
    for queue in ("email", "invoice", "audit"):
        for _, c in containers([deployments[component_name(f"{queue}-worker")]]):
            assert _cpu(c["resources"]["requests"]["cpu"]) * 4 <= api_cpu, f"{queue} worker asks for too much CPU"


def test_a_worker_can_be_placed_on_nodes_of_its_own(helm, tmp_path):
    """A worker's own nodeSelector, tolerations and affinity replace the chart-wide ones for its pods only."""
    taint = {"key": "backlog", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    api_pods = {"matchLabels": {"app.kubernetes.io/component": "api"}}
    away_from_api = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": api_pods}}]}}
    values = tmp_path / "placement.yaml"
    values.write_text(yaml.safe_dump({
        "nodeSelector": {"pool": "general"},
        "workers": {"invoice": {"nodeSelector": {"pool": "backlog"}, "tolerations": [taint],
                                "affinity": away_from_api}},
    }))
    docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml", values]))
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"}
    invoice = pods[component_name("invoice-worker")]
    assert invoice["nodeSelector"] == {"pool": "backlog"}
    assert invoice["tolerations"] == [taint]
    assert invoice["affinity"] == away_from_api
    for other in ("api", "email-worker", "audit-worker", "relay"):
        assert pods[component_name(other)]["nodeSelector"] == {"pool": "general"}, other
        assert "tolerations" not in pods[component_name(other)], other
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        validate_manifest(deployment)


def test_the_api_logs_failed_requests_by_default_and_every_request_when_asked(helm):
    def api_env(set_values: dict | None = None) -> dict[str, str]:
        docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml"], set_values))
        [api] = [c for _, c in containers(docs) if c["name"] == "api"]
        return env_of(api, docs)

    assert api_env()["BOOKING_ACCESS_LOG"] == "errors"
    assert api_env({"api.gunicorn.accessLog": "all"})["BOOKING_ACCESS_LOG"] == "all"


def test_containers_serving_http_have_probes_and_the_others_none(rendered):
    seen_ports = set()
    for name, d in all_docs(rendered):
        for owner, c in containers([d]):
            where = f"{name}: {owner['metadata']['name']}/{c['name']}"
            ports = {p.get("name") for p in c.get("ports", [])}
            seen_ports |= ports
            if ports & {"http", "web"}:
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where} serves HTTP without probes"
            elif ports - {"metrics"}:
                assert "livenessProbe" in c, f"{where} listens without a liveness probe"
            else:
                # Workers and the relay serve only metrics (a dead metrics server must not restart a consumer;
                # the `up` alert reports it); the hook and test pods listen on nothing.
                assert not any(p in c for p in ("readinessProbe", "livenessProbe", "startupProbe")), where
    assert {"http", "liveness", "metrics"} <= seen_ports


def test_every_pod_is_non_root_read_only_without_capabilities_under_runtime_default_seccomp(rendered):
    for name, d in all_docs(rendered):
        for owner, spec in pod_specs([d]):
            where = f"{name}: {owner['kind']}/{owner['metadata']['name']}"
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc.get("runAsUser", 1) != 0, where
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
                assert sc["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"
                assert sc["capabilities"] == {"drop": ["ALL"]}, f"{where}/{c['name']}"
                assert sc.get("privileged") is not True and sc.get("runAsUser", 1) != 0, f"{where}/{c['name']}"
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, f"{where}/{c['name']}"
            # The only writable paths are volumes, e.g. /tmp as an emptyDir.
            mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
            assert mounts, f"{where} mounts no writable dir"


def test_service_pods_get_no_kubernetes_api_token_except_the_operator(rendered):
    # The operator and its uninstall hook (which deletes the QueueScalers) call the Kubernetes API; nothing else.
    for name, d in all_docs(rendered):
        for owner, spec in pod_specs([d]):
            wants_token = owner["metadata"]["name"] in (component_name("operator"), component_name("operator-cleanup"))
            assert spec.get("automountServiceAccountToken") is wants_token, f"{name}: {owner['metadata']['name']}"


def test_no_image_is_untagged_or_latest(rendered):
    for name, d in all_docs(rendered):
        for _, c in containers([d]):
            image = c["image"]
            ref = image.split("@")[0]
            assert ":" in ref.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
            assert ref.rsplit(":", 1)[1] != "latest", f"{name}: {image}"


def _max_pods(docs: list[dict], workload: dict) -> int:
    """The most pods a workload can have: its replicas, or its QueueScaler's maxReplicaCount."""
    for qs in by_kind(docs, "QueueScaler").values():
        if qs["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]:
            return max(qs["spec"]["maxReplicaCount"], workload["spec"].get("replicas", 1))
    return workload["spec"].get("replicas", 1)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_ids)
def test_every_workload_that_can_run_several_pods_is_covered_by_a_pdb(rendered, values_file):
    docs = rendered[values_file.name]
    pdbs = list(by_kind(docs, "PodDisruptionBudget").values())
    several = 0
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet") or _max_pods(docs, d) <= 1:
            continue
        several += 1
        covering = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(d))]
        assert len(covering) == 1, f"{d['kind']}/{d['metadata']['name']} is covered by {len(covering)} PDBs"
        # A budget that lets no pod go would block every node drain.
        assert covering[0]["spec"].get("maxUnavailable", 0) not in (0, "0%")
    assert several >= 2


def test_autoscaled_workers_leave_replicas_to_the_operator(rendered):
    docs = rendered["default-values.yaml"]
    for q in QUEUES:
        assert "replicas" not in by_kind(docs, "Deployment")[component_name(f"{q}-worker")]["spec"]
    fixed = by_kind(rendered["fixed-replicas-values.yaml"], "Deployment")
    assert [fixed[component_name(f"{q}-worker")]["spec"]["replicas"] for q in QUEUES] == [3, 2, 1, 2]


def test_workers_outlive_their_shutdown_timeout_and_run_their_own_queue(rendered):
    deployments = by_kind(rendered["default-values.yaml"], "Deployment")
    for q in QUEUES:
        spec = deployments[component_name(f"{q}-worker")]["spec"]["template"]["spec"]
        cmd = spec["containers"][0]["command"]
        assert cmd[:3] == ["dramatiq", f"{q}_worker.broker", f"{q}_worker.actors"]
        assert f"--queues={q}" in cmd
        timeout_ms = int(next(a for a in cmd if a.startswith("--worker-shutdown-timeout=")).split("=")[1])
        assert spec["terminationGracePeriodSeconds"] > timeout_ms / 1000
        # Only the email worker holds the SMTP credentials.
        env = {e["name"] for e in spec["containers"][0]["env"]}
        assert ("SMTP_URL" in env) == (q == "email")


def test_service_images_come_from_values(helm):
    images = {
        "api.image": "component-api", "relay.image": "component-relay", "workers.email.image": "component-email",
        "workers.invoice.image": "component-invoice", "workers.audit.image": "component-audit",
        "workers.webhook.image": "component-webhook", "operator.image": "component-operator",
        "events.image": "component-events",
        "postgresql.image": "component-postgresql",
        "redis.image": "component-redis", "smtpSink.image": "component-smtp-sink",
    }
    strings = {"image.registry": "registry.test/team"}
    for key, repo in images.items():
        strings[f"{key}.repository"] = repo
        strings[f"{key}.tag"] = f"v-{repo}"
    docs = template(helm, *helm_args([CHART / "ci" / "dev-values.yaml"], set_strings=strings))
    expected = {}
    for key, repo in images.items():
        third_party = key.split(".")[0] in ("postgresql", "redis", "smtpSink")
        expected[repo] = f"{'' if third_party else 'registry.test/team/'}{repo}:v-{repo}"
    used = {c["image"] for _, c in containers(docs)}
    assert used == set(expected.values()), used ^ set(expected.values())
    # And each service runs its own image: the hook and test pods the API's (booking-admin is in it).
    by_owner = {o["metadata"]["name"]: c["image"] for o, c in containers(docs)}
    assert by_owner[component_name("email-worker")] == expected["component-email"]
    assert by_owner[component_name("webhook-worker")] == expected["component-webhook"]
    assert by_owner[component_name("relay")] == expected["component-relay"]
    assert by_owner[component_name("migrations")] == expected["component-api"]
    assert by_owner[component_name("test")] == expected["component-api"]
    assert by_owner[component_name("operator")] == expected["component-operator"]


def test_operator_is_one_recreated_replica_with_a_liveness_probe_watching_its_namespace(rendered):
    op = by_kind(rendered["default-values.yaml"], "Deployment")[component_name("operator")]
    assert op["spec"]["replicas"] == 1 and op["spec"]["strategy"] == {"type": "Recreate"}
    c = op["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:3] == ["kopf", "run", "--module=queue_autoscaler.operator"]
    assert f"--namespace={NAMESPACE}" in c["command"] and "--standalone" in c["command"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["command"]
    peered = by_kind(rendered["production-values.yaml"], "Deployment")[component_name("operator")]
    cmd = peered["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--peering={component_name('operator')}" in cmd and "--standalone" not in cmd
    assert component_name("operator") in by_kind(rendered["production-values.yaml"], "KopfPeering")


def _rules(docs) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    role = by_kind(docs, "Role")[component_name("operator")]
    return {(g, r, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", [])))
            for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}


def test_operator_rbac_grants_only_what_it_needs_in_its_namespace(rendered):
    # The verbs themselves are compared, in both directions, with services/queue-autoscaler/rbac-verbs.md
    # and with the requests the operator really makes in services/queue-autoscaler/tests/test_rbac_verbs.py.
    docs = rendered["default-values.yaml"]
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert _rules(docs) == {
        ("scaling.booking-platform.io", "queuescalers", ("list", "patch", "watch"), ()),
        ("scaling.booking-platform.io", "queuescalers/status", ("patch",), ()),
        ("apps", "deployments/scale", ("get", "patch"), ()),
        ("autoscaling", "horizontalpodautoscalers", ("list",), ()),
        ("", "secrets", ("get",), (component_name("redis-connection"),)),
        ("", "events", ("create",), ()),
        ("", "pods", ("list", "patch"), ()),  # pod-deletion-cost before a scale-down
    }
    # The one Secret it may read holds the Redis URL and nothing else (no database or SMTP password).
    assert set(by_kind(docs, "Secret")[component_name("redis-connection")]["stringData"]) == {"REDIS_URL"}
    binding = by_kind(docs, "RoleBinding")[component_name("operator")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": component_name("operator"),
                                    "namespace": NAMESPACE}]
    # With peering, kopf's namespaced KopfPeering objects too; the Secret is then the existing one.
    peered = _rules(rendered["production-values.yaml"]) - _rules(docs)
    assert peered == {("kopf.dev", "kopfpeerings", ("list", "patch", "watch"), ()),
                      ("", "secrets", ("get",), ("booking-redis",))}


def _ingress_rules(docs, labels) -> list[dict] | None:
    """The ingress rules admitting traffic to pods with `labels`; None when no policy selects them."""
    policies = [p for p in by_kind(docs, "NetworkPolicy").values() if selects(p["spec"]["podSelector"], labels)]
    if not policies:
        return None
    return [rule for p in policies for rule in p["spec"].get("ingress", [])]


SCRAPER = {"namespaceSelector": {"matchExpressions": [
    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]}}


def test_only_the_api_and_the_bundled_servers_accept_ingress_and_prometheus_only_metrics(helm, rendered):
    docs = rendered["dev-values.yaml"]
    for owner, _ in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        rules = _ingress_rules(docs, pod_labels(owner))
        assert rules is not None, f"no NetworkPolicy selects {owner['metadata']['name']}"
        if component in ("api", "events", "postgresql", "redis", "smtp-sink"):
            assert rules, component
        elif component in ("relay", "operator") or component.endswith("-worker"):
            # Prometheus on the metrics port, nothing else.
            assert rules == [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [SCRAPER]}], component
        else:
            assert rules == [], f"{component} accepts ingress: {rules}"
    no_scraper = template(helm, *helm_args([CHART / "ci" / "dev-values.yaml"],
                                           {"networkPolicy.metricsScraper.enabled": "false"}))
    worker = by_kind(no_scraper, "Deployment")[component_name("email-worker")]
    assert _ingress_rules(no_scraper, pod_labels(worker)) == []


def test_the_api_accepts_the_ingress_controllers_namespace_and_the_helm_test_pod_only(rendered):
    docs = rendered["default-values.yaml"]
    api = by_kind(docs, "Deployment")[component_name("api")]
    clients, scraper = _ingress_rules(docs, pod_labels(api))
    # Prometheus too, in a rule of its own, on the metrics port only; clients on the HTTP port only.
    assert scraper == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [SCRAPER]}
    assert clients["ports"] == [{"port": "http", "protocol": "TCP"}]
    sources = clients["from"]
    assert sources[0]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ingress-nginx"]}]
    test_pod = by_kind(docs, "Pod")[component_name("test")]
    assert selects(sources[1]["podSelector"], pod_labels(test_pod))
    worker = by_kind(docs, "Deployment")[component_name("email-worker")]
    assert not selects(sources[1]["podSelector"], pod_labels(worker))
    assert len(sources) == 2
    prod = _ingress_rules(rendered["production-values.yaml"], pod_labels(api))[0]["from"]
    assert prod[0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}
    assert prod[-1] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "billing"}}}


def _hook(doc) -> set[str]:
    return set(doc["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(","))


def test_migrations_run_as_a_hook_before_install_and_upgrade(rendered):
    docs = rendered["default-values.yaml"]
    job = by_kind(docs, "Job")[component_name("migrations")]
    assert _hook(job) == {"pre-install", "pre-upgrade"}
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert "from booking_core.db.migrate import migrate" in c["command"][-1]
    # Hooks run before the release's resources exist: the URL comes from a hook Secret made just before.
    ref = c["env"][0]["valueFrom"]["secretKeyRef"]
    hook_secret = by_kind(docs, "Secret")[ref["name"]]
    assert _hook(hook_secret) == {"pre-install", "pre-upgrade"}
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    # An existing Secret is read directly; the bundled Postgres only exists after the install.
    prod_job = by_kind(rendered["production-values.yaml"], "Job")[component_name("migrations")]
    assert prod_job["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "booking-database", "key": "url"}
    dev_job = by_kind(rendered["dev-values.yaml"], "Job")[component_name("migrations")]
    assert _hook(dev_job) == {"post-install", "pre-upgrade"}
    assert component_name("migrations") not in by_kind(rendered["fixed-replicas-values.yaml"], "Job")


def test_helm_test_pod_is_a_test_hook_that_checks_through_the_api_and_events_services(rendered):
    docs = rendered["default-values.yaml"]
    pod = by_kind(docs, "Pod")[component_name("test")]
    assert _hook(pod) == {"test"}
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    for component, var in (("api", "API_URL"), ("events", "EVENTS_URL")):
        service = by_kind(docs, "Service")[component_name(component)]
        port = service["spec"]["ports"][0]["port"]
        assert env[var] == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}"
    script = by_kind(docs, "ConfigMap")[component_name("test")]
    assert _hook(script) == {"test"}
    assert script["data"]["smoke_test.py"] == (CHART / "files" / "smoke_test.py").read_text().rstrip("\n")


def test_bundled_servers_are_single_instances_marked_not_for_production(rendered):
    docs = rendered["dev-values.yaml"]
    for name in ("postgresql", "redis"):
        sts = by_kind(docs, "StatefulSet")[component_name(name)]
        assert sts["spec"]["replicas"] == 1 and sts["spec"]["volumeClaimTemplates"]
        assert "not-for-production" in " ".join(sts["metadata"]["annotations"])
    assert not by_kind(rendered["default-values.yaml"], "StatefulSet")
    values_text = (CHART / "values.yaml").read_text()
    assert values_text.count("NOT FOR PRODUCTION") >= 3
    assert "NOT FOR PRODUCTION" in (CHART / "README.md").read_text()


def test_config_changes_roll_the_pods(helm):
    def checksum(docs):
        api = by_kind(docs, "Deployment")[component_name("api")]
        return api["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = [CHART / "ci" / "default-values.yaml"]
    assert checksum(template(helm, *helm_args(base))) != checksum(
        template(helm, *helm_args(base, {"config.relayBatchSize": "50"})))


def test_the_config_map_is_what_the_processes_read(helm):
    """The rendered ConfigMap, read by booking_core's own Settings, carries the values' settings."""
    from booking_core.config import Settings

    def read(flags):
        docs = template(helm, *helm_args([CHART / "ci" / "default-values.yaml"], flags))
        data = by_kind(docs, "ConfigMap")[component_name("config")]["data"]
        s = Settings.from_env({**data, "DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"})
        return s.event_history_days, s.dead_letter_retention_days, s.reconcile_after_ms, s.pause_poll_ms

    assert read({}) == (30, 30, 0, 1000)
    assert read({"config.eventHistoryDays": "0", "config.deadLetterRetentionDays": "7",
                 "config.reconcileAfterMs": "300000", "config.pausePollMs": "250"}) == (0, 7, 300000, 250)


def test_ingress_serves_the_host_with_tls_from_values(rendered):
    ing = by_kind(rendered["production-values.yaml"], "Ingress")[component_name("api")]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["bookings.acme.example"], "secretName": "bookings-acme-tls"}]
    assert ing["spec"]["rules"][0]["host"] == "bookings.acme.example"
    assert not by_kind(rendered["default-values.yaml"], "Ingress")


def test_the_ingress_never_routes_to_the_api_metrics(rendered):
    """Every path goes to the Service's `http` port, whose pods' container port has no /metrics."""
    docs = rendered["production-values.yaml"]
    ing = by_kind(docs, "Ingress")[component_name("api")]
    backends = [p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": component_name("api"), "port": {"name": "http"}}]
    service = by_kind(docs, "Service")[component_name("api")]
    target = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert target == {"http": "http"}  # the metrics port has a headless Service of its own
    api = by_kind(docs, "Deployment")[component_name("api")]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert ports["metrics"] == int(env["BOOKING_METRICS_PORT"]) != ports["http"]


def test_notes_tell_how_to_reach_the_api_and_make_the_first_token(helm):
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    "-f", str(CHART / "ci" / "default-values.yaml"))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{component_name('api')}" in notes
    assert f"exec deploy/{component_name('api')} -- booking-admin tokens create --tenant acme --admin" in notes
    assert f"helm test {RELEASE}" in notes
    assert f"port-forward svc/{component_name('events')}" in notes and "127.0.0.1:8081/ops/" in notes


def _notes(helm, *flags: str) -> str:
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *flags)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_say_where_the_metrics_are_and_how_the_workers_are_scaled(helm):
    notes = _notes(helm, "-f", str(CHART / "ci" / "default-values.yaml"))
    assert f"the API on :9100 (Service {component_name('api-metrics')})" in notes
    assert "the relay on :9100, each worker on :9191, the operator on :9102" in notes
    assert "/metrics on its HTTP port" not in notes.replace("the events service at /metrics on its HTTP port", "")
    assert f"kubectl -n {NAMESPACE} get queuescalers" in notes
    assert "patch queuescaler NAME --type=merge -p '{\"metadata\":{\"finalizers\":null}}'" in notes
    assert "read-only: safe on production" in notes
    fixed = _notes(helm, "-f", str(CHART / "ci" / "fixed-replicas-values.yaml"))
    # The workers really run these counts (tests above): the notes must say so, not "fixed replicas" vaguely.
    assert "each worker runs its workers.<name>.replicaCount\n   (audit 1, email 3, invoice 2, webhook 2)" in fixed
    assert "the operator on" not in fixed and "queuescalers" not in fixed
    external = _notes(helm, "-f", str(CHART / "ci" / "default-values.yaml"), "--set", "workerAutoscaling=external")
    assert "your autoscaler (KEDA, an HPA) scales them" in external and "queuescalers" not in external
    gce = _notes(helm, "-f", str(CHART / "ci" / "production-values.yaml"), "--set", "api.ingress.className=gce")
    assert "has no route for each booking's stream" in gce
    assert "has no route" not in _notes(helm, "-f", str(CHART / "ci" / "production-values.yaml"))


def test_values_are_camel_case_documented_key_by_key_and_the_readme_table_is_current():
    def keys(node, path=""):
        for k, v in node.items() if isinstance(node, dict) else ():
            yield f"{path}{k}"
            yield from keys(v, f"{path}{k}.")

    bad = [k for k in keys(yaml.safe_load((CHART / "values.yaml").read_text()))
           if not re.fullmatch(r"[a-z][A-Za-z0-9]*", k.rsplit(".", 1)[-1])]
    assert not bad, f"not camelCase: {bad}"
    # The generator fails on a key without a `# --` comment, and --check on a stale table.
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "helm_values_table.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- the rendered commands, run for real -------------------------------------------------------

#: Tables the running release writes whatever the helm test does: the relay sets its sleeping flag
#: each time it wakes to sweep the outbox (every `relaySweepMs`) and sleeps again.
RELEASE_STATE = ("relay_wakeup",)


def database_digest(url: str) -> dict[str, str]:
    """An md5 of every table's rows but RELEASE_STATE: any write the helm test made would change one."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND NOT tablename = ANY(%s) "
            "ORDER BY 1", [list(RELEASE_STATE)])]
        return {t: conn.execute(f"SELECT md5(COALESCE(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")
                .fetchone()[0] for t in tables}


@pytest.mark.e2e
def test_rendered_commands_and_env_run_the_platform_and_the_helm_test_passes_writing_nothing(
        helm, database_url, redis_url, tmp_path):
    from scratch_database import scratch_database

    # A database of its own: on the shared one the release's relay and workers would run
    # what other tests left in the outbox while the helm test runs, and that is no write of its.
    with scratch_database(database_url, "chart") as own_database:
        run_release_and_helm_test(helm, own_database, redis_url, tmp_path)


def run_release_and_helm_test(helm, database_url, redis_url, tmp_path):
    """Migrate, start the rendered release, run the helm test and check it wrote nothing, then make it fail."""
    from booking_embedded import EmbeddedSmtp, free_port

    smtp = EmbeddedSmtp(tmp_path / "mail", free_port(), tmp_path / "logs")
    smtp.start()
    port, events_port = free_port(), free_port()
    docs = template(helm, *helm_args(
        [CHART / "ci" / "default-values.yaml"],
        {"api.containerPort": port, "api.gunicorn.workers": 1, "config.relaySweepMs": 500,
         "events.containerPort": events_port},
        {"externalDatabase.url": database_url, "externalRedis.url": redis_url, "smtp.url": smtp.url,
         "config.redisNamespace": f"chart-{uuid.uuid4().hex[:8]}"}))
    release = LocalRelease(docs, tmp_path, components=(*LocalRelease.COMPONENTS, "events"))
    try:
        proc = release.migrate()
        assert proc.returncode == 0 and proc.stdout.startswith("applied:"), proc.stdout + proc.stderr
        release.start()
        from booking_embedded import wait_for_port

        wait_for_port(events_port, timeout=60)

        test = release.container("test")
        script = tmp_path / "smoke_test.py"
        script.write_text(by_kind(docs, "ConfigMap")[component_name("test")]["data"]["smoke_test.py"])
        env = {**release.base_env, **env_of(test, docs), "API_URL": f"http://127.0.0.1:{port}",
               "EVENTS_URL": f"http://127.0.0.1:{events_port}"}
        assert env["PGOPTIONS"] == "-c default_transaction_read_only=on"  # as the pod runs it
        argv = local_argv([a.replace("/scripts/smoke_test.py", str(script)) for a in test["command"]])
        before = database_digest(database_url)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150)
        after = database_digest(database_url)
        assert proc.returncode == 0, proc.stdout + proc.stderr + release.logs()
        assert re.search(r"PASS: API ready .*events service up.*schema at \S+.*nothing written", proc.stdout)
        assert {t for t in before if before[t] != after.get(t)} == set(), "the helm test wrote to these tables"
        assert all(c.alive() for c in release.children), release.logs()

        # And it fails, saying why, when the platform does not answer as it should.
        release.children[-1].stop()  # the events service
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150)
        assert proc.returncode != 0 and "FAIL: GET http://127.0.0.1" in proc.stderr + proc.stdout
    finally:
        release.stop()
        smtp.stop()


def test_every_deployment_environment_passes_its_process_settings(rendered):
    """Each ci rendering's Deployments start: their environment is accepted by the settings their process reads.

    A chart value rendered out of a setting's bounds would stop the pod at boot (exit 2,
    naming the variable); this finds it at `helm template` time instead.
    """
    from booking_api.settings import ApiSettings
    from booking_core.config import MetricsAddress, Settings, require_webhooks_key
    from booking_events.settings import EventsSettings
    from queue_autoscaler.settings import OperatorSettings

    def relay(env):
        return Settings.from_env(env), MetricsAddress.from_env(env)

    settings_of = {"booking-api": ApiSettings.from_env, "booking-events": EventsSettings.from_env,
                   "queue-autoscaler": OperatorSettings.from_env, "outbox-relay": relay,
                   **{f"{q}-worker": Settings.from_env for q in QUEUES},
                   "webhook-worker": lambda env: require_webhooks_key(Settings.from_env(env))}
    checked = set()
    for name, docs in rendered.items():
        for owner, c in containers(docs):
            image = c["image"].rsplit("/", 1)[-1].split(":")[0]
            if owner["kind"] != "Deployment" or image not in settings_of:
                continue
            # Secrets the release only names (existingSecret): a placeholder, since URLs are not parsed here.
            refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e]
            named = {**EXISTING_SECRETS, **by_kind(docs, "Secret")}
            given = [{"kind": "Secret", "metadata": {"name": r["name"]}, "stringData": {r["key"]: "placeholder://x"}}
                     for r in refs if r["name"] not in named]
            merged: dict[str, dict] = {}
            for doc in given:  # one document per secret, with all its keys
                merged.setdefault(doc["metadata"]["name"], {**doc, "stringData": {}})["stringData"].update(
                    doc["stringData"])
            try:
                settings_of[image](env_of(c, docs + list(merged.values())))
            except ValueError as e:
                raise AssertionError(f"{name}: {owner['metadata']['name']}: {e}") from None
            checked.add(image)
    assert checked == set(settings_of)
