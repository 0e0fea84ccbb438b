"""Helpers for the chart and skaffold tests: a real `helm` binary, rendering, walking manifests."""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "booking-platform"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "booking", "bookings"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")
_HELM_HOME = Path(tempfile.mkdtemp(prefix="helm-test-"))
atexit.register(shutil.rmtree, _HELM_HOME, ignore_errors=True)


def install_helm() -> str:
    """The pinned helm, installed into .tools/bin by tools/get-helm.sh if missing."""
    proc = subprocess.run(["bash", str(ROOT / "tools" / "get-helm.sh")], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"tools/get-helm.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def helm_args(values_files=(), set_values: dict | None = None, set_strings: dict | None = None) -> list[str]:
    """`-f` and `--set`/`--set-string` flags."""
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for k, v in (set_values or {}).items():
        args += ["--set", f"{k}={v}"]
    for k, v in (set_strings or {}).items():
        args += ["--set-string", f"{k}={v}"]
    return args


def run_helm(helm: str, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
    """Run helm with a throwaway home, so no user config or repo cache leaks in; with `kubeconfig`, against that
    API server (tests/kube_standin.py), else against none."""
    env = {**os.environ, **{f"HELM_{d.upper()}_HOME": str(_HELM_HOME / d) for d in ("cache", "config", "data")}}
    env["KUBECONFIG"] = str(kubeconfig or _HELM_HOME / "no-cluster")
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, env=env)


#: Successful renders of this session: (helm, flags, include_crds, the values files' digests) -> documents.
_RENDERS: dict[tuple, list[dict]] = {}
#: The manifests (canonical JSON) that passed `validate_manifest` this session.
_VALID: set[str] = set()
#: The Kubernetes release whose schemas the rendered manifests must meet.
KUBE_VERSION = "1.35.0"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _values_digests(flags: tuple[str, ...]) -> tuple[str, ...]:
    """A digest of each `-f` file's content: a test may write its own values file and reuse the name."""
    return tuple(hashlib.sha256(Path(f).read_bytes()).hexdigest()
                 for flag, f in zip(flags, flags[1:], strict=False) if flag in ("-f", "--values"))


def template(helm: str, *flags: str, include_crds: bool = True) -> list[dict]:
    """`helm template` of the chart as the release `booking` in `bookings`; the documents, parsed.

    Rendered once per session for the same flags and values (a render is a helm process,
    and most tests read the same few): each call gets its own copy, free to change.  A
    failed render is not kept, so a test of a failure runs helm every time.
    """
    key = (helm, flags, include_crds, _values_digests(flags))
    if key not in _RENDERS:
        cmd = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *flags]
        if include_crds:
            cmd.append("--include-crds")
        proc = run_helm(helm, *cmd)
        if proc.returncode != 0:
            raise AssertionError(f"helm template {' '.join(flags)} failed:\n{proc.stderr}")
        _RENDERS[key] = [d for d in yaml.load_all(proc.stdout, Loader=_LOADER) if d]
    return copy.deepcopy(_RENDERS[key])


def validate_manifest(doc: dict) -> None:
    """`kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)`, once per distinct manifest this session.

    Each call of the library loads the version's definitions (1.6 MB of JSON) again, and
    many tests render the same Deployment: a manifest that passed once passes again.
    Raises kubernetes_validate.ValidationError as the library does.
    """
    import kubernetes_validate

    key = json.dumps(doc, sort_keys=True)
    if key not in _VALID:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        _VALID.add(key)


def pod_specs(docs: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(owner document, pod spec) for every pod the documents would run."""
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]


def containers(docs: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(owner document, container) for every container and init container."""
    for owner, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield owner, c


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    """Documents of one kind by metadata.name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_labels(doc: dict) -> dict:
    """The labels of the pods a workload (or a bare Pod) runs."""
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    """Whether a matchLabels/matchExpressions selector selects `labels` (In/NotIn/Exists only)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        have = e["key"] in labels
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
        if e["operator"] == "Exists" and not have:
            return False
        if e["operator"] == "DoesNotExist" and have:
            return False
    return True


def component_name(component: str) -> str:
    """The name of one component's resources in the test release."""
    return f"{RELEASE}-booking-platform-{component}"


# --- running rendered containers on this machine ------------------------------------------------

#: Env vars naming a metrics port or multiprocess dir: fixed in a pod, made unique per process here.
METRICS_PORT_ENV = ("BOOKING_METRICS_PORT", "dramatiq_prom_port")
METRICS_DIR_ENV = ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")


#: The Secrets the ci values name but the chart does not render (a cluster's operator makes them), as the tests
#: stand them in: the progress-page key of `events.statusSecret.existingSecret`.
EXISTING_SECRETS = {"booking-status": {"kind": "Secret", "stringData": {
    "BOOKING_STATUS_SECRET": "test-status-key-0123456789abcdef0123456789abcdef"}},
    # A Fernet key (32 bytes, url-safe base64) that seals nothing: the ci values name this Secret.
    "booking-webhooks-key": {"kind": "Secret", "stringData": {
        "BOOKING_WEBHOOKS_KEY": "dGVzdC13ZWJob29rcy1rZXktMDEyMzQ1Njc4OWFiY2Q="}}}


def env_of(container: dict, docs: list[dict]) -> dict[str, str]:
    """A container's environment as Kubernetes would build it from the rendered ConfigMaps and Secrets
    (and EXISTING_SECRETS)."""
    env: dict[str, str] = {}
    maps, secrets = by_kind(docs, "ConfigMap"), {**EXISTING_SECRETS, **by_kind(docs, "Secret")}
    for src in container.get("envFrom", []):
        env.update(maps[src["configMapRef"]["name"]]["data"])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def local_argv(argv: list[str]) -> list[str]:
    """A container command on this machine: the venv's entry points, loopback instead of 0.0.0.0."""
    exe = Path(sys.executable).parent / argv[0]
    return [str(exe) if exe.exists() else argv[0]] + [a.replace("0.0.0.0", "127.0.0.1") for a in argv[1:]]  # noqa: S104


def localize_metrics(env: dict[str, str], scratch: Path) -> tuple[dict[str, str], dict[int, int]]:
    """`env` with its metrics ports, dirs and host made unique to one local process.

    In a pod every worker listens on the same port and writes to its own emptyDir;
    on one machine they would collide. Returns the new env and {pod port: local port}.
    """
    from booking_embedded import free_port

    env, ports = dict(env), {}
    for name in METRICS_PORT_ENV:
        if name in env:
            ports[int(env[name])] = free_port()
            env[name] = str(ports[int(env[name])])
    for name in METRICS_DIR_ENV:
        if name in env:
            env[name] = str(scratch / env[name].strip("/").replace("/", "-"))
    if "dramatiq_prom_host" in env:
        env["dramatiq_prom_host"] = "127.0.0.1"
    return env, ports


class LocalRelease:
    """The rendered API, relay and workers run as local processes, with the rendered commands and env.

    Kubernetes is simulated only where it must be: the venv's entry points, loopback
    addresses, a port and scratch dir of its own per process for metrics.
    """

    COMPONENTS = ("api", "relay", "email-worker", "invoice-worker", "audit-worker", "webhook-worker")

    def __init__(self, docs: list[dict], tmp_path: Path, components: tuple[str, ...] = COMPONENTS):
        self.docs, self.tmp, self.components = docs, tmp_path, components
        self.base_env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(tmp_path),
                         "TMPDIR": str(tmp_path)}
        self.containers = {o["metadata"]["name"]: c for o, c in containers(docs)}
        self.children: list = []
        self.ports: dict[str, dict[int, int]] = {}  # component -> {pod port: local port}
        (tmp_path / "logs").mkdir(exist_ok=True)

    def container(self, component: str) -> dict:
        return self.containers[component_name(component)]

    def migrate(self) -> subprocess.CompletedProcess:
        c = self.container("migrations")
        return subprocess.run(local_argv(c["command"]), env={**self.base_env, **env_of(c, self.docs)},
                              capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start every component; wait until the API listens."""
        from booking_embedded import Child, wait_for_port

        for component in self.components:
            c = self.container(component)
            scratch = self.tmp / "run" / component
            scratch.mkdir(parents=True, exist_ok=True)
            env, self.ports[component] = localize_metrics(env_of(c, self.docs), scratch)
            env = {**self.base_env, **env, "XDG_CACHE_HOME": str(self.tmp / "cache")}
            child = Child(component, local_argv(c["command"]), log_path=self.tmp / "logs" / f"{component}.log",
                          env=env, stop_timeout=40)
            child.start()
            self.children.append(child)
        api_port = next(p["containerPort"] for p in self.container("api")["ports"] if p["name"] == "http")
        self.ports["api"][api_port] = api_port
        wait_for_port(api_port, timeout=60, child=self.children[0])

    def local_port(self, component: str, port_name: str) -> int:
        """Where this machine serves a component's named container port."""
        port = next(p["containerPort"] for p in self.container(component)["ports"] if p["name"] == port_name)
        return self.ports[component][port]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (self.tmp / "logs").glob("*.log"))

    def stop(self) -> None:
        for child in self.children:
            child.signal(signal.SIGTERM)
        for child in self.children:
            child.stop()


def crd_json_schema(node):
    """The CRD's OpenAPI schema as JSON Schema (nullable → a null type; Kubernetes' extensions dropped)."""
    if isinstance(node, dict):
        out = {k: crd_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if out.pop("nullable", False):
            out["type"] = [out["type"], "null"]
        return out
    return [crd_json_schema(v) for v in node] if isinstance(node, list) else node


def with_defaults(schema: dict, obj):
    """`obj` with the defaults of a CRD's schema filled in where left out, as the API server does."""
    if isinstance(obj, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = with_defaults(sub, obj[key])
    return obj
