"""The pure parts of webhooks: signatures (checked by the reference library), sealing, backoff, the SSRF guard."""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from booking_core.config import Settings
from booking_core.webhooks import addresses, payload, schedule, sealing, signing


def test_a_signature_verifies_with_the_reference_library():
    secret = signing.new_secret()
    body = payload.body({"type": "booking.created", "timestamp": "2027-01-01T00:00:00.000000Z",
                         "data": {"booking_id": "b", "sequence": 1, "item": "Zimmer \u00fc"}})
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    # Our signature is the library's own, byte for byte.
    assert headers["webhook-signature"] == Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body)


def test_a_changed_body_or_another_secret_does_not_verify():
    secret, other = signing.new_secret(), signing.new_secret()
    body = b'{"type":"booking.created"}'
    headers = signing.headers([secret], "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_during_a_rotation_both_secrets_verify():
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"type":"booking.completed"}'
    headers = signing.headers([new, old], "msg_2", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


def test_a_secret_that_is_not_whsec_is_refused():
    with pytest.raises(ValueError, match="whsec_"):
        signing.sign("sk_live_x", "msg", 1, b"")
    with pytest.raises(ValueError, match="base64"):
        signing.sign("whsec_***", "msg", 1, b"")


def test_the_body_is_capped():
    with pytest.raises(ValueError, match="cap"):
        payload.body({"data": "x" * (payload.MAX_BODY_BYTES + 1)})


def test_sealed_secrets_open_only_with_a_configured_key():
    key, other = sealing.new_key(), sealing.new_key()
    token = sealing.Sealer([key]).seal("whsec_abc")
    assert "whsec_abc" not in token
    assert sealing.Sealer([other, key]).open(token) == "whsec_abc"  # the key itself rotates
    with pytest.raises(ValueError, match="no longer holds"):
        sealing.Sealer([other]).open(token)
    with pytest.raises(sealing.KeyMissing):
        sealing.Sealer([]).seal("whsec_abc")


def test_settings_name_a_bad_key_or_network(database_url, redis_url):
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    with pytest.raises(ValueError, match="BOOKING_WEBHOOKS_KEY"):
        Settings.from_env({**base, "BOOKING_WEBHOOKS_KEY": "not-a-key"})
    with pytest.raises(ValueError, match="BOOKING_WEBHOOKS_ALLOWED_NETWORKS"):
        Settings.from_env({**base, "BOOKING_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8, nowhere"})
    with pytest.raises(ValueError, match="BOOKING_WEBHOOKS_TIMEOUT_SECONDS"):
        Settings.from_env({**base, "BOOKING_WEBHOOKS_TIMEOUT_SECONDS": "0"})
    s = Settings.from_env({**base, "BOOKING_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"})
    assert s.webhooks_allowed_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    assert (s.webhooks_connect_timeout, s.webhooks_timeout) == (5.0, 15.0)


# -- backoff ---------------------------------------------------------------------------------

def test_the_default_schedule_spans_about_a_day():
    s = schedule.Schedule()
    total = sum(s.base_ms(n) for n in range(1, s.max_attempts))
    assert 20 * 3600_000 <= total <= 30 * 3600_000
    assert s.delay_ms(s.max_attempts) is None  # the last attempt failed: dead


def test_backoff_grows_with_jitter_within_bounds():
    s = schedule.Schedule(first_ms=1000, factor=2, cap_ms=10_000, max_attempts=10, jitter=0.2)
    rng = random.Random(7)
    delays = [s.delay_ms(n, rng=rng) for n in range(1, 6)]
    for n, d in enumerate(delays, 1):
        base = min(10_000, 1000 * 2 ** (n - 1))
        assert 0.8 * base <= d <= 1.2 * base
    assert len({s.delay_ms(1, rng=rng) for _ in range(20)}) > 1  # jittered, not in step


def test_retry_after_is_honoured_up_to_the_cap():
    s = schedule.Schedule(first_ms=1000, cap_ms=60_000, jitter=0)
    assert s.delay_ms(1, retry_after_ms=30_000) == 30_000
    assert s.delay_ms(1, retry_after_ms=500) == 1000  # shorter than ours: ours
    assert s.delay_ms(1, retry_after_ms=3600_000) == 60_000
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert schedule.retry_after_ms("120") == 120_000
    assert schedule.retry_after_ms(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90_000
    assert schedule.retry_after_ms("soon") is None


@pytest.mark.parametrize(("status", "retried"), [
    (None, True), (500, True), (503, True), (429, True), (408, True), (425, True),
    (400, False), (401, False), (404, False), (410, False), (301, False),
])
def test_which_statuses_are_retried(status, retried):
    assert schedule.retried(status) is retried


# -- the SSRF guard: addresses only, never a connection -------------------------------------



@pytest.mark.parametrize("addr", [
    "127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "172.16.0.5", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fd00::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "100.64.0.1", "::ffff:169.254.169.254",  # noqa: S104 (an address judged, never bound)
    "::ffff:10.0.0.1", "2002:a00:1::", "64:ff9b::a9fe:a9fe", "240.0.0.1", "255.255.255.255",
])
def test_non_public_addresses_are_refused(addr):
    with pytest.raises(addresses.Refused):
        addresses.check(addr)


@pytest.mark.parametrize("addr", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_public_addresses_pass(addr):
    assert str(addresses.check(addr)) == addr


def test_the_allow_list_opens_only_what_it_names():
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    assert str(addresses.check("127.0.0.1", loopback)) == "127.0.0.1"
    assert addresses.check("::ffff:127.0.0.1", loopback).ipv4_mapped == ipaddress.ip_address("127.0.0.1")
    for addr in ("::1", "10.0.0.1", "169.254.169.254"):
        with pytest.raises(addresses.Refused):
            addresses.check(addr, loopback)


def fake_dns(answers: dict[str, list[str]]):
    def getaddrinfo(host, port, type=0):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]
    return getaddrinfo


def test_a_name_is_judged_by_every_address_it_resolves_to():
    dns = fake_dns({"localhost": ["127.0.0.1"], "mixed.example": ["93.184.215.14", "10.0.0.1"],
                    "metadata.example": ["169.254.169.254"], "ok.example": ["93.184.215.14"]})
    for host in ("localhost", "mixed.example", "metadata.example", "nowhere.example"):
        with pytest.raises(addresses.Refused):
            addresses.resolve(host, 80, getaddrinfo=dns)
    assert str(addresses.resolve("ok.example", 80, getaddrinfo=dns)) == "93.184.215.14"
    assert str(addresses.resolve("localhost", 80, (ipaddress.ip_network("127.0.0.0/8"),),
                                 getaddrinfo=dns)) == "127.0.0.1"
    for literal in ("[::1]", "[::ffff:127.0.0.1]", "127.0.0.1"):
        with pytest.raises(addresses.Refused):
            addresses.resolve(literal, 80, getaddrinfo=dns)


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/", "scheme"), ("file:///etc/passwd", "scheme"), ("https:///x", "host"),
    ("https://u:p@example.com/", "credentials"), ("https://example.com:99999/", "URL"),
    ("https://example.com/#x", "URL"), ("https://\u00cf/", "URL"), ("https://a b/", "URL"),
    ("https://exa_mple.com/", "host name"), ("https://-x.example/", "host name"),
])
def test_urls_other_than_http_and_https_are_refused(url, why):
    with pytest.raises(addresses.Refused, match=why):
        addresses.check_url(url)


def test_a_url_names_its_port():
    assert addresses.check_url("https://Example.com/hook?a=1") == ("https", "example.com", 443)
    assert addresses.check_url("http://127.0.0.1:8080/") == ("http", "127.0.0.1", 8080)
