"""Build the confirmation email from a booking row; pure, so it is tested without a server.

Every booking value is untrusted client input: header values are stripped of
control characters and of RFC 2047 encoded-word openers (`=?`, which this
Python's generator would decode back into raw CR/LF), set through
`email.headerregistry` (never formatted into header text), and the generated
header block is parsed back and checked before the message may leave.  The
HTML part escapes everything it shows.

Composing was a fifth of an email's CPU, most of it the header registry parsing
the same static values for every message.  The headers that are the same for
every email (From, MIME-Version, Auto-Submitted, the parts' Content-Type and
Content-Transfer-Encoding, the multipart's boundary) are parsed once per sender
and reused; the message is flattened once, and the bytes that were checked are
the bytes sent (`Envelope`).  The output is what the email package's full API
(`set_content`, `add_alternative`) makes of the same text, byte for byte, apart from
the boundary's random digits.
"""

from __future__ import annotations

import copy
import functools
import html
import re
import secrets
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from booking_core.model.currencies import format_amount
from booking_core.model.emails import InvalidEmail, check_email

#: C0/C1 controls and Unicode line/paragraph separators: never allowed in a header.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_HEADER_TEXT = 200
MAX_BODY_TEXT = 500


def one_line(value: object, *, limit: int = MAX_HEADER_TEXT) -> str:
    """`value` as one line of header-safe text: controls become spaces, length bounded."""
    text = " ".join(_CONTROLS.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display_name(value: object) -> str:
    """A recipient's display name reduced to letters, digits, spaces and `.'-`.

    The stdlib's address-header folder mis-handles hostile names (`=?...Bcc:;x`
    can come back as a group or a second address), so the To header gets only
    characters that carry no syntax; the body still shows the name in full.
    """
    kept = "".join(c if c.isalnum() or c in " .'-" else " " for c in one_line(value))
    return " ".join(kept.split()) or "Customer"


def header_text(value: object, *, limit: int = MAX_HEADER_TEXT) -> str:
    """`one_line`, with encoded-word openers broken so no decoder can turn them into headers."""
    return one_line(value, limit=limit).replace("=?", "= ?")


def recipient(name: object, email: object) -> Address:
    """The customer as an Address; ValueError when the address breaks the API's own rule.

    The rule is `booking_core.model.emails.check_email`, the same the API accepts
    addresses with, so nothing accepted at the door is refused here.  The
    domain goes on the wire in its ASCII (IDNA) form.
    """
    try:
        checked = check_email(email)
    except InvalidEmail as exc:
        raise ValueError(f"customer email cannot be addressed: {exc}") from None
    username, _, domain = checked.ascii.rpartition("@")
    return Address(display_name=display_name(name), username=username, domain=domain)


def _check_headers(data: bytes, msg: EmailMessage, to: Address) -> None:
    """Parse the generated header block back: the same header names, and one To, ours."""
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(head)
    if [k.lower() for k in parsed.keys()] != [k.lower() for k in msg.keys()]:
        raise ValueError("generated headers differ from those set (header injection?)")
    if [a.addr_spec for a in parsed["To"].addresses] != [to.addr_spec]:
        raise ValueError("generated To header does not name exactly the customer")


def message_id(booking_id: object, mail_from: str) -> str:
    """`<booking-{id}@{sender domain}>`: the same for every delivery attempt of one booking."""
    domain = sender(mail_from).domain or "localhost"
    return f"<booking-{uuid.UUID(str(booking_id))}@{domain}>"


@functools.lru_cache(maxsize=16)
def sender(mail_from: str) -> Address:
    """The configured From address, parsed once so a bad BOOKING_MAIL_FROM is caught."""
    probe = EmailMessage(policy=policy.SMTP)
    probe["From"] = mail_from
    addresses = probe["From"].addresses
    if len(addresses) != 1 or not addresses[0].domain or probe["From"].defects:
        raise ValueError(f"mail_from must be one address with a domain, got {mail_from!r}")
    return addresses[0]


@dataclass(frozen=True)
class Envelope:
    """A message ready for the wire: its bytes (CRLF lines) and the SMTP envelope.

    `international` marks an envelope that needs the server's SMTPUTF8 (a non-ASCII address).
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    international: bool = False


def envelope(message: EmailMessage) -> Envelope:
    """What `smtplib.SMTP.send_message` sends for `message`: From, To/Cc/Bcc, Bcc left out."""
    if message["Resent-Date"] is not None:
        raise ValueError("Resent- header blocks are not supported")
    sender = getaddresses([str(message["Sender"] or message["From"])])[0][1]
    recipients = tuple(a for _, a in getaddresses(
        [str(v) for v in (message["To"], message["Bcc"], message["Cc"]) if v is not None]))
    international = not (sender.isascii() and all(r.isascii() for r in recipients))
    if message["Bcc"] is not None:
        message = copy.copy(message)
        del message["Bcc"]
    wire = message.policy.clone(linesep="\r\n", utf8=international or message.policy.utf8)
    return Envelope(sender, recipients, message.as_bytes(policy=wire), international)


@dataclass(frozen=True)
class Confirmation:
    """The composed confirmation: the message (to read), its envelope (to send), and its ids."""

    message: EmailMessage
    envelope: Envelope
    message_id: str
    recipient: str


class _Static:
    """The header objects every confirmation from one sender shares, parsed once.

    `policy.SMTP` stores a header object given for its own name as it is, so these
    are never parsed again; they are immutable, so sharing them is safe.
    """

    def __init__(self, mail_from: str) -> None:
        make = policy.SMTP.header_factory
        self.sender = sender(mail_from)
        self.from_ = make("From", [self.sender])
        self.auto_submitted = make("Auto-Submitted", "auto-generated")
        self.mime_version = make("MIME-Version", "1.0")
        self.seven_bit = make("Content-Transfer-Encoding", "7bit")
        self.text_type = {sub: make("Content-Type", f'text/{sub}; charset="utf-8"')
                          for sub in ("plain", "html")}
        # The stdlib's own boundary form; the generator does not check a boundary it is
        # given, so `confirmation` uses it only for bodies that do not contain it.
        self.boundary = "=" * 15 + f"{secrets.randbelow(sys.maxsize):019d}" + "=="
        self.alternative = make("Content-Type", f'multipart/alternative; boundary="{self.boundary}"')


@functools.lru_cache(maxsize=16)
def _static(mail_from: str) -> _Static:
    return _Static(mail_from)


def _text_part(text: str, subtype: str, static: _Static) -> EmailMessage:
    """One text/* part, as `EmailMessage.set_content` makes it.

    ASCII text with lines the policy need not fold is 7bit, the text as it is: the
    stdlib's own choice, made here without parsing its headers again.  Anything
    else (non-ASCII, long lines) goes through `set_content` itself.
    """
    part = EmailMessage(policy=policy.SMTP)
    lines = text.split("\n")  # the stdlib measures lines split at CR/LF only
    if text.isascii() and "\r" not in text and text.endswith("\n") \
            and max(map(len, lines), default=0) <= policy.SMTP.max_line_length:
        part["Content-Type"] = static.text_type[subtype]
        part["Content-Transfer-Encoding"] = static.seven_bit
        part.set_payload(text)
        part["MIME-Version"] = static.mime_version
    else:
        part.set_content(text, subtype=subtype)
    return part


def _facts(booking: Mapping) -> list[tuple[str, str]]:
    """The booking's details as (label, value) pairs, in display order."""
    facts = [
        ("Booking", booking["id"]),
        ("Item", booking["item"]),
        ("Check-in", booking["check_in"]),
        ("Check-out", booking["check_out"]),
        ("Amount", f"{format_amount(booking['amount'], booking['currency'])} {booking['currency']}"),
    ]
    # One line each, so no value can lay out text of its own in the body either.
    return [(label, one_line(value, limit=MAX_BODY_TEXT)) for label, value in facts]


def _text(name: str, facts: list[tuple[str, str]]) -> str:
    lines = [f"Hello {name},", "", "your booking is confirmed.", ""]
    lines += [f"{label}: {value}" for label, value in facts]
    lines += ["", "Thank you for your booking."]
    return "\n".join(lines) + "\n"


def _html(name: str, facts: list[tuple[str, str]]) -> str:
    """The HTML part, laid out in lines of at most 78 characters for typical values.

    Lines that short let the part go as 7bit, the text as it is, instead of
    quoted-printable (which costs an encoding pass and makes the source unreadable);
    the line breaks fall between tags, where HTML ignores them.
    """
    e = html.escape
    rows = "\n".join(
        f"<tr><th align=\"left\">{e(label)}</th>\n<td>{e(value)}</td></tr>" for label, value in facts
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Booking confirmed</title>"
        "</head>\n<body>\n"
        f"<p>Hello {e(name)},</p>\n<p>your booking is confirmed.</p>\n"
        f"<table>\n{rows}\n</table>\n<p>Thank you for your booking.</p>\n</body></html>\n"
    )


def confirmation(
    booking: Mapping, *, mail_from: str, now: datetime | None = None
) -> Confirmation:
    """The confirmation email (text + HTML alternatives) for one booking row, ready to send."""
    static = _static(mail_from)
    name = one_line(booking["customer_name"])
    facts = _facts(booking)
    to = recipient(booking["customer_name"], booking["customer_email"])
    mid = message_id(booking["id"], mail_from)
    msg = EmailMessage(policy=policy.SMTP)
    msg["Subject"] = header_text(f"Booking confirmed: {one_line(booking['item'], limit=80)}")
    msg["From"] = static.from_
    msg["To"] = to
    msg["Date"] = now or datetime.now(UTC)
    msg["Message-ID"] = mid
    # RFC 3834: tells vacation responders not to answer a machine.
    msg["Auto-Submitted"] = static.auto_submitted
    msg["MIME-Version"] = static.mime_version
    text, page = _text(name, facts), _html(name, facts)
    # The generator trusts a given boundary: it must not occur in either part.
    boundary_free = static.boundary not in text and static.boundary not in page
    msg["Content-Type"] = static.alternative if boundary_free else "multipart/alternative"
    plain = _text_part(text, "plain", static)
    del plain["MIME-Version"]  # set_content leaves it on the outer message only
    msg.set_payload([plain, _text_part(page, "html", static)])
    ascii_envelope = static.sender.addr_spec.isascii() and to.addr_spec.isascii()
    if ascii_envelope:
        data = msg.as_bytes()
        wire = Envelope(static.sender.addr_spec, (to.addr_spec,), data)
    else:
        wire = envelope(msg)
    _check_headers(wire.data, msg, to)
    return Confirmation(msg, wire, mid, to.addr_spec)


def confirmation_message(
    booking: Mapping, *, mail_from: str, now: datetime | None = None
) -> EmailMessage:
    """The confirmation email (text + HTML alternatives) for one booking row."""
    return confirmation(booking, mail_from=mail_from, now=now).message
