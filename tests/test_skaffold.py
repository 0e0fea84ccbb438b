"""skaffold.yaml: valid against skaffold's published v4beta13 schema, and it builds every image the chart uses.

The schema is vendored in tests/schemas/ (Apache-2.0; provenance in its README).
Skaffold itself is not run: the tests resolve its `setValueTemplates` the way it
does (`{{.IMAGE_REPO_<artifact>}}` with `-`, `.`, `/`, `:` spelled `_`) and render
the chart with the result.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml
from dockerfile_stages import service_targets

from helm_helpers import CHART, ROOT, containers, helm_args, template

SCHEMA = ROOT / "tests" / "schemas" / "skaffold-v4beta13.json"
THIRD_PARTY = ("postgresql", "redis", "smtpSink")  # upstream images, pulled, never built


@pytest.fixture(scope="module")
def skaffold() -> dict:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def sanitize(artifact: str) -> str:
    """Skaffold's template key for an artifact name."""
    return re.sub(r"[/\-.:]", "_", artifact)


def resolve(template_text: str, env: dict[str, str]) -> str:
    """A setValueTemplates value with its `{{.NAME}}` fields filled; unknown names fail."""
    def field(m: re.Match) -> str:
        if m[1] not in env:
            raise KeyError(f"skaffold defines no {m[1]}")
        return env[m[1]]
    return re.sub(r"\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}", field, template_text)


def skaffold_env(config: dict) -> dict[str, str]:
    """The IMAGE_* fields skaffold offers for each artifact, with made-up build results."""
    env = {}
    for artifact in config["build"]["artifacts"]:
        key = sanitize(artifact["image"])
        env[f"IMAGE_REPO_{key}"] = f"registry.test/built/{artifact['image']}"
        env[f"IMAGE_TAG_{key}"] = "abc1234"
        env[f"IMAGE_DIGEST_{key}"] = "sha256:" + "0" * 64
    return env


def apply_patches(config: dict, profile: str) -> dict:
    """The config with one profile's JSON patches (add/replace) applied."""
    out = copy.deepcopy(config)
    prof = next(p for p in config["profiles"] if p["name"] == profile)
    for patch in prof.get("patches", []):
        *parents, last = [p for p in patch["path"].split("/") if p]
        node = out
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        assert patch["op"] in ("add", "replace"), patch
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), patch["value"])
        else:
            node[last] = patch["value"]
    return out


def test_skaffold_yaml_validates_against_the_published_schema(skaffold):
    assert SCHEMA.exists(), f"skaffold's schema is expected at {SCHEMA} (vendored, see tests/schemas/README.md)"
    schema = json.loads(SCHEMA.read_text())
    assert skaffold["apiVersion"] == "skaffold/v4beta13" and skaffold["kind"] == "Config"
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(skaffold))
    assert error is None, f"{'.'.join(map(str, error.absolute_path))}: {error.message[:500]}"
    for profile in skaffold["profiles"]:
        patched = apply_patches(skaffold, profile["name"])
        del patched["profiles"]
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(patched))
        assert error is None, f"profile {profile['name']}: {error.message[:500]}"


def test_the_schema_check_would_catch_a_typo(skaffold):
    schema = json.loads(SCHEMA.read_text())
    broken = copy.deepcopy(skaffold)
    broken["deploy"]["helm"]["releases"][0]["setValueTemplate"] = {}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_one_artifact_per_service_built_from_the_repo_root_by_the_one_dockerfile(skaffold):
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    targets = service_targets()
    assert set(artifacts) == set(targets) == {"booking-api", "outbox-relay", "email-worker", "invoice-worker",
                                              "audit-worker", "webhook-worker", "queue-autoscaler", "booking-events"}
    for name, a in artifacts.items():
        assert a.get("context", ".") == "."
        assert a["docker"] == {"dockerfile": "Dockerfile", "target": name, "buildArgs": {"SERVICE": name}}
        assert (ROOT / "services" / name / "pyproject.toml").is_file(), name


def test_the_chart_runs_exactly_the_images_skaffold_builds(skaffold, helm):
    env = skaffold_env(skaffold)
    release = skaffold["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    strings = {k: resolve(v, env) for k, v in release["setValueTemplates"].items()}
    strings.update({k: str(v) for k, v in release.get("setValues", {}).items()})
    # The dev variant runs every service (and the bundled servers, which are not built).
    docs = template(helm, *helm_args([CHART / "ci" / "dev-values.yaml"], set_strings=strings))
    built = {f"{env[f'IMAGE_REPO_{sanitize(a)}']}:abc1234@sha256:{'0' * 64}"
             for a in (x["image"] for x in skaffold["build"]["artifacts"])}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pulled = {f"{values[k]['image']['repository']}:{values[k]['image']['tag']}" for k in THIRD_PARTY}
    used = {c["image"] for _, c in containers(docs)}
    assert used - pulled == built, f"not built by skaffold: {used - pulled - built}; unused: {built - used}"


def test_default_values_file_exists_and_dev_profile_uses_the_bundled_servers(skaffold):
    release = skaffold["deploy"]["helm"]["releases"][0]
    # `skaffold run` takes BOOKING_VALUES, or else the external-URL example.
    m = re.fullmatch(r'\{\{ default "([^"]+)" \.BOOKING_VALUES \}\}', release["valuesFiles"][0])
    assert m and (ROOT / m[1]).exists(), release["valuesFiles"]
    dev = apply_patches(skaffold, "dev")["deploy"]["helm"]["releases"][0]
    assert dev["valuesFiles"] == ["charts/booking-platform/ci/dev-values.yaml"]
    values = yaml.safe_load((ROOT / dev["valuesFiles"][0]).read_text())
    assert values["postgresql"]["enabled"] and values["redis"]["enabled"] and values["smtpSink"]["enabled"]
