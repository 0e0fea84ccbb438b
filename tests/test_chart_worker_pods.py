"""A worker pod restarts rather than sits stuck: what the chart README promises of its processes.

Dramatiq's parent must be the container's PID 1, started straight from the
container's command (no shell, no init in front, no shared process namespace):
then the parent's death takes every process of the container with it, and its
exit (which follows any of its processes' death) restarts the container.
"""

from __future__ import annotations

import pytest

from helm_helpers import CHART, CI_VALUES, containers, helm_args, install_helm, pod_specs, run_helm, template

WORKERS = ("email-worker", "invoice-worker", "audit-worker")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    helm = install_helm()
    return {f.name: template(helm, *helm_args([f])) for f in CI_VALUES}


def test_dramatiq_is_pid_1_of_every_worker_container(rendered):
    for values, docs in rendered.items():
        workers = {owner["metadata"]["name"]: c for owner, c in containers(docs)
                   if any(owner["metadata"]["name"].endswith(w) for w in WORKERS)}
        assert len(workers) == len(WORKERS), values
        for name, c in workers.items():
            assert c["command"][0] == "dramatiq", f"{values}: {name} runs {c['command'][:2]}, not dramatiq itself"
            assert not c.get("args"), f"{values}: {name}"
        for owner, spec in pod_specs(docs):
            if any(owner["metadata"]["name"].endswith(w) for w in WORKERS):
                assert not spec.get("shareProcessNamespace"), f"{values}: {owner['metadata']['name']}"


def fork_timeouts(docs: list[dict]) -> dict[str, int]:
    """Each worker container's `--worker-fork-timeout` in ms, by its Deployment's name's worker."""
    out = {}
    for owner, c in containers(docs):
        worker = next((w for w in WORKERS if owner["metadata"]["name"].endswith(w)), None)
        if worker:
            flags = [a for a in c["command"] if a.startswith("--worker-fork-timeout=")]
            assert len(flags) == 1, f"{worker}: {c['command']}"
            out[worker] = int(flags[0].split("=", 1)[1])
    return out


def test_workers_wait_for_their_process_as_long_as_the_local_runner_before_the_metrics_fork(rendered):
    """Dramatiq's 30 s default lost an invoice worker's /metrics under load; the chart waits as `bookingctl up`."""
    from bookingctl.services import WORKER_FORK_TIMEOUT_MS

    for values, docs in rendered.items():
        assert fork_timeouts(docs) == dict.fromkeys(WORKERS, WORKER_FORK_TIMEOUT_MS), values


def test_a_workers_fork_timeout_is_a_value_the_schema_bounds():
    helm = install_helm()
    base = [CI_VALUES[0]]
    docs = template(helm, *helm_args(base, {"workers.invoice.forkTimeoutSeconds": "900"}))
    assert fork_timeouts(docs)["invoice-worker"] == 900_000 and fork_timeouts(docs)["email-worker"] == 600_000
    for bad in ("0", "3601"):
        proc = run_helm(helm, "template", "r", str(CHART), *helm_args(base, {"workers.audit.forkTimeoutSeconds": bad}))
        assert proc.returncode != 0 and "/workers/audit/forkTimeoutSeconds" in proc.stderr, proc.stderr
