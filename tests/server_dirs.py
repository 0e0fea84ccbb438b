"""Where the embedded servers of a test session keep their data: out of reach of other pytest sessions.

As root, the embedded Postgres runs as a user of its own (it refuses to run as
root), and that user must be able to traverse every parent of its data dir.
Under pytest's basetemp it cannot count on that: every pytest session that
starts makes /tmp/pytest-of-<user> mode 0700 again, so a second session on the
machine turns the first one's next initdb or Postgres restart into "Permission
denied".  Each session therefore gets a root of its own under
`<tempdir>/booking-test-servers/`, which no pytest touches, and holds a lock on
it while it runs.  A later session removes the roots whose sessions have ended,
keeping the newest few, as pytest keeps its last basetemps, so logs of a failed
run can still be read.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

BASE = Path(tempfile.gettempdir()) / "booking-test-servers"
#: Ended sessions' roots kept for reading their logs (pytest keeps 3 basetemps too).
KEEP = 3
LOCK = ".session.lock"


def _reachable(path: Path) -> None:
    """Make `path` a dir every user may traverse (the Postgres user must reach below it), but not list."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)  # noqa: S103 - traverse only, which the Postgres user needs


def _ended(root: Path) -> bool:
    """True when no session holds `root`'s lock (its session ended, or it was never locked)."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock taken just now
    return True


def prune(base: Path = BASE, keep: int = KEEP) -> None:
    """Remove the roots of ended sessions but the `keep` newest."""
    ended = [p for p in base.iterdir() if p.is_dir() and _ended(p)] if base.is_dir() else []
    ended.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in ended[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def session_root(base: Path = BASE) -> tuple[Path, int]:
    """A new root for this session, locked until the returned descriptor is closed (or the process ends)."""
    _reachable(base)
    prune(base)
    root = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))
    _reachable(root)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return root, fd


def unique_dir(root: Path, name: str) -> Path:
    """A new dir under `root` named after `name` (a test's name), as pytest's tmp_path is."""
    stem = re.sub(r"[\W]", "_", name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=root))
    _reachable(path)
    return path
