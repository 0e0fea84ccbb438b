"""SMTP_URL parsing: every accepted form and a clear error for each mistake."""

from __future__ import annotations

import pytest

from email_worker.smtp_url import DEFAULT_TIMEOUT, SmtpUrl, parse_smtp_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpUrl("plain", "mail.example.com", 25)),
        ("smtp://127.0.0.1:2525", SmtpUrl("plain", "127.0.0.1", 2525)),
        ("SMTP://Mail.Example.COM/", SmtpUrl("plain", "mail.example.com", 25)),
        ("smtp+starttls://relay.example.com", SmtpUrl("starttls", "relay.example.com", 587)),
        ("smtp+starttls://relay.example.com:2587", SmtpUrl("starttls", "relay.example.com", 2587)),
        ("smtps://smtp.example.com", SmtpUrl("tls", "smtp.example.com", 465)),
        ("smtp://[::1]:2525", SmtpUrl("plain", "::1", 2525)),
        (
            "smtps://apikey:s3cret@smtp.example.com:4650",
            SmtpUrl("tls", "smtp.example.com", 4650, "apikey", "s3cret"),
        ),
        (
            "smtp+starttls://user%40example.com:p%3Ass%2Fw%40rd%25+x@relay.example.com",
            SmtpUrl("starttls", "relay.example.com", 587, "user@example.com", "p:ss/w@rd%+x"),
        ),
        ("smtp://u:@h", SmtpUrl("plain", "h", 25, "u", "")),
        ("smtp://h?timeout=2.5", SmtpUrl("plain", "h", 25, timeout=2.5)),
        ("smtp://h:26?timeout=10", SmtpUrl("plain", "h", 26, timeout=10.0)),
    ],
)
def test_accepted_urls(url: str, expected: SmtpUrl) -> None:
    assert parse_smtp_url(url) == expected


def test_default_timeout() -> None:
    assert parse_smtp_url("smtp://h").timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://mail.example.com", "scheme must be one of"),
        ("smtp+ssl://mail.example.com", "scheme must be one of"),
        ("mail.example.com:25", "scheme"),
        ("smtp://", "no host"),
        ("smtp://:25", "no host"),
        ("smtp://h:0", "port"),
        ("smtp://h:65536", "port"),
        ("smtp://h:abc", "port"),
        ("smtp://h/inbox", "path"),
        ("smtp://h#frag", "fragment"),
        ("smtp://user@h", "no password"),
        ("smtp://:pass@h", "no user name"),
        ("smtp://h?timeout=0", "timeout must be a positive"),
        ("smtp://h?timeout=-1", "timeout must be a positive"),
        ("smtp://h?timeout=abc", "timeout must be a positive"),
        ("smtp://h?timeout=nan", "timeout must be a positive"),
        ("smtp://h?timeout=inf", "timeout must be a positive"),
        ("smtp://h?timeout=", "timeout must be a positive"),
        ("smtp://h?tls=yes", "unknown option 'tls'"),
        ("smtp://h?timeout", "malformed"),
    ],
)
def test_rejected_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_smtp_url(url)


def test_password_never_shown() -> None:
    url = parse_smtp_url("smtps://apikey:top-secret@smtp.example.com")
    assert "top-secret" not in repr(url)
    assert "top-secret" not in str(url)
    assert str(url) == "smtps://apikey:***@smtp.example.com:465"
    assert str(parse_smtp_url("smtp://[::1]")) == "smtp://[::1]:25"
