"""Environment-variable parsing for :meth:`DatabaseConfig.from_env` (kept apart to keep ``config`` small)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from litestar_db.config import (
    ConfigurationError,
    ConnectionConfig,
    MigrationConfig,
    PoolConfig,
    ReadWriteConfig,
    ReplicaConfig,
)

__all__ = ("DEFAULT_URL", "ENV_NAMES", "config_kwargs_from_env", "env_error")

DEFAULT_URL = "sqlite+aiosqlite:///db.sqlite3"
_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(raw)


def _get(env: Mapping[str, str], name: str, convert: Callable[[str], _T]) -> _T | None:
    raw = env.get(name)
    if raw is None:
        return None
    try:
        return convert(raw.strip())
    except ValueError:
        raise ConfigurationError(name, raw, f"cannot be read as {convert.__name__.lstrip('_')}") from None


def config_kwargs_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Translate ``DATABASE_*`` variables into :class:`~litestar_db.config.DatabaseConfig` keyword arguments.

    Returns:
        Keyword arguments for ``DatabaseConfig``.

    Raises:
        ConfigurationError: naming the variable whose value cannot be parsed or is out of range.
    """
    try:
        return _kwargs(env)
    except ConfigurationError as exc:
        raise env_error(exc, env) from None


def env_error(exc: ConfigurationError, env: Mapping[str, str]) -> ConfigurationError:
    """``exc`` naming the ``DATABASE_*`` variable the user set for its field; ``exc`` itself when none was set.

    Returns:
        The error to raise.
    """
    name = ENV_NAMES.get(exc.field)
    return exc if name is None or name not in env else ConfigurationError(name, exc.value, exc.reason)


def _kwargs(env: Mapping[str, str]) -> dict[str, Any]:
    raw_url = env.get("DATABASE_URL")
    if raw_url is not None and not raw_url.strip():
        # an empty value is a missing secret, not a request for the SQLite default
        raise ConfigurationError("DATABASE_URL", "", "is set but empty (unset it to use the SQLite default)")
    kwargs: dict[str, Any] = {"url": raw_url.strip() if raw_url is not None else DEFAULT_URL}
    pool: dict[str, Any] = {}
    for name, key, conv in (
        ("DATABASE_POOL_SIZE", "min_size", int),
        ("DATABASE_POOL_MAX_SIZE", "max_size", int),
        ("DATABASE_POOL_TIMEOUT", "timeout", float),
        ("DATABASE_POOL_RECYCLE", "recycle", float),
        ("DATABASE_POOL_PRE_PING", "pre_ping", _bool),
    ):
        value = _get(env, name, conv)
        if value is not None:
            pool[key] = value
    if "min_size" in pool and "max_size" not in pool:
        pool["max_size"] = pool["min_size"] + 10
    if "max_size" in pool and "min_size" not in pool:  # a cap alone: the pool keeps its default size under it
        pool["min_size"] = min(PoolConfig().min_size, pool["max_size"])
    if pool:
        kwargs["pool"] = PoolConfig(**pool)
    for name, key, conv in (
        ("DATABASE_ECHO", "echo", _bool),
        ("DATABASE_STATEMENT_TIMEOUT", "statement_timeout", float),
        ("DATABASE_SLOW_QUERY_SECONDS", "slow_query_seconds", float),
    ):
        value = _get(env, name, conv)
        if value is not None:
            kwargs[key] = value
    connection: dict[str, Any] = {}
    if app_name := env.get("DATABASE_APPLICATION_NAME"):
        connection["application_name"] = app_name
    command_timeout = _get(env, "DATABASE_COMMAND_TIMEOUT", float)
    if command_timeout is not None:
        connection["command_timeout"] = command_timeout
    if connection:
        kwargs["connection"] = ConnectionConfig(**connection)
    replica_urls = [u.strip() for u in (env.get("DATABASE_REPLICA_URLS") or "").split(",") if u.strip()]
    if replica_urls and raw_url is None:
        msg = "set DATABASE_URL to the PostgreSQL primary (the default is SQLite, which has no replicas)"
        raise ConfigurationError("DATABASE_URL", None, msg)
    if replica_urls:
        replicas = tuple(ReplicaConfig(url=u, name=f"replica{i}") for i, u in enumerate(replica_urls, start=1))
        secret = (env.get("DATABASE_TOKEN_SECRET") or "").strip() or None
        kwargs["read_write"] = ReadWriteConfig(enable_read_write_split=True, replicas=replicas, token_secret=secret)
    migrate = _get(env, "DATABASE_MIGRATE_ON_STARTUP", _bool)
    if migrate is not None:
        kwargs["migrations"] = MigrationConfig(migrate_on_startup=migrate)
    return kwargs


ENV_NAMES = {
    "pool.min_size": "DATABASE_POOL_SIZE",
    "pool.max_size": "DATABASE_POOL_MAX_SIZE",
    "pool.timeout": "DATABASE_POOL_TIMEOUT",
    "pool.recycle": "DATABASE_POOL_RECYCLE",
    "url": "DATABASE_URL",
    "statement_timeout": "DATABASE_STATEMENT_TIMEOUT",
    "slow_query_seconds": "DATABASE_SLOW_QUERY_SECONDS",
    "read_write.replicas.url": "DATABASE_REPLICA_URLS",
    "connection.command_timeout": "DATABASE_COMMAND_TIMEOUT",
}
"""Config field → the ``DATABASE_*`` variable that sets it (errors name the variable the user set)."""
