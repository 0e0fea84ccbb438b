"""Submit one message over SMTP and sort failures into "retry later" and "never works".

Dramatiq retries a `TemporaryEmailError` with backoff; a `PermanentEmailError`
is a `PermanentTaskError`, which every actor lists in `throws`, so it is
dead-lettered at once instead of hammering a server that already said no.  Only a 5xx about this message or its
recipient is permanent: an outage, a 4xx or a misconfigured server/credential
is temporary, because fixing it makes the very same message deliverable.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
from email.message import EmailMessage

from booking_core.messaging.errors import PermanentTaskError
from email_worker.smtp_url import SmtpUrl

log = logging.getLogger(__name__)


class EmailError(Exception):
    """A confirmation email could not be handed to the SMTP server."""


class TemporaryEmailError(EmailError):
    """Worth retrying: the server is unreachable, busy, or answered 4xx."""


class PermanentEmailError(EmailError, PermanentTaskError):
    """Not worth retrying: the server refused this message or recipient with 5xx."""


def _reply(code: int, text: bytes | str) -> str:
    """An SMTP reply as one readable line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _classify(code: int, what: str, text: bytes | str) -> EmailError:
    """5xx -> permanent, anything else -> temporary."""
    error = PermanentEmailError if 500 <= code <= 599 else TemporaryEmailError
    return error(f"{what}: {_reply(code, text)}")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context, made at its first TLS session.

    Making one parses the whole CA bundle: 30 ms of CPU, which every email paid, TLS
    or not, when each session made its own (a third of an email's work on the
    local platform).  A context is safe to share between threads; a changed CA
    bundle is read by the next process, as by every other TLS client here.
    """
    return ssl.create_default_context()


def _open(url: SmtpUrl) -> smtplib.SMTP:
    """A ready session: connected, TLS as configured, logged in."""
    if url.security == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            url.host, url.port, timeout=url.timeout, context=tls_context()
        )
    else:
        smtp = smtplib.SMTP(url.host, url.port, timeout=url.timeout)
    try:
        smtp.ehlo()
        if url.security == "starttls":
            # Refuses (SMTPNotSupportedError) rather than silently sending in clear text.
            smtp.starttls(context=tls_context())
            smtp.ehlo()
        if url.username is not None:
            smtp.login(url.username, url.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _close(smtp: smtplib.SMTP) -> None:
    """Say QUIT politely; once the message was accepted, nothing here may fail the send."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def send(message: EmailMessage, url: SmtpUrl) -> None:
    """Submit `message` to its To/Cc recipients; raise Temporary/PermanentEmailError."""
    try:
        smtp = _open(url)
    except (OSError, smtplib.SMTPException) as exc:
        # Refused, timed out, TLS/certificate or login failure: the server side, not the mail.
        raise TemporaryEmailError(
            f"cannot open an SMTP session with {url}: {_describe(exc)}"
        ) from exc
    try:
        refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        code, text = next(iter(exc.recipients.values()), (0, b""))
        if codes and all(500 <= c <= 599 for c in codes):
            raise PermanentEmailError(f"recipient refused: {_reply(code, text)}") from exc
        raise TemporaryEmailError(f"recipient refused: {_reply(code, text)}") from exc
    except smtplib.SMTPSenderRefused as exc:
        raise _classify(exc.smtp_code, "sender refused", exc.smtp_error) from exc
    except smtplib.SMTPDataError as exc:
        raise _classify(exc.smtp_code, "message refused", exc.smtp_error) from exc
    except smtplib.SMTPNotSupportedError as exc:
        # An internationalised address the server cannot take (no SMTPUTF8).
        raise PermanentEmailError(f"server cannot carry this message: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        # Disconnects, timeouts and other replies mid-transaction: try again later.
        raise TemporaryEmailError(f"SMTP session with {url} failed: {_describe(exc)}") from exc
    finally:
        _close(smtp)
    if refused:
        log.warning("SMTP server refused %d of the message's recipients", len(refused))


def _describe(exc: BaseException) -> str:
    """A short description of a connection-level failure."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {_reply(exc.smtp_code, exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
