"""Render the chart README's values table from the `# --` comments in values.yaml.

    python tools/helm_values_table.py            # rewrite the table in the chart README
    python tools/helm_values_table.py --check    # exit 1 if the README's table is stale

A key with a `# --` comment above it is one row (its default shown whole, children
not listed); a key without one must be a non-empty mapping, and its children are
listed instead. So every value ends up documented, or this script fails naming it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "booking-platform"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str


def _type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _lookup(values: dict, path: list[str]):
    for part in path:
        values = values[part]
    return values


def rows(values_text: str) -> list[Row]:
    """Every documented key of values.yaml, in file order; ValueError names an undocumented one."""
    values = yaml.safe_load(values_text)
    out: list[Row] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    doc: list[str] | None = None
    skip_below: int | None = None  # indent of a documented key whose children are not listed
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        m = _KEY.match(line)
        if not m:
            continue  # blank lines, list items, flow continuations
        indent = len(m["indent"])
        if skip_below is not None:
            if indent > skip_below:
                doc = None
                continue
            skip_below = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [m["key"]]
        value = _lookup(values, path)
        if doc is not None:
            out.append(Row(".".join(path), _type(value), json.dumps(value, separators=(", ", ": ")),
                           " ".join(doc)))
            doc = None
            skip_below = indent
        elif isinstance(value, dict) and value:
            stack.append((indent, m["key"]))
        else:
            raise ValueError(f"values.yaml: {'.'.join(path)} has no `# --` comment")
    return out


def table(values_text: str) -> str:
    """The Markdown table of the documented values."""
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for r in rows(values_text):
        default, description = r.default.replace("|", "\\|"), r.description.replace("|", "\\|")
        lines.append(f"| `{r.key}` | {r.type} | `{default}` | {description} |")
    return "\n".join(lines)


def render_readme(readme: str, values_text: str) -> str:
    """The README with the text between the table markers replaced."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    if not rest or END not in rest:
        raise ValueError(f"README lacks the {START} ... {END} markers")
    return f"{head}{START}\n{table(values_text)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the README's table is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    readme_path = args.chart / "README.md"
    readme = readme_path.read_text()
    fresh = render_readme(readme, (args.chart / "values.yaml").read_text())
    if args.check:
        if fresh != readme:
            print(f"{readme_path}: values table is stale; run python tools/helm_values_table.py", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
