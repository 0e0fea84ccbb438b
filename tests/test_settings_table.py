"""The README's configuration tables and the settings classes name the same variables (checked, not generated).

Every settings class of every library and service (a dataclass whose fields
name their variable with `booking_settings.fields.env`, found by scanning the
source) is read; every variable one of them reads must be a row of the
README's "Configuration" section, and every row there must be read by one of
them, or be one of the few that another program reads (OpenTelemetry's SDK,
Dramatiq).  Checked rather than generated: the table's prose (what a value
costs, which chart value sets it) is written for people and stays in the README.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from booking_core.messaging.contracts import TASK_QUEUES
from booking_settings.fields import declared, variables

ROOT = Path(__file__).resolve().parents[1]
#: Rows of variables read by other programs than ours, and which.
READ_BY_OTHERS = {
    "OTEL_*": "OpenTelemetry's SDK",
    "dramatiq_worker_timeout": "Dramatiq", "dramatiq_prom_host": "Dramatiq", "dramatiq_prom_port": "Dramatiq",
    "dramatiq_prom_db": "Dramatiq",
}


def settings_classes() -> list[type]:
    """Every class with a field declared by `env()`, in the modules that import booking_settings.fields."""
    found = []
    for path in sorted(ROOT.glob("libs/*/src/**/*.py")) + sorted(ROOT.glob("services/*/src/**/*.py")):
        if "from booking_settings.fields import" not in path.read_text() or "booking_settings" in path.parts:
            continue
        parts = path.relative_to(path.parents[len(path.parts) - path.parts.index("src") - 2]).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        found += [c for c in vars(module).values()
                  if isinstance(c, type) and c.__module__ == module.__name__ and hasattr(c, "__dataclass_fields__")
                  and declared(c)]
    return found


def table_variables(readme: str) -> set[str]:
    """The variables named in the first cell of each row of the README's Configuration section."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        for token in re.findall(r"`([^`]+)`", line.split(" | ", 1)[0]):
            names |= {token.replace("<QUEUE>", q.upper()) for q in TASK_QUEUES} if "<QUEUE>" in token else {token}
    return names


def test_the_scan_finds_every_process_settings():
    names = {c.__name__ for c in settings_classes()}
    assert {"Settings", "MetricsAddress", "ApiSettings", "EventsSettings", "StreamLimits", "OperatorSettings",
            "CtlSettings"} <= names


def test_every_variable_a_settings_class_reads_is_in_the_readme_and_every_row_is_read():
    read = {name: c.__name__ for c in settings_classes() for name in variables(c)}
    listed = table_variables((ROOT / "README.md").read_text())
    missing = sorted(f"{name} ({owner})" for name, owner in read.items() if name not in listed)
    assert not missing, f"read by a settings class but not in README.md's Configuration tables: {missing}"
    unread = sorted(listed - set(read) - set(READ_BY_OTHERS))
    assert not unread, f"in README.md's Configuration tables but read by no settings class: {unread}"
