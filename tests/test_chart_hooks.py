"""The chart's hooks: deadlines Helm's --timeout can wait for, and a `helm test` that writes nothing.

Helm waits on each hook for its `--timeout` (5 minutes by default) and marks the
release failed when that passes first, while the Job runs on; the next upgrade then
deletes it (`before-hook-creation`). So every hook's deadline stays under it. The
`helm test` pod runs against production releases: its script is reviewed here as
the API server and Postgres would see it (every SQL statement it can send, every
HTTP call it makes, the session it runs in); tests/test_chart.py runs it for real
and compares every table before and after.
"""

from __future__ import annotations

import ast
import re

import pytest

from helm_helpers import CHART, CI_VALUES, ROOT, by_kind, component_name, template

HELM_DEFAULT_TIMEOUT = 300


def hook_deadlines(docs: list[dict]) -> dict[str, int]:
    """activeDeadlineSeconds of every hook Job and test Pod (a hook without one could outlive any timeout)."""
    out = {}
    for d in docs:
        if "helm.sh/hook" not in d["metadata"].get("annotations", {}) or d["kind"] not in ("Job", "Pod"):
            continue
        out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"].get("activeDeadlineSeconds", 10**9)
    return out


@pytest.mark.parametrize("values_file", CI_VALUES, ids=[f.name for f in CI_VALUES])
def test_every_hook_ends_within_helms_default_timeout(helm, values_file):
    deadlines = hook_deadlines(template(helm, "-f", str(values_file)))
    assert deadlines, "no hooks rendered"
    late = {k: v for k, v in deadlines.items() if v >= HELM_DEFAULT_TIMEOUT}
    assert not late, f"these hooks may outlive helm's default --timeout ({HELM_DEFAULT_TIMEOUT}s): {late}"


def test_the_readmes_helm_commands_give_hooks_the_time_their_deadlines_allow(helm):
    """A `--timeout` in the README's commands must not be shorter than the hooks it waits for."""
    deadline = max(hook_deadlines(template(helm, "-f", str(CHART / "ci" / "default-values.yaml"))).values())
    units = {"s": 1, "m": 60, "h": 3600}
    for doc in (ROOT / "README.md", CHART / "README.md"):
        for line in doc.read_text().splitlines():
            if not re.search(r"\bhelm (install|upgrade|uninstall|test)\b", line):
                continue
            for value, unit in re.findall(r"--timeout[= ](\d+)([smh])", line):
                assert int(value) * units[unit] > deadline, f"{doc.name}: {line.strip()}"
    # And the rule is written down where the values are.
    text = (CHART / "README.md").read_text()
    assert "activeDeadlineSeconds" in text and "--timeout" in text


def script_of(docs: list[dict]) -> str:
    return by_kind(docs, "ConfigMap")[component_name("test")]["data"]["smoke_test.py"]


READ_ONLY_SQL = re.compile(r"^\s*(SELECT|SHOW|SET default_transaction_read_only = on)\b", re.I)
WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|CREATE|ALTER|DROP|GRANT|COPY|CALL|DO|NEXTVAL|SETVAL|"
                    r"PG_ADVISORY\w*|SET\s+(SESSION|transaction_read_only|default_transaction_read_only\s*=\s*off))\b",
                    re.I)


def test_the_helm_test_pod_writes_nothing(helm):
    docs = template(helm, "-f", str(CHART / "ci" / "default-values.yaml"))
    tree = ast.parse(script_of(docs))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    # Every SQL statement it can send is a literal read (or the read-only switch itself).
    executed = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "execute"]
    assert executed, "the script sends no SQL at all?"
    for call in executed:
        sql = call.args[0]
        assert isinstance(sql, ast.Constant) and isinstance(sql.value, str), (
            f"line {call.lineno}: SQL built at run time cannot be reviewed")
        assert READ_ONLY_SQL.match(sql.value) and not WRITES.search(sql.value.replace("SET default_transaction_"
                                                                                      "read_only = on", "")), (
            f"line {call.lineno}: {sql.value!r} is not a read")
    # The session is read-only from the first statement (before the script's own SET, from the pod's PGOPTIONS).
    [first] = [c for c in executed if c.lineno == min(e.lineno for e in executed)]
    assert first.args[0].value == "SET default_transaction_read_only = on"
    pod = by_kind(docs, "Pod")[component_name("test")]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["PGOPTIONS"] == "-c default_transaction_read_only=on"
    # HTTP: plain GETs of a URL, no request body, no other method, no token to make one.
    for call in calls:
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        assert name not in ("Request", "request", "post", "put", "patch", "delete"), f"line {call.lineno}: {name}"
        if name == "urlopen":
            assert len(call.args) == 1 and [k.arg for k in call.keywords] in ([], ["timeout"]), (
                f"line {call.lineno}: not a plain GET")
    source = script_of(docs)
    assert not re.search(r"\b(POST|PUT|PATCH|DELETE)\b", source.split('"""', 2)[-1])
    assert "create_token" not in source and "ensure_tenant" not in source
    # Nothing it could send mail or publish work with.
    assert {"SMTP_URL", "REDIS_URL"}.isdisjoint(env)


def test_the_review_above_would_catch_a_write():
    """The checks of test_the_helm_test_pod_writes_nothing fail on the statements a write needs."""
    for sql in ("INSERT INTO bookings VALUES (1)", "SELECT 1; DELETE FROM outbox", "SET SESSION CHARACTERISTICS AS "
                "TRANSACTION READ WRITE", "SELECT nextval('outbox_id_seq')", "SET default_transaction_read_only = off"):
        assert not READ_ONLY_SQL.match(sql) or WRITES.search(sql.replace("SET default_transaction_read_only = on",
                                                                          "")), sql
