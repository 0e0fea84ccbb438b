"""The confirmation message, built and parsed back without a server."""

from __future__ import annotations

import email
import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from email import policy
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking_core.model.emails import InvalidEmail, check_email
from email_worker import compose
from email_worker.compose import confirmation, confirmation_message, message_id, one_line, sender
from email_worker.send import send
from email_worker.smtp_url import parse_smtp_url

MAIL_FROM = "Bookings <bookings@hotel.example>"
HEADERS = {"subject", "from", "to", "date", "message-id", "auto-submitted", "mime-version",
           "content-type"}


def booking(**fields) -> dict:
    return {
        "id": "0b7c6f1e-3c1a-4f5e-9d2a-4e9f0c1d2b3a",
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.test",
        "item": "Room 12",
        "check_in": date(2030, 5, 1),
        "check_out": date(2030, 5, 4),
        "amount": Decimal("249.90"),
        "currency": "EUR",
    } | fields


def roundtrip(b: dict) -> email.message.EmailMessage:
    """Serialise as it would go on the wire, then parse as a mail client would."""
    raw = confirmation_message(b, mail_from=MAIL_FROM).as_bytes()
    return email.message_from_bytes(raw, policy=policy.default)


def parts(msg) -> dict[str, str]:
    return {
        p.get_content_type(): p.get_content().replace("\r\n", "\n")
        for p in msg.walk()
        if not p.is_multipart()
    }


def test_headers_and_both_parts() -> None:
    when = datetime(2030, 4, 1, 12, 0, tzinfo=UTC)
    msg = confirmation_message(booking(), mail_from=MAIL_FROM, now=when)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert {k.lower() for k in parsed.keys()} == HEADERS
    assert parsed["Subject"] == "Booking confirmed: Room 12"
    assert parsed["From"].addresses[0].addr_spec == "bookings@hotel.example"
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ada Lovelace", "ada@example.test")
    assert parsed["Date"].datetime == when
    assert parsed["Message-ID"] == "<booking-0b7c6f1e-3c1a-4f5e-9d2a-4e9f0c1d2b3a@hotel.example>"
    assert parsed.get_content_type() == "multipart/alternative"
    body = parts(parsed)
    assert set(body) == {"text/plain", "text/html"}
    for text in body.values():
        for fact in ("Ada Lovelace", "Room 12", "2030-05-01", "2030-05-04", "249.90 EUR",
                     "0b7c6f1e-3c1a-4f5e-9d2a-4e9f0c1d2b3a"):
            assert fact in text


def test_message_id_is_deterministic() -> None:
    first = confirmation_message(booking(), mail_from=MAIL_FROM)
    again = confirmation_message(booking(), mail_from="Other Name <bookings@hotel.example>")
    other = confirmation_message(booking(id=str(uuid.uuid4())), mail_from=MAIL_FROM)
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != other["Message-ID"]
    assert message_id(uuid.UUID(booking()["id"]), MAIL_FROM) == first["Message-ID"]


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: x@evil.test",
        "Eve\nBcc: x@evil.test",
        "Eve\rBcc: x@evil.test",
        "Eve\u2028Bcc: x@evil.test",
        "Eve\x85Bcc: x@evil.test",
        '"><script>alert(1)</script>',
        'Eve" <x@evil.test>, "Mallory',
        "Eve <x@evil.test>",
        # Encoded words: Python 3.11's generator would decode them back into the header.
        "=?utf-8?q?Bcc=3A_x=40evil=2Etest?=",
        "=?utf-8?q?Eve=0D=0ABcc:_x@evil.test?=",
        "=?utf-8?b?RXZlDQpCY2M6IHhAZXZpbC50ZXN0?=",
    ],
)
def test_hostile_name_adds_no_header_and_no_recipient(name: str) -> None:
    msg = confirmation_message(booking(customer_name=name), mail_from=MAIL_FROM)
    assert msg.get_all("Bcc") is None
    raw = msg.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(not line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert {k.lower() for k in parsed.keys()} == HEADERS
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ada@example.test"]


@pytest.mark.parametrize(
    "item",
    ["x\r\nBcc: x@evil.test", "=?utf-8?q?x=0D=0ABcc:_x@evil.test?=", "=?utf-8?q?x?= =?utf-8?q?y?="],
)
def test_hostile_item_cannot_break_out_of_the_subject(item: str) -> None:
    raw = confirmation_message(booking(item=item), mail_from=MAIL_FROM).as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert {k.lower() for k in parsed.keys()} == HEADERS
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["Subject"].startswith("Booking confirmed: ")


def test_html_escapes_every_value() -> None:
    hostile = '"><script>alert(1)</script>'
    b = booking(customer_name=hostile, item=f"<img src=x onerror=alert(1)>{hostile}",
                currency="<b>")
    body = parts(roundtrip(b))
    html = body["text/html"]
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&quot;&gt;" in html
    # The text part shows the value as typed: plain text cannot execute.
    assert hostile in body["text/plain"]


def test_values_cannot_lay_out_lines_of_their_own() -> None:
    b = booking(item="Room 12\n\nPlease wire the amount to IBAN XX00", customer_name="Ada\r\n")
    text = parts(roundtrip(b))["text/plain"]
    assert "Item: Room 12 Please wire the amount to IBAN XX00\n" in text
    assert "Hello Ada,\n" in text


@pytest.mark.parametrize("address", ["ada+x@example.test", "o'brien@sub.example.com", "a_b-c.d@example.co"])
def test_plain_addresses_are_kept(address: str) -> None:
    (to,) = roundtrip(booking(customer_email=address))["To"].addresses
    assert to.addr_spec == address


@pytest.mark.parametrize("address", ['"ada lovelace"@example.test', "ada+x@[192.0.2.1]", "ada@localhost"])
def test_addresses_the_api_refuses_are_refused_here_too(address: str) -> None:
    # Given an address that is legal in RFC 5321 but outside the one rule (booking_core.model.emails)
    # Then the composer refuses it exactly as the API does on input
    with pytest.raises(ValueError, match="cannot be addressed"):
        confirmation_message(booking(customer_email=address), mail_from=MAIL_FROM)
    with pytest.raises(InvalidEmail):
        check_email(address)


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (Decimal("100.00"), "JPY", "100 JPY"), (Decimal("12000"), "KRW", "12000 KRW"),
    (Decimal("7"), "EUR", "7.00 EUR"), (Decimal("249.9"), "USD", "249.90 USD"),
])
def test_amount_is_printed_with_the_currency_minor_units(amount, currency, shown) -> None:
    # Given a stored amount (numeric(12, 2) gives JPY 100 as 100.00)
    body = parts(roundtrip(booking(amount=amount, currency=currency)))
    # Then both parts show it with the currency's own decimals
    for text in body.values():
        assert f"Amount: {shown}" in text or f"<td>{shown}</td>" in text
    assert "100.00 JPY" not in body["text/plain"]


def test_long_and_unicode_values() -> None:
    b = booking(customer_name="Zoë Ünïcode 山田", item="Suite " + "x" * 1000,
                customer_email="zoe@exämple.test")
    parsed = roundtrip(b)
    (to,) = parsed["To"].addresses
    assert to.display_name == "Zoë Ünïcode 山田"
    assert to.addr_spec == "zoe@xn--exmple-cua.test"
    assert len(parsed["Subject"]) <= 200
    assert "Suite xxx" in parts(parsed)["text/plain"]


@pytest.mark.parametrize(
    "address",
    ["", "no-at-sign", "a@b@c", "@example.test", "ada@", "ada@example.test\r\nBcc: x@evil.test",
     "ada@example.test, eve@evil.test", "zoë@example.test", "ada(comment)@example.test",
     "<ada@example.test>", "Ada <ada@example.test>", "a b@example.test", "ada@example..test"],
)
def test_unusable_address_is_a_value_error(address: str) -> None:
    with pytest.raises(ValueError):
        confirmation_message(booking(customer_email=address), mail_from=MAIL_FROM)


@pytest.mark.parametrize("mail_from", ["", "no-domain", "a@x, b@y", "Bookings <a@x>\r\nBcc: e@v"])
def test_bad_sender_is_a_value_error(mail_from: str) -> None:
    with pytest.raises(ValueError):
        sender(mail_from)


def test_one_line() -> None:
    assert one_line("  a\r\n\tb\x00c \u2029 d ") == "a b c d"
    assert one_line("x" * 300, limit=10) == "x" * 9 + "…"


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=120), item=st.text(min_size=1, max_size=120))
def test_any_name_or_item_keeps_the_header_set(name: str, item: str) -> None:
    parsed = roundtrip(booking(customer_name=name, item=item))
    assert {k.lower() for k in parsed.keys()} == HEADERS
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ada@example.test"]
    html = parts(parsed)["text/html"]
    if "<" in name + item:
        assert html.count("<") == confirmation_message(
            booking(customer_name="n", item="i"), mail_from=MAIL_FROM
        ).get_body(("html",)).get_content().count("<")


FRAGMENTS = ["=?", "?=", "utf-8", "?q?", "?b?", "=0D=0A", "\r\n", "\n", "Bcc:", "To:", " ", "\t",
             "<", ">", '"', "\\", "@", ",", ";", ":", "(", ")", "x", "é", "evil.test"]


@settings(max_examples=300, deadline=None)
@given(
    name=st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    item=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map("".join),
)
def test_hostile_fragments_never_change_headers_or_recipient(name: str, item: str) -> None:
    msg = confirmation_message(booking(customer_name=name, item=item), mail_from=MAIL_FROM)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert {k.lower() for k in parsed.keys()} == HEADERS
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ada@example.test"]
    assert "\n" not in str(parsed["Subject"]) and "\n" not in str(parsed["To"])


# --- the composition keeps the stdlib's own output ---------------------------------------

BOUNDARY = re.compile(rb'===============[0-9]{19}==')


def stdlib_message(b: dict, now: datetime) -> email.message.EmailMessage:
    """The confirmation as the email package composes it through its full API (the reference)."""
    name = compose.one_line(b["customer_name"])
    facts = compose._facts(b)
    msg = email.message.EmailMessage(policy=policy.SMTP)
    msg["Subject"] = compose.header_text(f"Booking confirmed: {compose.one_line(b['item'], limit=80)}")
    msg["From"] = sender(MAIL_FROM)
    msg["To"] = compose.recipient(b["customer_name"], b["customer_email"])
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(b["id"], MAIL_FROM)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(compose._text(name, facts))
    msg.add_alternative(compose._html(name, facts), subtype="html")
    return msg


def same_bytes(b: dict) -> None:
    now = datetime(2030, 4, 1, 12, 0, tzinfo=UTC)
    composed = confirmation(b, mail_from=MAIL_FROM, now=now)
    wire = composed.envelope.data
    assert wire == composed.message.as_bytes()  # the bytes checked are the bytes sent
    assert BOUNDARY.sub(b"B", wire) == BOUNDARY.sub(b"B", stdlib_message(b, now).as_bytes())
    assert composed.envelope.recipients == (composed.recipient,)
    assert composed.envelope.sender == "bookings@hotel.example"


@pytest.mark.parametrize("fields", [
    {}, {"customer_name": "Zoë Ünïcode 山田", "customer_email": "zoe@exämple.test"},
    {"item": "Suite " + "x" * 400}, {"customer_name": "Eve\r\nBcc: x@evil.test"},
    {"item": "=?utf-8?q?x=0D=0ABcc:_x@evil.test?="}, {"currency": "<b>", "amount": Decimal("7")},
])
def test_output_is_the_email_packages_own(fields: dict) -> None:
    same_bytes(booking(**fields))


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=120), item=st.text(min_size=1, max_size=200))
def test_any_name_or_item_composes_as_the_email_package_does(name: str, item: str) -> None:
    same_bytes(booking(customer_name=name, item=item))


def test_a_value_holding_the_boundary_gets_another_one() -> None:
    kept = compose._static(MAIL_FROM).boundary
    msg = confirmation_message(booking(item=f"x\n--{kept}\nContent-Type: text/html"), mail_from=MAIL_FROM)
    assert msg.get_boundary() not in (None, kept)
    parsed = roundtrip(booking(item=f"--{kept}--"))
    assert set(parts(parsed)) == {"text/plain", "text/html"}


def test_the_sink_receives_the_composed_bytes(smtp_sink) -> None:
    """What arrives at the real SMTP sink is the reference composition, headers and body."""
    now = datetime(2030, 4, 1, 12, 0, tzinfo=UTC)
    b = booking(customer_name="Zoë <x@evil.test>\r\nBcc: y@evil.test", item="Room 12")
    send(confirmation(b, mail_from=MAIL_FROM, now=now).envelope, parse_smtp_url(smtp_sink.url))
    (raw,) = smtp_sink.raw()
    assert BOUNDARY.sub(b"B", raw) == BOUNDARY.sub(b"B", stdlib_message(b, now).as_bytes())
    (got,) = smtp_sink.messages()
    assert {k.lower() for k in got.keys()} == HEADERS
    assert [a.addr_spec for a in got["To"].addresses] == ["ada@example.test"]
    assert "Item: Room 12" in got.get_body(("plain",)).get_content()
