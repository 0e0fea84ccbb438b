"""tools/ensure-system-deps.sh: `make test` and `make up` stop at once, clearly, when the machine lacks something.

The script runs for real, as an unprivileged user where it must not install, with a
PATH that holds only the basic tools (so buildah, promtool, chromium and make are
"missing"), and with a stand-in `uname` that reports another system.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "ensure-system-deps.sh"
BASIC_TOOLS = ("bash", "env", "id", "uname", "awk", "cat", "ldconfig", "apt-get")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temp dir `nobody` can reach (pytest's own lives under a root-only dir)."""
    with tempfile.TemporaryDirectory(prefix="ensure-deps-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


def bare_path(tmp_path: Path, **replaced: str) -> Path:
    """A PATH dir with only the basic tools (ldconfig from /sbin); `replaced` maps name → script text."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASIC_TOOLS:
        found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if found:
            (bin_dir / tool).symlink_to(found)
    for name, text in replaced.items():
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    bin_dir.chmod(0o755)
    return bin_dir


#: A Python 3.11+ that `nobody` may run (root's pyenv is out of its reach).
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def run_unprivileged(bin_dir: Path, *args: str, python: str = SYSTEM_PYTHON) -> subprocess.CompletedProcess:
    """The script as `nobody` when we are root (as ourselves otherwise), with only `bin_dir` on PATH."""
    drop = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    env = {"PATH": str(bin_dir), "PYTHON": python}
    return subprocess.run([*drop, str(bin_dir / "bash"), str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd="/")


def test_it_passes_on_this_machine():
    """Everything the suite needs is here (this very suite could not run otherwise)."""
    done = subprocess.run([str(SCRIPT), "test"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_root_it_stops_with_the_one_command_to_run(tmp_path):
    done = run_unprivileged(bare_path(tmp_path), "test")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    prefix = "sudo apt-get update && sudo apt-get install -y --no-install-recommends "
    assert lines[0].startswith(prefix), lines[0]
    packages = lines[0][len(prefix):].split()
    assert {"make", "buildah", "prometheus", "chromium"} <= set(packages), packages
    assert "Missing system packages" in done.stderr


def test_make_up_asks_only_for_what_make_up_needs(tmp_path):
    done = run_unprivileged(bare_path(tmp_path), "up")
    assert done.returncode == 1
    packages = set(done.stdout.split()) - {"sudo", "apt-get", "update", "&&", "install", "-y",
                                           "--no-install-recommends"}
    assert "make" in packages and not packages & {"buildah", "prometheus", "chromium"}, packages


def test_it_refuses_other_systems_at_once(tmp_path):
    done = run_unprivileged(bare_path(tmp_path, uname="#!/bin/sh\necho Darwin\n"), "up")
    assert done.returncode == 1
    assert "Linux only" in done.stderr and "Darwin" in done.stderr


@pytest.mark.parametrize("python", ["/no/such/python3", "PYTHON2"])
def test_it_names_the_python_it_needs(tmp_path, python):
    done = run_unprivileged(bare_path(tmp_path, PYTHON2="#!/bin/sh\nexit 1\n"), "up", python=python)
    assert done.returncode == 1
    assert "Python 3.11 or newer" in done.stderr and python in done.stderr
