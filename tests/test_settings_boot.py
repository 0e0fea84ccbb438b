"""Every process of the platform, started for real with one bad variable, exits at once: status 2, one line naming it.

Each is started with the command its image and `bookingctl up` use (the specs
in `bookingctl.services`, the operator's `kopf run`), on URLs of closed ports on
127.0.0.1 that nothing ever connects to: a process that checked its settings
only on first use would instead keep running, or fail later with a traceback.
Before issue 19, `BOOKING_API_DB_REQUEST_SLOTS=abc` started an API that served
`/healthz` and failed each request that needed Postgres.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from booking_embedded import free_port
from bookingctl import services

#: Closed ports on the loopback: a process refused at boot never gets as far as using them.
URLS = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "REDIS_URL": "redis://127.0.0.1:9/0",
        "SMTP_URL": "smtp://127.0.0.1:9"}
#: Variables of ours that the test runner's own environment may hold; each case sets what it needs.
OURS = ("BOOKING_", "QUEUE_AUTOSCALER_", "DATABASE_URL", "REDIS_URL", "SMTP_URL", "PROMETHEUS_MULTIPROC_DIR")


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `argv` with the runner's environment minus our variables, plus `env`; wait at most 60 s."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    return subprocess.run(argv, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=60)


def worker_argv(queue: str, run_dir: Path) -> tuple[list[str], dict[str, str]]:
    spec = services.worker(queue, 1, free_port(), run_dir)
    return spec.argv, spec.env


def cases(run_dir: Path) -> dict[str, tuple[str, list[str], dict[str, str], str, str]]:
    """name -> (program in the message, argv, the spec's env, the bad variable, its value)."""
    api = services.api(free_port(), run_dir)
    relay = services.relay(free_port())
    found = {
        "api": ("booking-api", api.argv, api.env, "BOOKING_API_DB_REQUEST_SLOTS", "abc"),
        "api-shared": ("booking-api", api.argv, api.env, "BOOKING_DB_POOL_MAX", "ten"),
        "relay": ("booking-relay", relay.argv, relay.env, "BOOKING_RELAY_SWEEP_MS", "soon"),
        "events": ("booking-events", [services.executable("booking-events")], {},
                   "BOOKING_EVENTS_MAX_STREAMS_PER_LINK", "0"),
        "operator": ("queue-autoscaler", [services.executable("kopf"), "run", "-m", "queue_autoscaler.operator",
                                          "--standalone"], {}, "QUEUE_AUTOSCALER_TICK_SECONDS", "fast"),
        "bookingctl": ("bookingctl", [services.executable("bookingctl"), "dlq", "list"], {},
                       "BOOKING_HEARTBEAT_TIMEOUT_MS", "1m"),
    }
    for queue, var in (("email", "BOOKING_RETRY_EMAIL_MAX_RETRIES"), ("invoice", "BOOKING_PAUSE_POLL_MS"),
                       ("audit", "BOOKING_DB_ACQUIRE_TIMEOUT_MS")):
        argv, env = worker_argv(queue, run_dir)
        found[f"{queue}-worker"] = (f"{queue}-worker", argv, env, var, "x")
    argv, env = worker_argv("webhook", run_dir)
    found["webhook-worker"] = ("webhook-worker", argv, env, "BOOKING_WEBHOOKS_ALLOWED_NETWORKS", "10.0.0.0/33")
    found["webhook-worker-timeout"] = ("webhook-worker", argv, env, "BOOKING_WEBHOOKS_TIMEOUT_SECONDS", "0")
    return found


CASES = ["api", "api-shared", "relay", "email-worker", "invoice-worker", "audit-worker", "webhook-worker",
         "webhook-worker-timeout", "events", "operator", "bookingctl"]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_variable_stops_the_process_at_boot_naming_it(name, tmp_path):
    program, argv, spec_env, variable, value = cases(tmp_path)[name]
    done = run(argv, {**URLS, **spec_env, variable: value}, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = [line for line in done.stderr.splitlines() if variable in line]
    assert lines and set(lines) == {lines[0]}, output  # Dramatiq's processes may each say it: the same line
    assert lines[0].startswith(f"{program}: bad setting: {variable} must ") and repr(value) in lines[0], lines[0]
    assert "Traceback" not in output and "Listening at" not in output, output


def test_the_webhook_worker_without_a_sealing_key_stops_at_boot(tmp_path):
    argv, env = worker_argv("webhook", tmp_path)
    done = run(argv, {**URLS, **env}, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "webhook-worker: bad setting: BOOKING_WEBHOOKS_KEY must be set" in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bad_sealing_key_is_named_but_no_key_is_echoed(tmp_path):
    """A list with one mistyped key may hold good ones: the message says which, never what they are."""
    from cryptography.fernet import Fernet

    good = Fernet.generate_key().decode()
    argv, env = worker_argv("webhook", tmp_path)
    done = run(argv, {**URLS, **env, "BOOKING_WEBHOOKS_KEY": f"{good},not-a-fernet-key"}, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "webhook-worker: bad setting: BOOKING_WEBHOOKS_KEY must be Fernet keys, comma-separated: key 2" in output
    assert good not in output and "not-a-fernet-key" not in output, output


def test_bookingctl_up_checks_every_process_settings_before_it_starts_anything(tmp_path):
    data_dir = tmp_path / "data"
    done = run([services.executable("bookingctl"), "up", "--data-dir", str(data_dir), "--port", str(free_port())],
               {"BOOKING_EVENTS_STREAM_SETUPS": "none"}, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == "bookingctl: bad setting: BOOKING_EVENTS_STREAM_SETUPS must be an integer, got 'none'"
    assert not data_dir.exists(), "no server was started, no data dir made"


def test_the_same_commands_start_with_good_settings(tmp_path):
    """The control: with nothing bad, the relay runs past its settings (it is stopped, not refused)."""
    relay = services.relay(free_port())
    proc = subprocess.Popen(relay.argv, env={**{k: v for k, v in os.environ.items() if not k.startswith(OURS)},
                                             **URLS, **relay.env}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        while line and "metrics on" not in line:
            line = proc.stdout.readline()
        assert "metrics on http://127.0.0.1:" in line
    finally:
        proc.terminate()
        proc.wait(30)
