"""The QueueScaler CRD: valid for Kubernetes, consistent with the decision core, examples valid."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from booking_scaling.policy import Policy
from booking_scaling.pressure import LatencyBudget
from helm_helpers import crd_json_schema, with_defaults
from queue_autoscaler.spec import GROUP, PLURAL, VERSION, parse_spec

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "charts/booking-platform/crds/queuescalers.yaml").read_text())
EXAMPLES = list(yaml.safe_load_all((ROOT / "services/queue-autoscaler/examples/queuescalers.yaml").read_text()))
VERSION_DEF = next(v for v in CRD["spec"]["versions"] if v["name"] == VERSION)
SCHEMA = VERSION_DEF["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]


VALIDATOR = jsonschema.Draft4Validator(crd_json_schema(SCHEMA))


def test_crd_is_a_valid_kubernetes_object():
    kubernetes_validate.validate(CRD, "1.30", strict=True)


def test_names_scope_and_subresources():
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (CRD["spec"]["group"], CRD["spec"]["scope"]) == (GROUP, "Namespaced")
    assert CRD["spec"]["names"]["kind"] == "QueueScaler"
    assert CRD["spec"]["names"]["shortNames"] == ["qs"]
    assert VERSION_DEF["subresources"] == {"status": {}}


def test_printer_columns_point_at_fields_of_the_schema():
    for column in VERSION_DEF["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split(".")
        if path[0] == "metadata":
            continue
        node = SCHEMA
        for part in path:
            part = part.split("[")[0]
            node = node["properties"][part] if node.get("type") == "object" else node["items"]
        assert node, column


def test_schema_defaults_are_the_decision_core_defaults():
    spec = with_defaults(SPEC, {"scaleTargetRef": {"name": "w"}, "queues": ["q"],
                                "redis": {"urlSecretRef": {"name": "s", "key": "k"}}})
    assert parse_spec(spec).policy == Policy()
    assert parse_spec(spec).budget == LatencyBudget()  # no acceptPath: no signal, nothing held
    assert spec["redis"]["namespace"] == "dramatiq"
    with_url = with_defaults(SPEC, {**spec, "acceptPath": {"metricsUrl": "http://booking-api:8000/metrics"}})
    assert parse_spec(with_url).budget == LatencyBudget(metrics_url="http://booking-api:8000/metrics")


def test_every_spec_field_is_read_by_the_operator():
    policy_fields = set(Policy().to_spec())
    assert set(SPEC["properties"]) == policy_fields | {"scaleTargetRef", "queues", "redis", "acceptPath"}
    assert set(SPEC["properties"]["acceptPath"]["properties"]) == {"metricsUrl", "route", "p99BudgetSeconds",
                                                                   "minRequests"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["metadata"]["name"] for e in EXAMPLES])
def test_examples_are_valid_and_understood(example):
    obj = with_defaults(SCHEMA, copy.deepcopy(example))
    VALIDATOR.validate(obj)
    parsed = parse_spec(obj["spec"])
    assert parsed.target == example["spec"]["scaleTargetRef"]["name"]


@pytest.mark.parametrize(("change", "field"), [
    ({"minReplicaCount": -1}, "minReplicaCount"),
    ({"maxReplicaCount": 0}, "maxReplicaCount"),
    ({"queues": []}, "queues"),
    ({"queues": ["bad queue"]}, "queues"),
    ({"pollingInterval": 0}, "pollingInterval"),
    ({"tolerance": 1}, "tolerance"),
    ({"fallbackReplicas": 0}, "fallbackReplicas"),
    ({"targetBacklogPerReplica": "10"}, "targetBacklogPerReplica"),
    ({"scaleTargetRef": {}}, "scaleTargetRef"),
    ({"protectAcceptPath": "yes"}, "protectAcceptPath"),
    ({"acceptPath": {"metricsUrl": "ftp://api/metrics"}}, "acceptPath/metricsUrl"),
    ({"acceptPath": {"p99BudgetSeconds": 0}}, "acceptPath/p99BudgetSeconds"),
    ({"acceptPath": {"minRequests": 0}}, "acceptPath/minRequests"),
])
def test_invalid_specs_are_rejected_by_the_schema(change, field):
    obj = with_defaults(SCHEMA, copy.deepcopy(EXAMPLES[0]))
    obj["spec"].update(change)
    errors = list(VALIDATOR.iter_errors(obj))
    assert errors and any(field in "/".join(map(str, e.absolute_path)) for e in errors), errors


def test_min_above_max_is_rejected_by_a_cel_rule():
    rules = [r["rule"] for r in SPEC["x-kubernetes-validations"]]
    assert "self.minReplicaCount <= self.maxReplicaCount" in rules
