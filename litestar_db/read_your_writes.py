"""Read-your-writes across requests: signed tokens carrying the primary's WAL position (LSN) after a commit.

After a request commits a write, the client receives a token holding ``pg_current_wal_lsn()`` read on the
primary after the commit, and an expiry. A later request presenting it reads from a replica only when that
replica has replayed the position (``pg_last_wal_replay_lsn()`` ≥ token LSN), else from the primary - GitLab's
load balancer does the same with its "sticky" WAL locations. Where no LSN can be read the token is a time window
(``sticky_seconds``, Rails' ``delay`` of its automatic role switching). Tokens are HMAC-SHA256 signed; a
tampered, truncated or expired token is ignored, never trusted and never an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ("ReadYourWrites", "TokenSigner", "format_lsn", "parse_lsn")


def parse_lsn(text: str | None) -> int | None:
    """PostgreSQL ``pg_lsn`` text (``"16/B374D848"``) to an integer byte position, ``None`` stays ``None``."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    """Integer byte position to PostgreSQL's ``pg_lsn`` text form."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


class ReadYourWrites:
    """A verified read-your-writes token: the primary's WAL position after the client's last write."""

    __slots__ = ("expires_at", "lsn")

    def __init__(self, lsn: int | None, expires_at: float) -> None:
        self.lsn = lsn
        """``pg_current_wal_lsn()`` after the commit, or ``None`` (then the whole lifetime reads the primary)."""
        self.expires_at = expires_at
        """Wall-clock (``time.time()``) expiry, seconds."""


class TokenSigner:
    """Issues and verifies read-your-writes tokens: ``<lsn hex or ->.<expiry ms>.<HMAC-SHA256, base64url>``.

    Args:
        secret: HMAC key (shared by every instance of the app).
        lsn_lifetime: Seconds an LSN token stays valid.
        sticky_seconds: Seconds a token without LSN keeps the client on the primary.
    """

    __slots__ = ("_secret", "lsn_lifetime", "sticky_seconds")

    def __init__(self, secret: bytes, lsn_lifetime: float, sticky_seconds: float) -> None:
        self._secret = secret
        self.lsn_lifetime = lsn_lifetime
        self.sticky_seconds = sticky_seconds

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, lsn: int | None, now: float | None = None) -> tuple[str, float]:
        """A signed token for ``lsn`` (``None``: time window only).

        Returns:
            ``(token, lifetime_seconds)``.
        """
        lifetime = self.lsn_lifetime if lsn is not None else self.sticky_seconds
        expires = int(((time.time() if now is None else now) + lifetime) * 1000)
        payload = f"{lsn:x}.{expires}" if lsn is not None else f"-.{expires}"
        return f"{payload}.{self._sign(payload)}", lifetime

    def verify(self, token: str | None, now: float | None = None) -> ReadYourWrites | None:
        """The token's content when its signature is valid and it has not expired; ``None`` otherwise.

        A tampered, truncated or expired token is ignored (never trusted, never an error).
        """
        if not token or len(token) > 200:
            return None
        payload, _, signature = token.rpartition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        lsn_text, _, expires_text = payload.partition(".")
        try:
            expires = int(expires_text) / 1000
            lsn = None if lsn_text == "-" else int(lsn_text, 16)
        except ValueError:
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return ReadYourWrites(lsn, expires)
