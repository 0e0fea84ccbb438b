"""Parse SMTP_URL once at start-up, so a typo fails the worker loudly instead of every send."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

#: scheme -> (security, default port)
SCHEMES = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
DEFAULT_TIMEOUT = 30.0
#: Seconds an idle session is kept for the next email: under the idle timeouts of common relays
#: (Postfix 300 s, most hosted ones 10 s or more), so a kept session is rarely one the server dropped.
DEFAULT_IDLE = 5.0


@dataclass(frozen=True)
class SmtpUrl:
    """Where and how to submit mail; the password never appears in repr()."""

    security: str  # "plain" | "starttls" | "tls"
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    idle: float = DEFAULT_IDLE  # 0: a new session for every email

    def __str__(self) -> str:
        """A loggable form of the URL, credentials left out."""
        scheme = next(s for s, (sec, _) in SCHEMES.items() if sec == self.security)
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{scheme}://{user}{host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpUrl:
    """Parse `smtp[+starttls]://` or `smtps://[user:pass@]host[:port][?timeout=S&idle=S]`."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("SMTP_URL is empty")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"SMTP_URL scheme must be one of {', '.join(SCHEMES)}, got {parts.scheme or 'none'!r}"
        )
    security, default_port = SCHEMES[scheme]
    host = parts.hostname
    if not host:
        raise ValueError("SMTP_URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP_URL port must be an integer between 1 and 65535") from None
    if port == 0:
        raise ValueError("SMTP_URL port must be an integer between 1 and 65535")
    if parts.path not in ("", "/"):
        raise ValueError(f"SMTP_URL must not have a path, got {parts.path!r}")
    if parts.fragment:
        raise ValueError("SMTP_URL must not have a fragment")
    username = password = None
    if parts.username is not None or parts.password is not None:
        if not parts.username:
            raise ValueError("SMTP_URL has a password but no user name")
        if parts.password is None:
            raise ValueError("SMTP_URL has a user name but no password (use user:password@)")
        username, password = unquote(parts.username), unquote(parts.password)
    options = _options(parts.query)
    return SmtpUrl(security, host, port or default_port, username, password, **options)


def _options(query: str) -> dict[str, float]:
    """The `timeout` and `idle` options in seconds; any other option is refused, not ignored."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"SMTP_URL query is malformed: {query!r}") from None
    options: dict[str, float] = {}
    for name, value in pairs:
        if name not in ("timeout", "idle"):
            raise ValueError(
                f"SMTP_URL has an unknown option {name!r} (only 'timeout' and 'idle' are known)"
            )
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        # A timeout of 0 would make every socket non-blocking; an idle of 0 turns reuse off.
        if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and name == "timeout"):
            kind = "a positive" if name == "timeout" else "a non-negative"
            raise ValueError(f"SMTP_URL {name} must be {kind} number of seconds, got {value!r}")
        options[name] = seconds
    return options
