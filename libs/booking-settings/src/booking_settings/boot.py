"""Read a process's settings at start, or stop it at once: exit status 2 and one line naming the variable.

Why exit 2 and one line: a supervisor (Kubernetes, `bookingctl up`, systemd)
shows the last line of a crashed process, and 2 is the status of a usage
error, as argparse and Dramatiq (RET_IMPORT) use it.  A traceback would bury
the variable's name under frames that say nothing about the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from booking_settings.fields import SettingsError

T = TypeVar("T")

#: The exit status of a process refused by its settings.
EXIT_STATUS = 2


def boot(load: Callable[[], T], program: str) -> T:
    """`load()`, or exit the process with status 2 after one line on stderr: "`program`: VARIABLE must ..."."""
    try:
        return load()
    except SettingsError as e:
        print(f"{program}: bad setting: {e}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None
