"""A worker pod restarts rather than sits stuck: what the chart README promises of its processes.

Dramatiq's parent must be the container's PID 1, started straight from the
container's command (no shell, no init in front, no shared process namespace):
then the parent's death takes every process of the container with it, and its
exit (which follows any of its processes' death) restarts the container.
"""

from __future__ import annotations

import pytest

from helm_helpers import CI_VALUES, containers, helm_args, install_helm, pod_specs, template

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
