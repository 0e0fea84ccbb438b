"""The servers' data dirs survive what other pytest sessions do to pytest's basetemp."""

from __future__ import annotations

import os
import subprocess
import sys

from booking_embedded import EmbeddedPostgres, free_port
from server_dirs import session_root


def test_postgres_starts_while_another_session_closes_pytests_basetemp(server_tmp, tmp_path_factory, monkeypatch):
    """A pytest run that starts meanwhile makes pytest's dirs private again (0700), as root Postgres runs
    as a user of its own: its initdb and start, here just after they were given their permissions,
    must not need those dirs."""
    basetemp = tmp_path_factory.getbasetemp()
    mode = basetemp.stat().st_mode & 0o777
    given = EmbeddedPostgres._as_user

    def then_closed(self):
        user = given(self)
        os.chmod(basetemp, 0o700)  # what the other session's start does at that moment
        return user

    monkeypatch.setattr(EmbeddedPostgres, "_as_user", then_closed)
    server = EmbeddedPostgres(server_tmp, free_port(), server_tmp / "logs")
    try:
        server.start()  # initdb and the first start
        server.stop()
        server.start()  # a restart on the same data
    finally:
        os.chmod(basetemp, mode)
        server.stop()


def test_ended_sessions_roots_are_pruned_but_the_newest_and_the_running(tmp_path):
    base = tmp_path / "servers"
    held = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path[:0] = sys.argv[1:2]; "
                             "from server_dirs import session_root; from pathlib import Path; "
                             "root, _ = session_root(Path(sys.argv[2])); print(root, flush=True); time.sleep(60)",
                             os.path.dirname(__file__), str(base)], stdout=subprocess.PIPE, text=True)
    try:
        running = held.stdout.readline().strip()
        ended = []
        for i in range(5):
            root, fd = session_root(base)
            os.close(fd)
            os.utime(root, (1000 + i, 1000 + i))  # oldest first
            ended.append(str(root))
        newest, fd = session_root(base)  # prunes: keeps three ended ones, the running one and itself
        os.close(fd)
        left = sorted(str(p) for p in base.iterdir())
        assert left == sorted([running, *ended[-3:], str(newest)])
    finally:
        held.kill()
        held.wait()
