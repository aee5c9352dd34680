"""DatabaseConfig validation, env parsing and secret masking."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from litestar_db import (
    ConfigurationError,
    ConnectionConfig,
    CredentialsConfig,
    Database,
    DatabaseConfig,
    DatabaseType,
    HealthConfig,
    PoolConfig,
    ReadWriteConfig,
    ReplicaConfig,
    RequestConfig,
)

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: PoolConfig(max_size=0), "pool.max_size"),
        (lambda: PoolConfig(min_size=-1), "pool.min_size"),
        (lambda: PoolConfig(min_size=30, max_size=20), "pool.min_size"),
        (lambda: PoolConfig(min_size=5, max_size=20, max_overflow=3), "pool.max_overflow"),
        (lambda: PoolConfig(timeout=0), "pool.timeout"),
        (lambda: PoolConfig(reset_on_return="sometimes"), "pool.reset_on_return"),  # type: ignore[arg-type]
        (lambda: DatabaseConfig(slow_query_seconds="abc"), "slow_query_seconds"),  # type: ignore[arg-type]
        (lambda: ConnectionConfig(port=70000), "connection.port"),
        (lambda: ConnectionConfig(port=0), "connection.port"),
        (lambda: ConnectionConfig(host=""), "connection.host"),
        (lambda: DatabaseConfig(type="oracle"), "type"),  # type: ignore[arg-type]
        (lambda: DatabaseConfig(url=f"mysql://app:{SECRET}@db/x"), "url"),
        (lambda: DatabaseConfig(url=f"postgresql://app:{SECRET}@db:notaport/x"), "url"),
        (lambda: DatabaseConfig(url="not a url at all"), "url"),
        (lambda: DatabaseConfig(url=f"postgresql://app:{SECRET}@db/x?connect_timeout=5"), "url"),
        (lambda: DatabaseConfig(url=f"postgresql://app:{SECRET}@db/x?options=-c%20search_path%3Dy"), "url"),
        (lambda: DatabaseConfig(url=f"postgresql://app:{SECRET}@db/x?sslmode=required"), "url"),
        (
            lambda: ReplicaConfig(url=f"postgresql://app:{SECRET}@replica/x?sslrootcert=/ca.pem"),
            "read_write.replicas.url",
        ),
        (lambda: DatabaseConfig(isolation_level="SOMETIMES"), "isolation_level"),
        (lambda: DatabaseConfig(statement_timeout=-1), "statement_timeout"),
        (lambda: DatabaseConfig(statement_timeout=0.0004), "statement_timeout"),  # would round to 0 ms: off
        (
            lambda: DatabaseConfig(url="postgresql://u@pgbouncer/d?pgbouncer=true", statement_timeout=5),
            "statement_timeout",
        ),
        (lambda: ReadWriteConfig(strategy="fastest"), "read_write.strategy"),  # type: ignore[arg-type]
        (lambda: ReplicaConfig(url="postgresql://r/db", weight=0), "read_write.replicas.weight"),
        (lambda: ReplicaConfig(url="sqlite:///replica.db"), "read_write.replicas.url"),
        (lambda: ReadWriteConfig(enable_read_write_split=True), "read_write.replicas"),
        (lambda: ReadWriteConfig(token_name="a;b"), "read_write.token_name"),
        (
            lambda: DatabaseConfig(statement_timeout=5, connection=ConnectionConfig(command_timeout=5)),
            "connection.command_timeout",
        ),
        (lambda: ReadWriteConfig(token_secret=""), "read_write.token_secret"),
        (lambda: HealthConfig(retry_after_seconds=2.5), "health.retry_after_seconds"),  # type: ignore[arg-type]
        (lambda: HealthConfig(path=None), "health.path"),  # type: ignore[arg-type]
        (lambda: DatabaseConfig(isolation_level=123), "isolation_level"),  # type: ignore[arg-type]
        (lambda: DatabaseConfig(url="postgresql://app@db/x", credentials=CredentialsConfig("app", SECRET)), "url"),
        (lambda: DatabaseConfig(url="postgresql://app@db/x", connection=ConnectionConfig(host="other")), "url"),
    ],
)
def test_invalid_field_names_field_and_hides_password(build: object, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert field in str(info.value)
    assert not str(info.value).rstrip().endswith(":")  # a reason always follows
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_password_never_in_repr_or_str() -> None:
    parts = DatabaseConfig(credentials=CredentialsConfig(username="app", password=SECRET))
    by_url = DatabaseConfig(url=f"postgresql://app:{SECRET}@db.internal:5432/app")
    for cfg in (parts, by_url, parts.credentials):
        assert SECRET not in repr(cfg)
        assert SECRET not in str(cfg)
    # ...while the engine URL still carries it.
    assert by_url.sqlalchemy_url().password == SECRET


def test_url_infers_type_and_driver() -> None:
    pg = DatabaseConfig(url="postgresql://u@h:6543/d?pgbouncer=true")
    assert pg.type is DatabaseType.POSTGRESQL
    assert pg.connection.pgbouncer is True
    url = pg.sqlalchemy_url()
    assert (url.drivername, url.port, url.database, dict(url.query)) == ("postgresql+asyncpg", 6543, "d", {})
    lite = DatabaseConfig(url="sqlite:///x.db")
    assert lite.type is DatabaseType.SQLITE
    assert lite.sqlalchemy_url().drivername == "sqlite+aiosqlite"


def test_accepted_forms_that_look_unusual() -> None:
    """Second breaker round: valid configurations the new checks refused."""
    DatabaseConfig(url="postgresql://app@/db?host=/cloudsql/project:region:instance")  # a Unix socket directory
    DatabaseConfig(url="postgresql://app@/db?host=a:5432&host=b:5432&target_session_attrs=read-write")
    DatabaseConfig(isolation_level="repeatable_read")  # SQLAlchemy's spelling
    DatabaseConfig(
        url="postgresql://app@db/x", read_write=ReadWriteConfig(replicas=(ReplicaConfig(url="postgresql://r/x"),))
    )


def test_read_only_methods_match_in_any_case() -> None:
    assert RequestConfig(read_only_methods=("get", "Head")).read_only_methods == ("GET", "HEAD")


def test_libpq_sslmode_becomes_asyncpgs_ssl() -> None:
    """The URL form hosting providers hand out (``?sslmode=require``) reaches asyncpg as ``ssl``, the same modes."""
    url = DatabaseConfig(url="postgresql://u@h/d?sslmode=verify-full&pgbouncer=true").sqlalchemy_url()
    assert dict(url.query) == {"ssl": "verify-full"}


def test_parts_build_asyncpg_url() -> None:
    cfg = DatabaseConfig(
        type=DatabaseType.POSTGRESQL,
        connection=ConnectionConfig(host="db", port=5433, database="app", application_name="svc"),
        credentials=CredentialsConfig(username="app", password="pw"),
    )
    url = cfg.sqlalchemy_url()
    assert (url.host, url.port, url.database, url.username, url.password) == ("db", 5433, "app", "app", "pw")


def test_from_env_reads_variables() -> None:
    cfg = DatabaseConfig.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@h/d",
            "DATABASE_POOL_SIZE": "7",
            "DATABASE_POOL_TIMEOUT": "2.5",
            "DATABASE_STATEMENT_TIMEOUT": "3",
            "DATABASE_APPLICATION_NAME": "svc",
            "DATABASE_REPLICA_URLS": "postgresql://u:p@r1/d, postgresql://u:p@r2/d",
        }
    )
    assert (cfg.pool.min_size, cfg.pool.max_size, cfg.pool.timeout) == (7, 17, 2.5)
    assert cfg.statement_timeout == 3
    assert cfg.connection.application_name == "svc"
    assert cfg.read_write.enable_read_write_split
    assert [r.name for r in cfg.read_write.replicas] == ["replica1", "replica2"]


def test_from_env_defaults_to_sqlite_file() -> None:
    assert DatabaseConfig.from_env({}).type is DatabaseType.SQLITE


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"DATABASE_POOL_SIZE": "many"}, "DATABASE_POOL_SIZE"),
        ({"DATABASE_POOL_SIZE": "0", "DATABASE_POOL_MAX_SIZE": "0"}, "DATABASE_POOL_MAX_SIZE"),
        ({"DATABASE_POOL_TIMEOUT": "-3"}, "DATABASE_POOL_TIMEOUT"),
        ({"DATABASE_ECHO": "maybe"}, "DATABASE_ECHO"),
        ({"DATABASE_URL": f"postgresql://u:{SECRET}@h:99999/d"}, "DATABASE_URL"),
        ({"DATABASE_REPLICA_URLS": f"postgresql://u:{SECRET}@r/d"}, "DATABASE_URL"),
        ({"DATABASE_STATEMENT_TIMEOUT": "0"}, "DATABASE_STATEMENT_TIMEOUT"),
        ({"DATABASE_URL": "postgresql://u@h/d", "DATABASE_REPLICA_URLS": "sqlite:///r.db"}, "DATABASE_REPLICA_URLS"),
    ],
)
def test_from_env_errors_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseConfig.from_env(env)
    assert info.value.field == field
    assert SECRET not in str(info.value)


def test_from_env_a_pool_cap_alone_keeps_the_pool_under_it() -> None:
    """Found by a breaker: DATABASE_POOL_MAX_SIZE=3 alone failed, naming DATABASE_POOL_SIZE, which was not set."""
    pool = DatabaseConfig.from_env({"DATABASE_POOL_MAX_SIZE": "3"}).pool
    assert (pool.min_size, pool.max_size) == (3, 3)


def test_read_write_split_requires_postgresql() -> None:
    with pytest.raises(ConfigurationError, match=r"read_write\.enable_read_write_split"):
        DatabaseConfig(
            url="sqlite:///x.db",
            read_write=ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url="postgresql://r/d"),)),
        )


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_a_url_with_sslmode_connects(pg_url: str, mode: str) -> None:
    """Found by a breaker: ``?sslmode=`` passed validation, then every connection failed with a TypeError."""
    db = Database(DatabaseConfig(url=f"{pg_url}?sslmode={mode}"))
    try:
        async with db.engine.connect() as conn:
            ssl = (await conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).scalar()
    finally:
        await db.dispose()
    assert ssl is False  # the test server has no certificate: both modes connect without TLS
