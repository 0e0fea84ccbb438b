"""The embedded Redis starts whatever its password looks like.

Its password is a URL-safe token, which starts with `--` once in 4,096: redis-server
read such an argument as the next option's name, refused to start ("FATAL CONFIG FILE
ERROR ... 'requirepass' wrong number of arguments"), and did so again at every start
on that data dir, since the password is kept there.
"""

from __future__ import annotations

import pytest
import redis

from booking_embedded import free_port
from booking_embedded.servers import EmbeddedRedis


@pytest.mark.parametrize("password", ["--ygf5vIhIoq6FUj05UzofUgaPFkVa7U", "-x_y", "plain_Token-1"])
def test_redis_starts_with_its_password_however_it_begins(tmp_path, password):
    secrets = tmp_path / "data" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "redis-password").write_text(password)
    server = EmbeddedRedis(tmp_path / "data", free_port(), tmp_path / "logs")
    server.start()
    try:
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="not-" + password).ping()
        assert oct((secrets / "redis.conf").stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()
