"""Build the confirmation email from a booking row; pure, so it is tested without a server.

Every booking value is untrusted client input: header values are stripped of
control characters and of RFC 2047 encoded-word openers (`=?`, which this
Python's generator would decode back into raw CR/LF), set through
`email.headerregistry` (never formatted into header text), and the generated
header block is parsed back and checked before the message may leave.  The
HTML part escapes everything it shows.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime

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


def _check_headers(msg: EmailMessage, to: Address) -> None:
    """Parse the generated header block back: the same header names, and one To, ours."""
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(msg.as_bytes())
    if [k.lower() for k in parsed.keys()] != [k.lower() for k in msg.keys()]:
        raise ValueError("generated headers differ from those set (header injection?)")
    if [a.addr_spec for a in parsed["To"].addresses] != [to.addr_spec]:
        raise ValueError("generated To header does not name exactly the customer")


def message_id(booking_id: object, mail_from: str) -> str:
    """`<booking-{id}@{sender domain}>`: the same for every delivery attempt of one booking."""
    domain = sender(mail_from).domain or "localhost"
    return f"<booking-{uuid.UUID(str(booking_id))}@{domain}>"


def sender(mail_from: str) -> Address:
    """The configured From address, parsed once so a bad BOOKING_MAIL_FROM is caught."""
    probe = EmailMessage(policy=policy.SMTP)
    probe["From"] = mail_from
    addresses = probe["From"].addresses
    if len(addresses) != 1 or not addresses[0].domain or probe["From"].defects:
        raise ValueError(f"mail_from must be one address with a domain, got {mail_from!r}")
    return addresses[0]


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
    e = html.escape
    rows = "\n".join(
        f"<tr><th align=\"left\">{e(label)}</th><td>{e(value)}</td></tr>" for label, value in facts
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Booking confirmed</title>"
        "</head><body>\n"
        f"<p>Hello {e(name)},</p>\n<p>your booking is confirmed.</p>\n"
        f"<table>\n{rows}\n</table>\n<p>Thank you for your booking.</p>\n</body></html>\n"
    )


def confirmation_message(
    booking: Mapping, *, mail_from: str, now: datetime | None = None
) -> EmailMessage:
    """The confirmation email (text + HTML alternatives) for one booking row."""
    name = one_line(booking["customer_name"])
    facts = _facts(booking)
    to = recipient(booking["customer_name"], booking["customer_email"])
    msg = EmailMessage(policy=policy.SMTP)
    msg["Subject"] = header_text(f"Booking confirmed: {one_line(booking['item'], limit=80)}")
    msg["From"] = sender(mail_from)
    msg["To"] = to
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(booking["id"], mail_from)
    # RFC 3834: tells vacation responders not to answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_text(name, facts))
    msg.add_alternative(_html(name, facts), subtype="html")
    _check_headers(msg, to)
    return msg
