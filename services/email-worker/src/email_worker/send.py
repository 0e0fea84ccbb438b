"""Submit one message over SMTP and sort failures into "retry later" and "never works".

Dramatiq retries a `TemporaryEmailError` with backoff; a `PermanentEmailError`
is a `PermanentTaskError`, which every actor lists in `throws`, so it is
dead-lettered at once instead of hammering a server that already said no.  Only a 5xx about this message or its
recipient is permanent: an outage, a 4xx or a misconfigured server/credential
is temporary, because fixing it makes the very same message deliverable.

Sessions are kept between emails (`SessionPool`): a new one per email was about
half of the worker's SMTP CPU.  Keeping them adds one path, a kept session the
server has dropped, and it resends only what the server cannot have received.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage

import dramatiq

from booking_core.messaging.errors import PermanentTaskError
from email_worker.compose import Envelope, envelope
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


class _Session:
    """One open SMTP session and when it was last handed back."""

    __slots__ = ("smtp", "idle_since")

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp
        self.idle_since = time.monotonic()


class SessionPool:
    """Open SMTP sessions kept between emails, at most one per sending thread.

    A new session costs a name lookup, a TCP handshake, the greeting, EHLO (and TLS and
    AUTH where configured): about half of the worker's SMTP CPU, paid by every email
    while each one opened its own.  A thread takes a session out for one transaction, so
    no two threads ever share one; it goes back only after a transaction that ended
    in 250, and sessions idle for longer than the URL's `idle` seconds are closed (QUIT)
    by a reaper thread, before a server's own idle timeout would drop them under us.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[SmtpUrl, list[_Session]] = {}
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        self._next_reap = float("inf")  # when the reaper wakes next (monotonic)
        #: Sessions this pool has opened, for tests and benchmarks to count connections.
        self.opened = 0

    def take(self, url: SmtpUrl) -> _Session | None:
        """The most recently used idle session for `url`, or None."""
        with self._lock:
            sessions = self._idle.get(url)
            while sessions:
                session = sessions.pop()
                if time.monotonic() - session.idle_since < url.idle:
                    return session
                session.smtp.close()  # past its idle time: no QUIT under the lock
        return None

    def open(self, url: SmtpUrl) -> _Session:
        """A new session (connected, TLS as configured, logged in)."""
        session = _Session(_open(url))
        with self._lock:
            self.opened += 1
        return session

    def give_back(self, url: SmtpUrl, session: _Session) -> None:
        """Keep `session` for the next email to `url` (or close it when reuse is off)."""
        if url.idle <= 0:
            _close(session.smtp)
            return
        session.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(url, []).append(session)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="smtp-session-reaper",
                                                daemon=True)
                self._reaper.start()
            elif session.idle_since + url.idle < self._next_reap:
                self._wake.set()  # a URL with a shorter idle time than the reaper sleeps for

    def close_all(self) -> None:
        """QUIT every idle session (the worker is stopping); sessions in use are not touched."""
        with self._lock:
            sessions = [s for kept in self._idle.values() for s in kept]
            self._idle.clear()
            self._wake.set()
        for session in sessions:
            _close(session.smtp)

    def idle_sockets(self, url: SmtpUrl) -> list:
        """The sockets of the sessions kept for `url` (tests watch them for the server's hang-up)."""
        with self._lock:
            return [s.smtp.sock for s in self._idle.get(url, ())]

    def _reap(self) -> None:
        """Close sessions past their idle time; end when none is left to watch."""
        while True:
            with self._lock:
                now = time.monotonic()
                expired: list[_Session] = []
                wait = None
                for url, kept in list(self._idle.items()):
                    fresh = [s for s in kept if now - s.idle_since < url.idle]
                    expired += [s for s in kept if now - s.idle_since >= url.idle]
                    if fresh:
                        self._idle[url] = fresh
                        due = min(url.idle - (now - s.idle_since) for s in fresh)
                        wait = due if wait is None else min(wait, due)
                    else:
                        del self._idle[url]
                if wait is None:
                    self._reaper = None
                    self._wake.clear()
                self._next_reap = float("inf") if wait is None else now + wait
            for session in expired:
                _close(session.smtp)
            if wait is None:
                return
            self._wake.wait(wait + 0.05)
            self._wake.clear()


#: The worker process's sessions.
sessions = SessionPool()


class SessionsClosedAtShutdown(dramatiq.Middleware):
    """QUIT the kept sessions when the worker stops, rather than leave them to the server's timeout."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        sessions.close_all()


class _Stale(Exception):
    """A kept session turned out closed before the server saw any of the message."""


def _transact(smtp: smtplib.SMTP, mail: Envelope, *, kept: bool) -> dict:
    """One mail transaction, as `smtplib.SMTP.sendmail` runs it, raising the same errors.

    On a kept session a hang-up, a 421 (the server's "closing") before DATA, or a 4xx to
    MAIL raises `_Stale`: the server has not seen a byte of the message, so sending it
    on a fresh session cannot deliver it twice.  From DATA on, every failure is the caller's,
    exactly as on a fresh session.
    """
    if mail.international and not smtp.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError(
            "One or more source or delivery addresses require internationalized email"
            " support, but the server does not advertise the required SMTPUTF8 capability")
    options = [f"size={len(mail.data)}"] if smtp.does_esmtp and smtp.has_extn("size") else []
    if mail.international:
        options += ["SMTPUTF8", "BODY=8BITMIME"]
    try:
        code, resp = smtp.mail(mail.sender, options)
        if code != 250:
            _end_transaction(smtp, code)
            raise smtplib.SMTPSenderRefused(code, resp, mail.sender)
        refused = {}
        for rcpt in mail.recipients:
            code, resp = smtp.rcpt(rcpt)
            if code not in (250, 251):
                refused[rcpt] = (code, resp)
            if code == 421:
                smtp.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        if len(refused) == len(mail.recipients):
            _end_transaction(smtp, 0)
            raise smtplib.SMTPRecipientsRefused(refused)
    except (smtplib.SMTPException, OSError) as exc:
        if kept and (_hung_up(exc) or _session_limit(exc)):
            raise _Stale from exc
        raise
    code, resp = smtp.data(mail.data)
    if code != 250:
        _end_transaction(smtp, code)
        raise smtplib.SMTPDataError(code, resp)
    return refused


def _end_transaction(smtp: smtplib.SMTP, code: int) -> None:
    """After a refusal: close on 421 (the server is closing), else RSET, as sendmail does."""
    if code == 421:
        smtp.close()
        return
    try:
        smtp.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _hung_up(exc: BaseException) -> bool:
    """The server closed the session (dropped it, or said 421 before closing)."""
    if isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError)):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    return isinstance(exc, smtplib.SMTPRecipientsRefused) and any(
        code == 421 for code, _ in exc.recipients.values())


def _session_limit(exc: BaseException) -> bool:
    """A 4xx to MAIL: relays answer so when a session has carried its quota of messages."""
    return isinstance(exc, smtplib.SMTPSenderRefused) and 400 <= exc.smtp_code <= 499


def send(message: EmailMessage | Envelope, url: SmtpUrl) -> None:
    """Submit `message` to its To/Cc recipients; raise Temporary/PermanentEmailError.

    Uses a kept session when there is one.  If that session was dropped by the server
    before it saw the message, the message goes once more on a fresh session (and
    only then); any failure after the message's DATA began is reported as it happens,
    never sent again here: Dramatiq's retry decides, as it always did.
    """
    mail = message if isinstance(message, Envelope) else envelope(message)
    session = sessions.take(url)
    if session is not None:
        try:
            refused = _submit(session, mail, url, kept=True)
        except _Stale:
            log.info("kept SMTP session with %s was closed by the server; opening a new one", url)
            session.smtp.close()
        else:
            sessions.give_back(url, session)
            _log_refused(refused)
            return
    try:
        session = sessions.open(url)
    except (OSError, smtplib.SMTPException) as exc:
        # Refused, timed out, TLS/certificate or login failure: the server side, not the mail.
        raise TemporaryEmailError(
            f"cannot open an SMTP session with {url}: {_describe(exc)}"
        ) from exc
    refused = _submit(session, mail, url, kept=False)
    sessions.give_back(url, session)
    _log_refused(refused)


def _submit(session: _Session, mail: Envelope, url: SmtpUrl, *, kept: bool) -> dict:
    """Run the transaction; on an error the session is closed (its state is unknown)."""
    try:
        return _transact(session.smtp, mail, kept=kept)
    except _Stale:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        _close(session.smtp)
        raise _classified(exc, url) from exc
    except BaseException:
        session.smtp.close()
        raise


def _classified(exc: smtplib.SMTPException | OSError, url: SmtpUrl) -> EmailError:
    """The email error for a failed transaction."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        code, text = next(iter(exc.recipients.values()), (0, b""))
        if codes and all(500 <= c <= 599 for c in codes):
            return PermanentEmailError(f"recipient refused: {_reply(code, text)}")
        return TemporaryEmailError(f"recipient refused: {_reply(code, text)}")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _classify(exc.smtp_code, "sender refused", exc.smtp_error)
    if isinstance(exc, smtplib.SMTPDataError):
        return _classify(exc.smtp_code, "message refused", exc.smtp_error)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # An internationalised address the server cannot take (no SMTPUTF8).
        return PermanentEmailError(f"server cannot carry this message: {exc}")
    # Disconnects, timeouts and other replies mid-transaction: try again later.
    return TemporaryEmailError(f"SMTP session with {url} failed: {_describe(exc)}")


def _log_refused(refused: dict) -> None:
    if refused:
        log.warning("SMTP server refused %d of the message's recipients", len(refused))


def _describe(exc: BaseException) -> str:
    """A short description of a connection-level failure."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {_reply(exc.smtp_code, exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
