"""Validation of the split, health and cross-field database settings (kept out of :mod:`litestar_db.config`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar_db._validation import ConfigurationError, check, is_token, mask_url, positive

if TYPE_CHECKING:
    from litestar_db.config import DatabaseConfig, HealthConfig, ReadWriteConfig

__all__ = ("ISOLATION_LEVELS", "check_database", "check_health", "check_read_write", "normal_level")

ISOLATION_LEVELS = frozenset(
    {"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE", "AUTOCOMMIT"},
)
"""Isolation level names accepted by ``DatabaseConfig.isolation_level`` and route ``opt`` (upper case)."""


def normal_level(level: str) -> str:
    """``level`` as SQLAlchemy reads it: upper case, ``_`` for a space (``"repeatable_read"`` is REPEATABLE READ)."""
    return level.upper().replace("_", " ")


def check_read_write(config: ReadWriteConfig) -> None:
    """Validate a :class:`~litestar_db.config.ReadWriteConfig` (normalising ``replicas`` to a tuple).

    Raises:
        ConfigurationError: naming the offending field.
    """
    from litestar_db.config import ReplicaConfig  # config imports this module

    replicas = tuple(config.replicas)
    object.__setattr__(config, "replicas", replicas)
    for item in replicas:
        check(isinstance(item, ReplicaConfig), "read_write.replicas", item, "items must be ReplicaConfig")
    ok_strategy = config.strategy in ("round_robin", "random", "least_lag")
    check(ok_strategy, "read_write.strategy", config.strategy, "must be round_robin, random or least_lag")
    positive(config.max_lag_seconds, "read_write.max_lag_seconds", optional=True)
    positive(config.max_lag_bytes, "read_write.max_lag_bytes", optional=True)
    positive(config.sticky_seconds, "read_write.sticky_seconds", allow_zero=True)
    positive(config.failure_cooldown_seconds, "read_write.failure_cooldown_seconds", allow_zero=True)
    positive(config.monitor_interval_seconds, "read_write.monitor_interval_seconds")
    transport = config.token_transport
    check(transport in ("cookie", "header"), "read_write.token_transport", transport, "cookie or header")
    names = [r.name for r in replicas if r.name]
    check(len(names) == len(set(names)), "read_write.replicas.name", names, "names must be unique")
    split, n = config.enable_read_write_split, len(replicas)
    check(not split or n > 0, "read_write.replicas", n, "the read/write split needs at least one replica")
    check(is_token(config.token_name), "read_write.token_name", config.token_name, "must be a cookie/header name")
    secret = config.token_secret
    check(secret is None or (isinstance(secret, str) and secret != ""), "read_write.token_secret", "***", "empty")


def check_health(config: HealthConfig) -> None:
    """Validate a :class:`~litestar_db.config.HealthConfig` (normalising ``guards`` to a tuple).

    Raises:
        ConfigurationError: naming the offending field.
    """
    check(isinstance(config.path, str) and config.path.startswith("/"), "health.path", config.path, "must start with /")
    details = config.show_details
    ok = callable(details) or details in ("always", "never", "authenticated")
    check(ok, "health.show_details", details, "must be always, never, authenticated or a predicate")
    object.__setattr__(config, "guards", tuple(config.guards))
    check(all(callable(g) for g in config.guards), "health.guards", config.guards, "items must be callables")
    positive(config.cache_seconds, "health.cache_seconds", allow_zero=True)
    positive(config.probe_timeout_seconds, "health.probe_timeout_seconds")
    positive(config.retry_after_seconds, "health.retry_after_seconds")
    retry = config.retry_after_seconds
    check(isinstance(retry, int), "health.retry_after_seconds", retry, "whole seconds (Retry-After)")


def check_database(config: DatabaseConfig) -> None:
    """Validate the fields of a :class:`~litestar_db.config.DatabaseConfig` that depend on each other.

    Raises:
        ConfigurationError: naming the offending field.
    """
    from litestar_db.config import CredentialsConfig, DatabaseType

    positive(config.statement_timeout, "statement_timeout", optional=True)
    timeout = config.statement_timeout
    check(timeout is None or timeout >= 0.001, "statement_timeout", timeout, "below 1 ms, PostgreSQL's unit")
    if timeout is not None and config.connection.pgbouncer:
        # sent as a startup parameter, which PgBouncer drops (ignore_startup_parameters) or refuses
        reason = "PgBouncer does not pass it on; set it per role (ALTER ROLE … SET statement_timeout)"
        raise ConfigurationError("statement_timeout", timeout, reason)
    positive(config.slow_query_seconds, "slow_query_seconds", allow_zero=True)
    command = config.connection.command_timeout
    if command is not None and timeout is not None:
        check(command > timeout, "connection.command_timeout", command, "must exceed statement_timeout")
    level = config.isolation_level
    ok_level = level is None or (isinstance(level, str) and normal_level(level) in ISOLATION_LEVELS)
    check(ok_level, "isolation_level", level, "unknown isolation level")
    if config.url is not None:  # the parts the URL replaces would be silently ignored
        parts = config.credentials != CredentialsConfig() or (
            config.connection.host,
            config.connection.port,
            config.connection.database,
        ) != ("localhost", 5432, "postgres")
        check(not parts, "url", mask_url(config.url), "give url or connection/credentials parts, not both")
    if config.read_write.enable_read_write_split and config.type is not DatabaseType.POSTGRESQL:
        raise ConfigurationError("read_write.enable_read_write_split", True, "replicas need PostgreSQL")
