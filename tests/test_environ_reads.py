"""Only the settings modules and the entry points read the environment (issue 19: one settings object per process).

Every module of every library and service (`libs/*/src`, `services/*/src`) is
parsed: a use of `os.environ`, `os.environb`, `os.getenv` (under any alias of
`os`, or imported from it) or Flask's `from_prefixed_env` / `from_envvar`
anywhere else fails, naming the file and line.  A variable is then added to a
settings class (booking_settings.fields.env), where it is typed, bounded and
read once at boot, instead of being read where it is used.  Scripts under
bench/ and tools/ are entry points of their own and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Modules that define settings and read them from the process environment, and why.
SETTINGS_MODULES = {
    "libs/booking-core/src/booking_core/config.py": "Settings.from_env() with no mapping: the process environment",
    "services/booking-api/src/booking_api/settings.py": "from_process(): gunicorn builds the worker and logger "
                                                         "classes itself, so they ask for the master's reading",
    "libs/booking-core/src/booking_core/telemetry/sdk.py": "the OTEL_* variables are OpenTelemetry's own, read by its "
                                                           "SDK too; this only decides whether to install it",
}
#: Entry points: each reads its environment once and hands it to its settings class.
ENTRY_POINTS = {
    "services/booking-api/src/booking_api/gunicorn_conf.py": "gunicorn's config: the API's start (and it hands "
                                                              "PROMETHEUS_MULTIPROC_DIR to prometheus_client)",
    "services/booking-events/src/booking_events/server.py": "`booking-events`",
    "services/outbox-relay/src/outbox_relay/main.py": "`booking-relay`",
    "services/queue-autoscaler/src/queue_autoscaler/operator.py": "the module `kopf run -m` imports",
    "services/bookingctl/src/bookingctl/cli.py": "`bookingctl` (and the environment `up` hands its processes)",
}
READERS = {"environ", "environb", "getenv", "getenvb"}
FLASK_READERS = {"from_prefixed_env", "from_envvar"}


def environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every read of the process environment in `tree`."""
    os_names = {"os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname for a in node.names if a.name == "os" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in READERS]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in READERS and isinstance(node.value, ast.Name) and node.value.id in os_names:
                found.append((node.lineno, f"{node.value.id}.{node.attr}"))
            elif node.attr in FLASK_READERS:
                found.append((node.lineno, node.attr))
    return sorted(found)


def modules() -> list[Path]:
    return sorted(p for pattern in ("libs/*/src/**/*.py", "services/*/src/**/*.py") for p in ROOT.glob(pattern))


def test_the_scan_sees_every_way_of_reading_the_environment():
    code = ("import os\nimport os as system\nfrom os import getenv\n"
            "a = os.environ['A']\nb = system.getenv('B')\nc = os.environb\napp.config.from_prefixed_env('X')\n"
            "d = settings.environ\n")  # an attribute of something else is not the environment
    assert [line for line, _ in environment_reads(ast.parse(code))] == [3, 4, 5, 6, 7]


def test_only_settings_modules_and_entry_points_read_the_environment():
    allowed = {**SETTINGS_MODULES, **ENTRY_POINTS}
    readers: dict[str, list[tuple[int, str]]] = {}
    for path in modules():
        reads = environment_reads(ast.parse(path.read_text(), str(path)))
        if reads:
            readers[path.relative_to(ROOT).as_posix()] = reads
    assert len(modules()) > 100, "the scan found too few modules: has the layout moved?"
    strays = [f"{path}:{line}: {what}" for path, reads in readers.items() if path not in allowed
              for line, what in reads]
    assert not strays, ("read the environment outside the settings modules and entry points; add the variable "
                        "to a settings class instead:\n" + "\n".join(strays))
    stale = sorted(set(allowed) - set(readers))
    assert not stale, f"listed as reading the environment but no longer do (remove them from the list): {stale}"
