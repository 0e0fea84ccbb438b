"""Signing secrets at rest: Fernet tokens under BOOKING_WEBHOOKS_KEY.

The database holds only ciphertext, so a dump of it cannot forge a tenant's
signatures.  BOOKING_WEBHOOKS_KEY is one Fernet key or several, comma-separated:
the first encrypts, every one decrypts (MultiFernet), which is how the key
itself is rotated without re-entering any endpoint.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeyMissing(RuntimeError):
    """BOOKING_WEBHOOKS_KEY is not set: webhooks cannot store or read a secret."""


def new_key() -> str:
    """A fresh Fernet key (for bookingctl's data directory and the tests)."""
    return Fernet.generate_key().decode()


class Sealer:
    """Encrypts and decrypts signing secrets with the configured keys."""

    def __init__(self, keys: list[str]):
        self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None

    def _need(self) -> MultiFernet:
        if self._fernet is None:
            raise KeyMissing("BOOKING_WEBHOOKS_KEY is not set")
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._need().encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        """The secret in `token`; ValueError when no configured key opens it."""
        try:
            return self._need().decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("a signing secret was sealed with a key BOOKING_WEBHOOKS_KEY no longer holds") from None
