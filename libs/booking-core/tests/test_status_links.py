"""Progress-page tokens: they open one booking, until their expiry, under the current secret only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from booking_core.model.status_links import InvalidToken, expiry_for, sign, verify

SECRET = "s" * 32
BOOKING = str(uuid.uuid4())
EXPIRES = 2_000_000_000


def test_a_signed_token_opens_its_booking_until_it_expires():
    token = sign(SECRET, BOOKING, EXPIRES)
    assert verify(SECRET, token, now=EXPIRES - 1) == BOOKING
    with pytest.raises(InvalidToken, match="expired"):
        verify(SECRET, token, now=EXPIRES)


def test_another_booking_or_a_later_expiry_in_the_token_breaks_the_signature():
    _, _, mac = sign(SECRET, BOOKING, EXPIRES).split(".")
    for forged in (f"{uuid.uuid4()}.{EXPIRES}.{mac}", f"{BOOKING}.{EXPIRES + 86400}.{mac}"):
        with pytest.raises(InvalidToken, match="bad signature"):
            verify(SECRET, forged, now=0)


def test_rotating_the_secret_revokes_every_token():
    token = sign(SECRET, BOOKING, EXPIRES)
    with pytest.raises(InvalidToken, match="bad signature"):
        verify("t" * 32, token, now=0)


#: Named ids: BOOKING is random, and pytest-xdist needs every worker to collect the same names.
@pytest.mark.parametrize("token", ["", "abc", "a.b.c", f"{BOOKING}.soon.x", "x" * 500, f"{BOOKING}.1.2.3"],
                         ids=["empty", "one-part", "three-letters", "word-expiry", "long", "four-parts"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(InvalidToken):
        verify(SECRET, token, now=0)


def test_no_secret_means_no_links_and_no_access():
    with pytest.raises(ValueError):
        sign("", BOOKING, EXPIRES)
    with pytest.raises(InvalidToken, match="not configured"):
        verify("", f"{BOOKING}.{EXPIRES}.x", now=0)


def test_the_expiry_follows_the_booking_so_the_link_is_stable():
    created = datetime(2027, 1, 1, tzinfo=UTC)
    assert expiry_for(created, 3600) == int(created.timestamp()) + 3600
    assert sign(SECRET, BOOKING, expiry_for(created, 3600)) == sign(SECRET, BOOKING, expiry_for(created, 3600))


def _respellings(token: str) -> dict[str, str]:
    """The same booking, expiry and MAC, written as Python's lenient parsers would still read them."""
    booking, expires, mac = token.split(".")
    return {
        "leading-zero-expiry": f"{booking}.0{expires}.{mac}",
        "plus-expiry": f"{booking}.+{expires}.{mac}",
        "underscore-expiry": f"{booking}.{expires[:1]}_{expires[1:]}.{mac}",
        "arabic-indic-digit-expiry": f"{booking}.{expires[:-1]}{chr(0x660 + int(expires[-1]))}.{mac}",
        "spaced-expiry": f"{booking}. {expires}.{mac}",
        "uppercase-id": f"{booking.upper()}.{expires}.{mac}",
        "undashed-id": f"{booking.replace('-', '')}.{expires}.{mac}",
        "urn-id": f"urn:uuid:{booking}.{expires}.{mac}",
        "braced-id": f"{{{booking}}}.{expires}.{mac}",
        "padded-mac": f"{booking}.{expires}.{mac}=",
        "trailing-newline": f"{token}\n",
    }


@pytest.mark.parametrize("spelling", sorted(_respellings(sign(SECRET, BOOKING, EXPIRES))))
def test_only_the_exact_signed_text_opens_the_booking(spelling):
    token = sign(SECRET, BOOKING, EXPIRES)
    respelled = _respellings(token)[spelling]
    assert respelled != token
    with pytest.raises(InvalidToken, match="malformed"):
        verify(SECRET, respelled, now=0)
