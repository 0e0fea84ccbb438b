"""The README's quick start, run as written, so it cannot rot.

Every shell command in the README's "Quick start" section is taken from its
```sh blocks and run with bash, in order, against a real `make up` (the README's
own command, given a free port and a temp data dir through `ARGS`, the way the
README says to pass options). Only these substitutions are made, each one a thing
the README tells the reader to adapt: the API's default URL becomes the test's
port, `.data/` becomes the temp data dir, and `<id>` becomes the id from the
POST's `Location`. `make test` is not run: it is this suite.

Then the commands' effects are checked: the POST answers 201 with a Location; the
README's GET shows the three tasks reach `done`; the invoice command saves a real
PDF of this booking; the mail dir holds its email; Ctrl-C stops `make up`.
"""

from __future__ import annotations

import email
import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pypdf import PdfReader

from booking_embedded import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEFAULT_API = "http://127.0.0.1:8000"
NOT_RUN = {"make test": "it runs this very suite"}


def quickstart_commands(text: str) -> list[str]:
    """The shell commands of the "Quick start" section, one per item, continuations joined."""
    start = text.index("## Quick start")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.rstrip().endswith("\\"):
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(pending.strip())
            pending = ""
        assert not pending, f"unterminated command in the README's quick start: {pending!r}"
    return commands


def test_the_quick_start_section_is_parsed_into_its_commands():
    """The parser sees every command, joins continued lines and quoted newlines, drops comments."""
    commands = quickstart_commands(README.read_text())
    assert commands[:2] == ["make up     # sets everything up and runs the whole platform locally (Ctrl-C stops it)",
                            "make test   # sets everything up and runs every test"]
    post = next(c for c in commands if "-X POST" in c)
    assert post.count("\n") >= 3 and post.rstrip().endswith("}'"), post


class Session:
    """Runs README commands with bash like a reader's terminal: variables carry over."""

    def __init__(self, cwd: Path, substitutions: dict[str, str], env: dict[str, str]):
        self.cwd = cwd
        self.substitutions = substitutions
        self.env = env
        self.variables: dict[str, str] = {}

    def adapt(self, command: str) -> str:
        for old, new in self.substitutions.items():
            command = command.replace(old, new)
        assert "<id>" not in command, f"no booking id to put in yet: {command}"
        return command

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run one command; an assignment `NAME=...` keeps NAME for the next commands."""
        command = self.adapt(command)
        assignment = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", command)
        script = f'{command}\nprintf "%s" "${assignment[1]}"' if assignment else command
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env={**self.env, **self.variables},
                              capture_output=True, text=True, timeout=timeout)
        if assignment and done.returncode == 0:
            self.variables[assignment[1]] = done.stdout
        return done


def make_up_env() -> dict[str, str]:
    """The caller's environment without external servers: `make up` starts embedded ones."""
    drop = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "BOOKING_DATA_DIR")
    return {k: v for k, v in os.environ.items() if k not in drop}


def wait_for_output(proc: subprocess.Popen, log: Path, needle: str, timeout: float) -> str:
    """Wait until `needle` is in the log of `proc`; fail with the log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"`make up` exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"`make up` did not print {needle!r} in {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> int | None:
    """Ctrl-C, as in a terminal: SIGINT to the foreground process group; its exit status."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return None


def test_every_quick_start_command_runs_as_written(tmp_path, server_tmp):
    commands = quickstart_commands(README.read_text())
    port = free_port()
    data_dir = server_tmp / "data"
    workdir = tmp_path / "terminal"
    workdir.mkdir()
    api = f"http://127.0.0.1:{port}"
    session = Session(workdir, {DEFAULT_API: api, ".data/": f"{data_dir}/"}, make_up_env())
    seen: list[str] = []
    proc = status = None
    log = tmp_path / "make-up.log"
    try:
        for command in commands:
            head = command.split("#", 1)[0].strip()
            if head in NOT_RUN:
                seen.append("skipped " + head)
                continue
            if head.startswith("make up"):
                assert proc is None, "the quick start starts `make up` twice"
                args = f"ARGS={shlex.quote(f'--port {port} --data-dir {data_dir}')}"
                with log.open("w") as out:
                    proc = subprocess.Popen(["bash", "-c", f"{head} {args}"], cwd=ROOT, env=make_up_env(),
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                printed = wait_for_output(proc, log, "Booking platform is up.", timeout=240)
                token = (data_dir / "admin-token").read_text().strip()
                assert (data_dir / "admin-token").stat().st_mode & 0o777 == 0o600
                assert f"API:          {api}" in printed and token in printed, printed[-2000:]
                assert (ROOT / ".venv" / "bin" / "bookingctl").exists()
                seen.append("make up")
                continue
            assert proc is not None, f"{command!r} comes before `make up` in the quick start"
            if "-X POST" in command:
                seen.append("POST")
                done = session.run(command)
                assert done.returncode == 0, done.stderr
                head_lines, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
                assert re.match(r"HTTP/1\.1 201 ", head_lines), done.stdout
                location = re.search(r"^Location: (\S+)$", head_lines, re.M | re.I)[1]
                booking = json.loads(body)
                assert location == f"/api/v1/bookings/{booking['id']}" and booking["item"] == "Sea-view room"
                session.substitutions["<id>"] = booking["id"]
                continue
            if "/invoice" in command:
                seen.append("invoice")
                done = session.run(command)
                assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
                pdf = workdir / "invoice.pdf"
                text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
                assert "Sea-view room" in text and "Ada Lovelace" in text, text
                continue
            if re.match(r"curl -s \$BOOKING\s", command):
                seen.append("GET")
                deadline = time.monotonic() + 120
                while True:
                    done = session.run(command)
                    assert done.returncode == 0, done.stderr
                    states = {name: t["state"] for name, t in json.loads(done.stdout)["tasks"].items()}
                    if set(states.values()) == {"done"}:
                        break
                    assert time.monotonic() < deadline, f"tasks not done in 120 s: {states}"
                    time.sleep(1)
                assert sorted(states) == ["audit", "email", "invoice"]
                continue
            if command.startswith("ls ") and "mail" in command:
                seen.append("mail")
                done = session.run(command)
                assert done.returncode == 0, done.stderr
                names = done.stdout.split()
                assert len(names) == 1 and names[0].endswith(".eml"), names
                message = email.message_from_bytes((data_dir / "mail" / names[0]).read_bytes())
                assert "ada@example.com" in message["To"]
                continue
            # Any other command (TOKEN=..., BOOKING=...) must simply work.
            done = session.run(command)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            seen.append(command.split("=", 1)[0] if "=" in command.split()[0] else command.split()[0])
        # Whatever else the quick start gains, these steps stay in it, in this order.
        checked = [step for step in seen if step in ("make up", "POST", "GET", "invoice", "mail")]
        assert checked == ["make up", "POST", "GET", "invoice", "mail"], seen
    finally:
        if proc is not None:
            status = stop(proc)
    assert status is not None, f"`make up` did not stop on Ctrl-C within 120 s:\n{log.read_text()[-3000:]}"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{api}/healthz", timeout=2)
    assert "bookingctl: stopped" in log.read_text(), log.read_text()[-3000:]
