"""Configuration for litestar_db: one :class:`DatabaseConfig` object and its parts.

Every part is a frozen stdlib dataclass validated at construction. A wrong value raises a single
:class:`ConfigurationError` whose message names the field (``pool.max_size``) and the bad value; the
password is never part of a ``repr``, a ``str`` or an error message.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy.engine import URL

from litestar_db._config_checks import check_database, check_health, check_read_write
from litestar_db._validation import ConfigurationError, check, driver_url, mask_url, parse_url, positive

__all__ = (
    "ConfigurationError",
    "ConnectionConfig",
    "CredentialsConfig",
    "DatabaseConfig",
    "DatabaseType",
    "HealthConfig",
    "MigrationConfig",
    "PoolConfig",
    "ReadWriteConfig",
    "ReplicaConfig",
    "RequestConfig",
)

RoutingStrategy = Literal["round_robin", "random", "least_lag"]


class DatabaseType(str, enum.Enum):
    """The database backend; selects the async driver (asyncpg or aiosqlite)."""

    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Where the database is (PostgreSQL) or which file it is (SQLite)."""

    host: str = "localhost"
    """Server host name or address (PostgreSQL)."""
    port: int = 5432
    """Server TCP port, 1-65535 (PostgreSQL)."""
    database: str = "postgres"
    """Database name (PostgreSQL) or file path (SQLite; ``":memory:"`` for an in-memory database)."""
    application_name: str | None = None
    """Reported in ``pg_stat_activity.application_name``; defaults to ``"litestar_db"``."""
    connect_timeout: float = 10.0
    """Seconds to wait for a new server connection before giving up."""
    command_timeout: float | None = None
    """Client-side bound of every call, in seconds (asyncpg's ``command_timeout``): a server that stops answering
    (a frozen host, a network blackhole, where no server-side timeout fires) is answered 503 instead of hanging.
    Set it above ``statement_timeout`` and above any timeout a route raises with ``SET LOCAL``; ``None``: no bound."""
    pgbouncer: bool = False
    """Set when connecting through PgBouncer in transaction mode: disables asyncpg's prepared statement caches
    and gives each prepared statement a unique name (also ``?pgbouncer=true`` in a URL)."""

    def __post_init__(self) -> None:
        check(
            isinstance(self.host, str) and bool(self.host), "connection.host", self.host, "must be a non-empty string"
        )
        ok_port = isinstance(self.port, int) and not isinstance(self.port, bool) and 1 <= self.port <= 65535
        check(ok_port, "connection.port", self.port, "must be an integer between 1 and 65535")
        check(isinstance(self.database, str) and bool(self.database), "connection.database", self.database, "empty")
        positive(self.connect_timeout, "connection.connect_timeout")
        positive(self.command_timeout, "connection.command_timeout", optional=True)


@dataclass(frozen=True, slots=True)
class CredentialsConfig:
    """Login for PostgreSQL. The password is excluded from ``repr`` and from every message."""

    username: str | None = None
    """Role name; ``None`` uses the driver's default (the OS user)."""
    password: str | None = field(default=None, repr=False)
    """Password; never printed."""

    def __repr__(self) -> str:
        masked = "'***'" if self.password else "None"
        return f"CredentialsConfig(username={self.username!r}, password={masked})"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Connection pool (SQLAlchemy ``QueuePool``) settings.

    ``min_size`` connections are kept open (SQLAlchemy's ``pool_size``); up to ``max_size`` exist at once, so
    ``max_overflow`` is ``max_size - min_size`` unless given (and then it must agree).
    """

    min_size: int = 5
    """Connections kept open in the pool (SQLAlchemy ``pool_size``)."""
    max_size: int = 15
    """Upper bound of open connections, overflow included."""
    max_overflow: int | None = None
    """Connections allowed above ``min_size``; derived from ``max_size`` when ``None``."""
    timeout: float = 30.0
    """Seconds a checkout waits for a free connection before failing (503 in a request)."""
    recycle: float = 3600.0
    """Seconds after which a connection is replaced at its next checkout; ``-1`` disables."""
    pre_ping: bool = True
    """Test each connection at checkout and replace it if the server dropped it."""
    reset_on_return: Literal["rollback", "commit"] | None = "rollback"
    """What the pool does to a connection given back (always ``rollback`` unless you know why)."""
    echo_pool: bool = False
    """Log pool checkouts and checkins."""

    def __post_init__(self) -> None:
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if name == "min_size" else 1)
            check(ok, f"pool.{name}", value, "must be an integer >= " + ("0" if name == "min_size" else "1"))
        check(self.min_size <= self.max_size, "pool.min_size", self.min_size, f"exceeds max_size={self.max_size}")
        if self.max_overflow is not None:
            expected = self.max_size - self.min_size
            check(self.max_overflow == expected, "pool.max_overflow", self.max_overflow, f"must be {expected}")
        positive(self.timeout, "pool.timeout")
        ok_recycle = isinstance(self.recycle, int | float) and (self.recycle == -1 or self.recycle > 0)
        check(ok_recycle, "pool.recycle", self.recycle, "must be > 0 seconds or -1")
        check(
            self.reset_on_return in ("rollback", "commit", None),
            "pool.reset_on_return",
            self.reset_on_return,
            "must be 'rollback', 'commit' or None",
        )

    @property
    def overflow(self) -> int:
        """Connections allowed above ``min_size``."""
        return self.max_size - self.min_size


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """One PostgreSQL streaming replica (hot standby) used for reads."""

    url: str | None = field(default=None, repr=False)
    """``postgresql://user:pass@host:port/db``; alternatively give ``connection``/``credentials``."""
    connection: ConnectionConfig | None = None
    """Connection parts; defaults to the primary's credentials when ``credentials`` is ``None``."""
    credentials: CredentialsConfig | None = None
    """Login for this replica; the primary's when ``None``."""
    name: str | None = None
    """Label used in stats, health and metrics; defaults to ``replica<N>``."""
    weight: int = 1
    """Relative share of reads (3 and 1 give a 3:1 split)."""
    pool: PoolConfig | None = None
    """Pool settings for this replica; the primary's when ``None``."""

    def __post_init__(self) -> None:
        check(
            (self.url is None) != (self.connection is None), "read_write.replicas", self.name, "give url or connection"
        )
        ok = isinstance(self.weight, int) and not isinstance(self.weight, bool) and self.weight >= 1
        check(ok, "read_write.replicas.weight", self.weight, "must be an integer >= 1")
        if self.url is not None:
            backend = parse_url(self.url, "read_write.replicas.url").get_backend_name()
            check(
                backend != "sqlite", "read_write.replicas.url", mask_url(self.url), "a replica is a PostgreSQL standby"
            )


@dataclass(frozen=True, slots=True)
class ReadWriteConfig:
    """Read/write split: reads go to replicas, writes to the primary (Rails' automatic role switching)."""

    enable_read_write_split: bool = False
    """Route reads to replicas; when ``False`` everything uses the primary."""
    replicas: tuple[ReplicaConfig, ...] = ()
    """The replicas; each gets its own pool."""
    strategy: RoutingStrategy = "round_robin"
    """How a replica is chosen among the healthy ones (weights apply to ``round_robin`` and ``random``)."""
    max_lag_seconds: float | None = 30.0
    """A replica whose replay lag exceeds this (seconds) is ejected; ``None`` disables the check."""
    max_lag_bytes: int | None = None
    """A replica more than this many bytes of WAL behind is ejected; ``None`` disables the check."""
    sticky_seconds: float = 5.0
    """After a write, the client reads from the primary for this long where WAL positions are unavailable."""
    failure_cooldown_seconds: float = 30.0
    """Seconds an ejected replica stays out of rotation before it is probed again."""
    fallback_to_primary: bool = True
    """Read from the primary when no replica is healthy (else raise ``DatabaseUnavailableError``)."""
    monitor_interval_seconds: float = 2.0
    """Seconds between lag/health probes of each replica."""
    token_transport: Literal["cookie", "header"] = "cookie"  # noqa: S105
    """How the read-your-writes token travels to the client."""
    token_name: str = "litestar-db-lsn"  # noqa: S105
    """Cookie or header name of the read-your-writes token."""
    token_secret: str | None = field(default=None, repr=False)
    """HMAC key signing the token; random per process when ``None`` (set it when running several instances)."""

    def __post_init__(self) -> None:
        check_read_write(self)


@dataclass(frozen=True, slots=True)
class RequestConfig:
    """The request transaction (Django's ``ATOMIC_REQUESTS``) applied by the Litestar plugin."""

    autocommit: bool = True
    """Commit the request's session when the response is a success; opt out per route with ``opt``."""
    commit_on_redirect: bool = False
    """Also commit on 3xx responses."""
    session_dependency_key: str = "db_session"
    """Name under which handlers receive the request's ``AsyncSession``."""
    engine_dependency_key: str = "db_engine"
    """Name under which handlers receive the primary ``AsyncEngine``."""
    read_only_methods: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
    """Requests with these methods may read from replicas (when the split is enabled)."""
    lazy_begin: bool = True
    """Requests with ``read_only_methods`` run plain reads without ``BEGIN``/``COMMIT`` and open the transaction at
    their first write (see :mod:`litestar_db.lazy_begin`); only when the default isolation level is READ COMMITTED."""

    def __post_init__(self) -> None:
        methods = self.read_only_methods
        ok = not isinstance(methods, str) and all(isinstance(m, str) for m in methods)
        check(ok, "request.read_only_methods", methods, "must be a tuple of HTTP method names")
        object.__setattr__(self, "read_only_methods", tuple(m.upper() for m in methods))  # "get" matches GET


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """The health controller (``/health/live``, ``/health/ready``) and probe behaviour."""

    enabled: bool = True
    """Register the health controller."""
    path: str = "/health"
    """Base path of the controller."""
    cache_seconds: float = 1.0
    """Probe results are reused for this many seconds so probe floods don't load the database."""
    probe_timeout_seconds: float = 1.0
    """Time budget for one engine's probe (seconds)."""
    retry_after_seconds: int = 5
    """``Retry-After`` sent with a 503 from readiness or a request that found the database unavailable."""
    fail_on_pending_migrations: bool = True
    """Readiness answers 503 while the schema is behind the migration head."""
    show_details: Literal["always", "never", "authenticated"] | Callable[[Any], bool] = "authenticated"
    """Who sees detail fields (locations, pool figures, measurements) in ``/health/ready``: ``"authenticated"``
    shows them when the app's authentication middleware set ``request.user`` (Spring Boot Actuator's
    ``show-details``), or a predicate receiving the request. Credentials and URLs are never shown."""
    guards: tuple[Callable[..., Any], ...] = ()
    """Litestar guards applied to both health routes (e.g. to keep them on an internal network)."""

    def __post_init__(self) -> None:
        check_health(self)


@dataclass(frozen=True, slots=True)
class MigrationConfig:
    """Alembic settings used by ``litestar database …`` and ``Database.migrations``."""

    script_location: str = "migrations"
    """Directory holding Alembic's ``env.py`` and ``versions/``."""
    version_table_name: str = "alembic_version"
    """Table recording the applied revision."""
    migrate_on_startup: bool = False
    """Upgrade to head (under the migration lock) before the app serves."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """The one configuration object of litestar_db.

    Either give ``url`` (``postgresql://…`` or ``sqlite:///file.db``) or the parts (``type``, ``connection``,
    ``credentials``). Construction validates every field.

    Raises:
        ConfigurationError: naming the first invalid field and its (masked) value.
    """

    type: DatabaseType = DatabaseType.POSTGRESQL
    """Backend; inferred from ``url`` when a URL is given."""
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    """Host, port, database and connection options."""
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    """Username and password."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    """Primary pool settings (replicas inherit them unless they set their own)."""
    read_write: ReadWriteConfig = field(default_factory=ReadWriteConfig)
    """Read-replica routing."""
    url: str | None = field(default=None, repr=False)
    """Shortcut for the parts above; its password is never printed."""
    echo: bool = False
    """Log every SQL statement (SQLAlchemy ``echo``)."""
    statement_timeout: float | None = None
    """PostgreSQL ``statement_timeout`` in seconds (at least 0.001) for every session; ``None`` keeps the server
    default. Not with PgBouncer, which does not pass startup parameters on (set it per role there). A server that
    stops answering is bounded by ``connection.command_timeout`` instead."""
    isolation_level: str | None = None
    """Default isolation level of every transaction (``"READ COMMITTED"``, ``"SERIALIZABLE"``, …)."""
    slow_query_seconds: float = 0.5
    """Statements slower than this count as slow in the stats."""
    statement_stats: bool = True
    """Count statements, errors, slow queries, commits and rollbacks (the dialect's execution hooks, a few
    microseconds of CPU per request; see :mod:`litestar_db.instrument`); pool figures are kept either way."""
    request: RequestConfig = field(default_factory=RequestConfig)
    """The Litestar request transaction."""
    health: HealthConfig = field(default_factory=HealthConfig)
    """Health controller and probes."""
    migrations: MigrationConfig = field(default_factory=MigrationConfig)
    """Alembic migrations."""

    def __post_init__(self) -> None:
        if not isinstance(self.type, DatabaseType):
            try:
                object.__setattr__(self, "type", DatabaseType(str(self.type).lower()))
            except ValueError:
                raise ConfigurationError("type", self.type, "must be postgresql or sqlite") from None
        if self.url is not None:
            url = parse_url(self.url, "url")
            pgbouncer = str(url.query.get("pgbouncer", "")).lower()
            inferred = DatabaseType.SQLITE if url.get_backend_name() == "sqlite" else DatabaseType.POSTGRESQL
            object.__setattr__(self, "type", inferred)
            if pgbouncer in ("1", "true", "yes", "on"):
                object.__setattr__(self, "connection", replace(self.connection, pgbouncer=True))
        check_database(self)

    def __repr__(self) -> str:
        where = mask_url(self.url) if self.url else f"{self.connection.host}:{self.connection.port}"
        return f"DatabaseConfig(type={self.type.value!r}, database={where!r}, pool={self.pool!r})"

    __str__ = __repr__

    @property
    def is_postgresql(self) -> bool:
        """Whether the backend is PostgreSQL."""
        return self.type is DatabaseType.POSTGRESQL

    def sqlalchemy_url(self) -> URL:
        """The primary's SQLAlchemy URL with the async driver (``postgresql+asyncpg``/``sqlite+aiosqlite``).

        Returns:
            A :class:`sqlalchemy.engine.URL`; render it with ``hide_password=True`` before showing it.
        """
        if self.url is not None:
            return driver_url(parse_url(self.url, "url"))
        if self.type is DatabaseType.SQLITE:
            return URL.create("sqlite+aiosqlite", database=self.connection.database)
        return _asyncpg_url(self.connection, self.credentials)

    def replica_url(self, replica: ReplicaConfig) -> URL:
        """The SQLAlchemy URL of ``replica`` (credentials default to the primary's).

        Returns:
            A :class:`sqlalchemy.engine.URL` using ``postgresql+asyncpg``.
        """
        if replica.url is not None:
            return driver_url(parse_url(replica.url, "read_write.replicas.url"))
        primary = self.sqlalchemy_url()
        creds = replica.credentials or CredentialsConfig(primary.username, primary.password)
        return _asyncpg_url(replica.connection or self.connection, creds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DatabaseConfig:
        """Build a config from environment variables (12-factor style).

        Reads ``DATABASE_URL`` (default ``sqlite+aiosqlite:///db.sqlite3``), ``DATABASE_POOL_SIZE`` (min_size),
        ``DATABASE_POOL_MAX_SIZE``, ``DATABASE_POOL_TIMEOUT`` (seconds), ``DATABASE_POOL_RECYCLE`` (seconds),
        ``DATABASE_POOL_PRE_PING``, ``DATABASE_ECHO``, ``DATABASE_STATEMENT_TIMEOUT`` (seconds),
        ``DATABASE_COMMAND_TIMEOUT`` (seconds), ``DATABASE_APPLICATION_NAME``, ``DATABASE_REPLICA_URLS``
        (comma-separated; enables the split),
        ``DATABASE_TOKEN_SECRET`` (the read-your-writes key; set the same value in every worker) and
        ``DATABASE_MIGRATE_ON_STARTUP``. Values are stripped; an empty ``DATABASE_URL`` is an error.

        Args:
            environ: Mapping to read instead of ``os.environ``.
            **overrides: Fields of :class:`DatabaseConfig` that win over the environment.

        Returns:
            The validated config.

        Raises:
            ConfigurationError: naming the environment variable whose value is invalid.
        """
        env = os.environ if environ is None else environ
        from litestar_db._env import config_kwargs_from_env, env_error

        kwargs = config_kwargs_from_env(env)
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except ConfigurationError as exc:
            if exc.field.split(".", 1)[0] in overrides:  # the override's value, not the environment's
                raise
            raise env_error(exc, env) from None


def _asyncpg_url(connection: ConnectionConfig, credentials: CredentialsConfig) -> URL:
    return URL.create(
        "postgresql+asyncpg",
        username=credentials.username,
        password=credentials.password,
        host=connection.host,
        port=connection.port,
        database=connection.database,
    )
