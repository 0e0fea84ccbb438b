"""The one rule for a customer's email address: the API accepts what the email worker can send.

Both the API (on input) and the email composer (before sending) call
`check_email`, so an address can never be accepted at the door and refused at
delivery, or the other way round.  The rule is `email-validator`'s syntax
check, with these choices:

- no DNS lookups (`check_deliverability=False`): validation must not depend on
  the network, and the SMTP server is the judge of deliverability;
- no SMTPUTF8 (`allow_smtputf8=False`): the worker sends plain SMTP, so a
  non-ASCII local part (`zoë@…`) is refused; an internationalised domain
  (`…@exämple.test`) is fine, since it is sent in its ASCII (IDNA) form;
- no quoted local parts, domain literals or display names (the library's
  defaults): they are legal but mostly seen in attacks on header parsers;
- the reserved `.test` TLD (RFC 2606) is allowed (`test_environment=True`) so
  test and staging setups can use addresses that never reach a real mailbox;
  other special-use names (`localhost`, `.local`, `.invalid`) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

_OPTIONS = {"check_deliverability": False, "allow_smtputf8": False, "test_environment": True}


class InvalidEmail(ValueError):
    """The address breaks the rule; the message says why, in words fit for a client."""


@dataclass(frozen=True)
class EmailAddress:
    """A checked address: `normalized` to store and show, `ascii` to put on the wire."""

    normalized: str
    ascii: str


def check_email(value: object) -> EmailAddress:
    """`value` (surrounding spaces ignored) as an EmailAddress, or InvalidEmail saying why."""
    if not isinstance(value, str):
        raise InvalidEmail("must be a string")
    try:
        checked = validate_email(value.strip(), **_OPTIONS)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return EmailAddress(normalized=checked.normalized, ascii=checked.ascii_email or checked.normalized)
