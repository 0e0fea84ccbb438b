"""The chart's version follows SemVer and its CHANGELOG describes it; helm packages what it says."""

from __future__ import annotations

import re

import yaml

from helm_helpers import CHART, install_helm, run_helm

#: semver.org's regular expression (without build metadata, which Helm's OCI tags cannot carry).
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
                    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$")


def versions_in_changelog() -> list[tuple[int, ...]]:
    text = (CHART / "CHANGELOG.md").read_text()
    found = re.findall(r"^## (\S+)$", text, re.M)
    assert found, "CHANGELOG.md has no version headings"
    for v in found:
        assert SEMVER.match(v), f"CHANGELOG.md: {v} is not SemVer"
    return [tuple(int(p) for p in v.split("-")[0].split(".")) for v in found]


def test_the_chart_version_is_semver_and_heads_the_changelog(tmp_path):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert SEMVER.match(chart["version"]) and SEMVER.match(chart["appVersion"])
    changelog = versions_in_changelog()
    assert changelog[0] == tuple(int(p) for p in chart["version"].split(".")), (
        "the newest CHANGELOG.md entry must be Chart.yaml's version")
    assert changelog == sorted(changelog, reverse=True) and len(set(changelog)) == len(changelog)
    assert changelog[0] > (0, 1, 0), "the chart has changed since 0.1.0"
    # A 0.x release that breaks anything says so, with what to do.
    newest = (CHART / "CHANGELOG.md").read_text().split(f"## {chart['version']}\n", 1)[1].split("\n## ", 1)[0]
    assert "### Breaking" in newest
    proc = run_helm(install_helm(), "package", str(CHART), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / f"booking-platform-{chart['version']}.tgz").is_file()
