"""Validation helpers of :mod:`litestar_db.config` (field checks, URL parsing and masking)."""

from __future__ import annotations

from advanced_alchemy.exceptions import ImproperConfigurationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ("ConfigurationError", "check", "driver_url", "is_token", "mask_url", "parse_url", "positive")

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


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
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


def check(ok: bool, field_name: str, value: object, reason: str) -> None:
    if not ok:
        raise ConfigurationError(field_name, value, reason)


def is_token(value: object) -> bool:
    """Whether ``value`` is an RFC 9110 token (what a cookie or header name must be)."""
    return isinstance(value, str) and value != "" and all(c in _TCHAR for c in value)


def positive(value: float | None, field_name: str, *, allow_zero: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    check(ok, field_name, value, "must be a number >= 0" if allow_zero else "must be a number > 0")


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
    if backend != "sqlite":
        _check_postgresql_query(url, field_name, raw)
    return url


# Query parameters SQLAlchemy's asyncpg dialect passes on as asyncpg.connect() keywords (and litestar_db's own
# ``pgbouncer``); ``sslmode`` (libpq's name, in the URLs hosting providers hand out) is passed on as ``ssl``.
_ASYNCPG_QUERY = frozenset(
    {
        "ssl",
        "sslmode",
        "pgbouncer",
        "host",  # a Unix socket directory (?host=/cloudsql/...) or SQLAlchemy's multi-host form (?host=a:1&host=b:2)
        "prepared_statement_cache_size",
        "target_session_attrs",
        "direct_tls",
        "passfile",
    }
)
_SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_LIBPQ_HINTS = {
    "connect_timeout": "connection.connect_timeout",
    "application_name": "connection.application_name",
    "options": "statement_timeout, or ALTER ROLE … SET for other settings",
}


def _check_postgresql_query(url: URL, field_name: str, raw: str) -> None:
    """Refuse what asyncpg would only reject at the first connection (every request a 500)."""
    for key, value in url.query.items():
        if key not in _ASYNCPG_QUERY:
            hint = _LIBPQ_HINTS.get(key)
            where = f"; use {hint}" if hint else ""
            reason = f"query parameter {key!r} is a libpq option that asyncpg does not take{where}"
            raise ConfigurationError(field_name, mask_url(raw), reason)
        if key in ("ssl", "sslmode"):
            check(
                value in _SSL_MODES,
                field_name,
                mask_url(raw),
                f"{key} must be one of {', '.join(sorted(_SSL_MODES))}",
            )


def mask_url(raw: str) -> str:
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except Exception:  # unparseable: show nothing that may hold a secret
        return "<unparseable URL>"


def driver_url(url: URL) -> URL:
    query = {k: v for k, v in url.query.items() if k != "pgbouncer"}
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite", query=query)
    if "sslmode" in query:  # libpq's name; asyncpg's is ssl, with the same modes
        query.setdefault("ssl", query.pop("sslmode"))
        query.pop("sslmode", None)
    return url.set(drivername="postgresql+asyncpg", query=query)
