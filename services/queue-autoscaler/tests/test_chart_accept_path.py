"""The chart's `operator.acceptPath` reaches every QueueScaler as the CRD and the operator read it.

Rendered by the real helm; each QueueScaler is validated against the CRD's own schema
(defaults applied as the API server does) and parsed by the operator's parse_spec.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from booking_scaling.pressure import LatencyBudget
from helm_helpers import CHART, by_kind, crd_json_schema, helm_args, run_helm, template, with_defaults
from queue_autoscaler.spec import parse_spec

CRD = yaml.safe_load((CHART / "crds" / "queuescalers.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
FEDERATE = "http://prometheus-operated.monitoring:9090/federate?match[]=booking_http_request_duration_seconds_bucket"


def scalers(helm, *values_files) -> dict[str, dict]:
    return by_kind(template(helm, *helm_args([CHART / "ci" / "default-values.yaml", *values_files])), "QueueScaler")


def test_a_metrics_url_gives_every_queuescaler_the_latency_budget(helm, tmp_path):
    values = tmp_path / "accept-path.yaml"  # a file: --set would turn 0.25 into a string
    values.write_text(yaml.safe_dump({"operator": {"acceptPath": {"metricsUrl": FEDERATE, "p99BudgetSeconds": 0.25,
                                                                  "minRequests": 20}}}))
    rendered = scalers(helm, values)
    assert len(rendered) == 4  # one per worker
    validator = jsonschema.Draft4Validator(crd_json_schema(SCHEMA))
    for qs in rendered.values():
        assert qs["spec"]["protectAcceptPath"] is True
        validator.validate(with_defaults(SCHEMA, copy.deepcopy(qs)))
        parsed = parse_spec(qs["spec"])
        assert parsed.budget == LatencyBudget(metrics_url=FEDERATE, p99_budget_seconds=0.25, min_requests=20)
        assert parsed.policy.protect_accept_path


def test_without_a_metrics_url_no_queuescaler_has_a_latency_signal(helm):
    for qs in scalers(helm).values():
        assert "acceptPath" not in qs["spec"]
        assert parse_spec(qs["spec"]).budget.metrics_url is None


@pytest.mark.parametrize(("key", "value", "words"), [
    ("operator.acceptPath.metricsUrl", "ftp://prometheus/federate", "does not match pattern"),
    ("operator.acceptPath.p99BudgetSeconds", "0", "exclusiveMinimum"),
    ("operator.acceptPath.minRequests", "0", "minimum"),
])
def test_the_values_schema_refuses_a_bad_budget(helm, key, value, words):
    proc = run_helm(helm, "template", "booking", str(CHART), *helm_args(set_values={key: value}))
    assert proc.returncode != 0 and "acceptPath" in proc.stderr and words in proc.stderr, proc.stderr
