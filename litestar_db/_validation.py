"""Validation helpers of :mod:`litestar_db.config` (field checks, URL parsing and masking)."""

from __future__ import annotations

from advanced_alchemy.exceptions import ImproperConfigurationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ("ConfigurationError", "check", "driver_url", "mask_url", "parse_url", "positive")


class ConfigurationError(ImproperConfigurationError, ValueError):
    """A configuration value is invalid.

    Raised at construction time (never at first use). ``field`` is the dotted name of the offending field
    (``"pool.max_size"``, ``"url"``, ``"DATABASE_POOL_SIZE"``); the message never contains a password.

    Args:
        field: Dotted field name, or the environment variable that carried the value.
        value: The rejected value (already masked by the caller when it may hold a secret).
        reason: What is wrong, in a few words.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"invalid {field}={value!r}: {reason}")


def check(ok: bool, field_name: str, value: object, reason: str) -> None:
    if not ok:
        raise ConfigurationError(field_name, value, reason)


def positive(value: float | None, field_name: str, *, allow_zero: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    check(ok, field_name, value, "must be >= 0" if allow_zero else "must be > 0")


def parse_url(raw: str, field_name: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigurationError(field_name, mask_url(raw), "not a database URL") from None
    port = url.port
    check(port is None or 1 <= port <= 65535, field_name, mask_url(raw), "port must be between 1 and 65535")
    backend = url.get_backend_name()
    check(
        backend in ("postgresql", "postgres", "sqlite"),
        field_name,
        mask_url(raw),
        "scheme must be postgresql or sqlite",
    )
    return url


def mask_url(raw: str) -> str:
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except Exception:  # unparseable: show nothing that may hold a secret
        return "<unparseable URL>"


def driver_url(url: URL) -> URL:
    query = {k: v for k, v in url.query.items() if k != "pgbouncer"}
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite", query=query)
    return url.set(drivername="postgresql+asyncpg", query=query)
