"""The chart's promise values (`workers.<queue>.autoscaling.maxAge`...) reach each QueueScaler as read.

Rendered by the real helm; each QueueScaler is validated against the CRD's own schema
and parsed by the operator's parse_spec, so what the chart writes is what the operator
keeps.  Bad values are refused by values.schema.json or the template, naming the value.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from helm_helpers import (
    CHART,
    by_kind,
    component_name,
    crd_json_schema,
    helm_args,
    run_helm,
    template,
    with_defaults,
)
from queue_autoscaler.spec import parse_spec

CRD = yaml.safe_load((CHART / "crds" / "queuescalers.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def scalers(helm, tmp_path, values: dict | None = None) -> dict[str, dict]:
    files = [CHART / "ci" / "default-values.yaml"]
    if values:
        files.append(tmp_path / "promise.yaml")  # a file: --set would turn 0.5 into a string
        files[-1].write_text(yaml.safe_dump(values))
    docs = template(helm, *helm_args(files))
    return {name.removeprefix(component_name("")).removesuffix("-worker"): qs
            for name, qs in by_kind(docs, "QueueScaler").items()}


def test_every_worker_gets_its_promise_and_its_concurrency_by_default(helm, tmp_path):
    rendered = scalers(helm, tmp_path)
    assert set(rendered) == {"email", "invoice", "audit", "webhook"}
    validator = jsonschema.Draft4Validator(crd_json_schema(SCHEMA))
    policies = {}
    for queue, qs in rendered.items():
        validator.validate(with_defaults(SCHEMA, copy.deepcopy(qs)))
        policies[queue] = parse_spec(qs["spec"]).policy
    assert {q: p.max_age for q, p in policies.items()} == {"email": 30, "invoice": 120, "audit": 60, "webhook": 30}
    assert {q: p.min_throughput_per_replica for q, p in policies.items()} == {"email": 1, "invoice": 0.5,
                                                                               "audit": 5, "webhook": 5}
    assert all(p.pod_start_seconds == 30 for p in policies.values())
    assert {q: p.throughput_half_life_seconds for q, p in policies.items()} == {"email": 30, "invoice": 60,
                                                                                  "audit": 60, "webhook": 60}
    # processes x threads of each worker's values: the messages one pod works on at once
    assert {q: p.replica_concurrency for q, p in policies.items()} == {"email": 4, "invoice": 2, "audit": 4,
                                                                         "webhook": 16}


def test_values_reach_the_spec_and_a_null_max_age_scales_on_the_backlog_alone(helm, tmp_path):
    rendered = scalers(helm, tmp_path, {"workers": {
        "email": {"processes": 2, "threads": 8, "autoscaling": {
            "maxAge": 20, "podStartSeconds": 12.5, "minThroughputPerReplica": 3, "throughputHalfLifeSeconds": 30}},
        "audit": {"autoscaling": {"maxAge": None}},
    }})
    email = parse_spec(rendered["email"]["spec"]).policy
    assert (email.max_age, email.pod_start_seconds, email.min_throughput_per_replica,
            email.throughput_half_life_seconds, email.replica_concurrency) == (20, 12.5, 3, 30, 16)
    assert "maxAge" not in rendered["audit"]["spec"]
    assert parse_spec(rendered["audit"]["spec"]).policy.max_age is None


@pytest.mark.parametrize(("key", "value", "words"), [
    ("workers.email.autoscaling.maxAge", "0", "exclusiveMinimum"),
    ("workers.email.autoscaling.maxAge", "-5", "exclusiveMinimum"),
    ("workers.invoice.autoscaling.podStartSeconds", "-1", "minimum"),
    ("workers.invoice.autoscaling.minThroughputPerReplica", "0", "exclusiveMinimum"),
    ("workers.audit.autoscaling.throughputHalfLifeSeconds", "0", "exclusiveMinimum"),
])
def test_the_values_schema_refuses_a_bad_promise(helm, key, value, words):
    proc = run_helm(helm, "template", "booking", str(CHART), *helm_args(set_values={key: value}))
    assert proc.returncode != 0
    assert key.rsplit(".", 1)[-1] in proc.stderr and words in proc.stderr


def test_the_values_schema_refuses_a_max_age_that_is_not_a_number(helm):
    proc = run_helm(helm, "template", "booking", str(CHART),
                    *helm_args(set_strings={"workers.email.autoscaling.maxAge": "30s"}))
    assert proc.returncode != 0 and "maxAge" in proc.stderr


def test_a_max_age_within_one_poll_is_refused_naming_the_worker(helm):
    proc = run_helm(helm, "template", "booking", str(CHART),
                    *helm_args([CHART / "ci" / "default-values.yaml"],
                               set_values={"workers.invoice.autoscaling.maxAge": "5",
                                       "workers.invoice.autoscaling.pollingInterval": "5"}))
    assert proc.returncode != 0
    assert "workers.invoice.autoscaling: maxAge (5) must exceed pollingInterval (5)" in proc.stderr
