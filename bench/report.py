"""How every benchmark ends: its result as JSON, written to bench/results/ and printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def command() -> str:
    """The command line that produced a result, recorded with it."""
    return " ".join(["python", *sys.argv])


def write(result: dict, path: Path) -> None:
    """Write `result` to `path` (creating bench/results/) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
