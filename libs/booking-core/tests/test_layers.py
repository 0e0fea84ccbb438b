"""booking_core's subpackages import only downwards, as its README's dependency direction says.

Every `import`/`from … import` of every module is read (lazy ones inside functions
too): a module may use its own subpackage and those below it, never one above.  A
new subpackage must be placed in LAYERS (and in the README) before it can import
anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import booking_core

PACKAGE = Path(booking_core.__file__).parent
#: Lowest first; the README's diagram, read from the bottom up.
LAYERS = ["web", "telemetry", "messaging", "config", "db", "model", "webhooks", "audit", "tasks", "queues", "worker",
          "ops"]


def layer_of(dotted: str) -> str | None:
    """The subpackage (or top-level module) of `booking_core.<x>...`; None outside booking_core."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "booking_core" and len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every booking_core module `path` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "booking_core":  # `from booking_core import db`: each name is a module
                found += [(node.lineno, f"booking_core.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("booking_core.")]


def modules() -> list[tuple[str, Path]]:
    """(layer, path) of every module of the library but its top-level __init__."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts == ("__init__.py",):
            continue
        found.append((rel.parts[0].removesuffix(".py"), path))
    return found


def test_every_subpackage_has_a_place_in_the_layers():
    assert {layer for layer, _ in modules()} == set(LAYERS)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for layer, path in modules():
        for line, name in imports_of(path):
            target = layer_of(name)
            if target != layer and LAYERS.index(target) > LAYERS.index(layer):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {name} ({target})")
    assert upward == [], "imports against the dependency direction (libs/booking-core/README.md):\n" + "\n".join(
        upward)
