"""The one address rule the API and the email composer share."""

from __future__ import annotations

import pytest

from booking_core.model.emails import InvalidEmail, check_email


@pytest.mark.parametrize(("given", "normalized", "ascii"), [
    ("ada@example.com", "ada@example.com", "ada@example.com"),
    ("  Ada@Example.COM ", "Ada@example.com", "Ada@example.com"),
    ("a+b@sub.example.co", "a+b@sub.example.co", "a+b@sub.example.co"),
    ("nobody@bounce.test", "nobody@bounce.test", "nobody@bounce.test"),       # RFC 2606 test TLD
    ("zoe@exämple.test", "zoe@exämple.test", "zoe@xn--exmple-cua.test"),     # IDN domain, sent as IDNA
])
def test_usable_addresses_are_normalised(given, normalized, ascii):
    checked = check_email(given)
    assert (checked.normalized, checked.ascii) == (normalized, ascii)


@pytest.mark.parametrize(("given", "why"), [
    ("zoë@example.com", "before the @-sign"),           # needs SMTPUTF8, which the worker does not speak
    ('"ada l"@example.com', "Quoting"),
    ("ada@[192.0.2.1]", "bracketed IP"),
    ("Ada <ada@example.com>", "display name"),
    ("ada@localhost", "period"),
    ("ada@printer.local", "special-use"),
    ("ada@example.com\r\nBcc: eve@evil.test", "invalid characters"),
    ("ada@\udfff.com", "unsafe characters"),
    ("", "@-sign"),
])
def test_unusable_addresses_say_why(given, why):
    with pytest.raises(InvalidEmail, match=why):
        check_email(given)


def test_only_strings_are_addresses():
    with pytest.raises(InvalidEmail, match="string"):
        check_email(42)
