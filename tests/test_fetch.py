"""Session-free reads (``Database.fetch_all`` / ``fetch_one`` / ``scalar``, :mod:`litestar_db.fetch`).

A statement read for the first time runs through SQLAlchemy Core on an autocommit connection; the same statement
object read again runs on the asyncpg connection directly. Both must give what an ORM session gives, send no
BEGIN, translate errors and keep the pool healthy. On SQLite every read runs in a session.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Enum,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    TypeDecorator,
    Uuid,
    bindparam,
    column,
    delete,
    event,
    func,
    insert,
    lambda_stmt,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from litestar_db import (
    Database,
    DatabaseConfig,
    DatabaseError,
    PoolConfig,
    ReadOnlyError,
    ReadWriteConfig,
    ReplicaConfig,
)
from litestar_db.errors import DatabaseUnavailableError
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests.conftest import pg_execute


class Base(DeclarativeBase):
    pass


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Upper(TypeDecorator[str]):
    """Result processing in Python: the driver path must not skip it."""

    impl = String
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()


class Thing(Base):
    __tablename__ = "thing"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    price: Mapped[float] = mapped_column(Numeric(10, 2, asdecimal=False))
    exact: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2))
    color: Mapped[Color] = mapped_column(Enum(Color))
    shout: Mapped[str] = mapped_column(Upper(50))
    doc: Mapped[dict[str, Any]] = mapped_column(JSON)
    ref: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


class ThingOut(msgspec.Struct):
    id: int
    name: str


BY_ID = select(Thing.id, Thing.name).where(Thing.id == bindparam("id"))
EVERYTHING = select(
    Thing.id, Thing.name, Thing.price, Thing.exact, Thing.color, Thing.shout, Thing.doc, Thing.ref, Thing.at
).order_by(Thing.id)
BY_IDS = select(Thing.id).where(Thing.id.in_(bindparam("ids", expanding=True))).order_by(Thing.id)
RAW = text("SELECT id, name FROM thing WHERE id > :after ORDER BY id")
COUNT = select(func.count()).select_from(Thing)
LABELLED = select(Thing.id.label("x"), Thing.id + 1, func.lower(Thing.name)).order_by(Thing.id)
ELSEWHERE = Table("thing", MetaData(), Column("id", BigInteger), Column("name", String(50)), schema="elsewhere")
TRANSLATED = (  # SQLAlchemy maps the schema at execution: compiled once without it, the SQL would be wrong
    select(ELSEWHERE.c.id, ELSEWHERE.c.name)
    .where(ELSEWHERE.c.id == bindparam("id"))
    .execution_options(schema_translate_map={"elsewhere": None})
)
THINGS = Thing.__table__
LITERAL = select(Thing.id).where(Thing.id == bindparam("id", literal_execute=True))  # rendered into the SQL per call
CORE_KEYS = select(func.count(), THINGS.c.id + 1, literal(1), THINGS.c.id).group_by(THINGS.c.id).order_by(THINGS.c.id)
TEXT_COLUMNS = select(text("id AS ident"), text("name AS label")).select_from(THINGS).order_by(text("ident"))
STAR = select(literal_column("*")).select_from(THINGS).order_by(THINGS.c.id)
MISSING_TABLE = text("SELECT * FROM no_such_table")
PID = text("SELECT pg_backend_pid()")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=db_url, pool=PoolConfig(min_size=1, max_size=1, pre_ping=False)))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    rows = [
        {
            "id": i,
            "name": f"n{i}",
            "price": 1.5 * i,
            "exact": decimal.Decimal(i) / 4,
            "color": Color.red if i % 2 else Color.blue,
            "shout": f"s{i}",
            "doc": {"i": i, "tags": ["a"]},
            "ref": str(uuid.UUID(int=i)),
            "at": datetime.datetime(2026, 1, i, tzinfo=datetime.UTC),
        }
        for i in range(1, 6)
    ]
    async with database.transaction() as sess:
        await sess.execute(insert(Thing), rows)
    try:
        yield database
    finally:
        await database.dispose()


CASES: list[tuple[Any, dict[str, Any] | None]] = [
    (BY_ID, {"id": 3}),
    (EVERYTHING, None),
    (BY_IDS, {"ids": [2, 4]}),
    (RAW, {"after": 2}),
    (COUNT, None),
    (LABELLED, None),
    (TRANSLATED, {"id": 2}),
    (LITERAL, {"id": 2}),
    (CORE_KEYS, None),
    (TEXT_COLUMNS, None),
    (STAR, None),
]


@pytest.mark.parametrize(
    ("statement", "params"),
    CASES,
    ids=[
        "bindparam",
        "types",
        "in",
        "text",
        "count",
        "labels",
        "schema",
        "literal-execute",
        "core-keys",
        "text-columns",
        "star",
    ],
)
async def test_every_read_path_gives_what_a_session_gives(
    db: Database, statement: Any, params: dict[str, Any] | None
) -> None:
    async with db.session() as sess:
        expected = [dict(row) for row in (await sess.execute(statement, params)).mappings()]
    # first read: SQLAlchemy Core; then the same object again: the driver path where the types allow it
    got = [await db.fetch_all(statement, params) for _ in range(3)]
    assert expected  # the case reads something
    assert got == [expected] * 3
    assert await db.fetch_one(statement, params) == expected[0]
    assert await db.scalar(statement, params) == next(iter(expected[0].values()))


async def test_into_builds_structs_positionally_or_by_name(db: Database) -> None:
    class Reordered(msgspec.Struct, kw_only=True):
        name: str
        id: int

    for _ in range(2):
        assert await db.fetch_one(BY_ID, {"id": 2}, into=ThingOut) == ThingOut(id=2, name="n2")
        assert await db.fetch_all(RAW, {"after": 3}, into=Reordered) == [
            Reordered(id=4, name="n4"),
            Reordered(id=5, name="n5"),
        ]
    assert await db.fetch_one(BY_ID, {"id": 99}, into=ThingOut) is None


async def test_writes_are_refused_and_change_nothing(db: Database) -> None:
    with pytest.raises(ReadOnlyError):
        await db.fetch_all(text("INSERT INTO thing (id, name) VALUES (100, 'x') RETURNING id"))
    assert await db.scalar(COUNT) == 5


async def test_writes_hidden_in_a_read_are_refused_and_change_nothing(db: Database) -> None:
    # found by a breaker: a DML CTE below the columns, a literal hiding code, nextval() in WHERE ran and committed
    things = Thing.__table__
    gone = delete(things).where(things.c.id == 1).returning(things.c.id).cte("gone")
    hidden = [
        select(Thing.id).where(Thing.id.in_(select(gone.c.id))),
        select(Thing.id).where(func.nextval("no_such_seq") > 0),  # refused before it could fail on the server
        select(Thing.id).where(func.set_config("app.tenant", "42", False).is_not(None)),
        text("WITH q AS (SELECT '/*' AS a), d AS (DELETE FROM thing WHERE id = 2 RETURNING id) SELECT '*/' FROM q, d"),
        text("WITH q AS (SELECT E'\\'' AS a), u AS (UPDATE thing SET name = 'x' RETURNING id) SELECT 1 FROM u"),
    ]
    everything = select(Thing.id, Thing.name).order_by(Thing.id)
    before = await db.fetch_all(everything)
    for statement in hidden:
        for _ in range(2):  # Core, then what would be the driver path
            with pytest.raises(ReadOnlyError):
                await db.fetch_all(statement)
    assert await db.fetch_all(everything) == before
    if db.config.is_postgresql:
        assert await db.scalar(text("SELECT current_setting('app.tenant', true)")) in (None, "")
        # a function not known to be free of side effects runs in a READ ONLY transaction: PostgreSQL refuses it
        async with db.transaction() as sess:
            await sess.execute(text("CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM thing; SELECT 0'"))
        with pytest.raises(ReadOnlyError):
            await db.fetch_all(text("SELECT wipe() AS n"))
        assert await db.fetch_all(everything) == before
    # a lambda statement is judged by the statement it stands for; text().columns() is a read; SQL the classifier
    # cannot read is refused
    with pytest.raises(ReadOnlyError, match="cannot tell"):
        await db.fetch_all(text("SELECT U&\"\\0073etval\"('s', 1000)"))
    with pytest.raises(ReadOnlyError, match="Write attempted"):
        await db.fetch_all(lambda_stmt(lambda: select(func.pg_advisory_lock(99))))
    by_lambda = lambda_stmt(lambda: select(Thing.id).where(Thing.id < 3).order_by(Thing.id))
    assert await db.fetch_all(by_lambda) == [{"id": 1}, {"id": 2}]
    assert await db.scalar(text("SELECT count(*) AS n FROM thing").columns(column("n", Integer))) == 5


async def test_errors_are_translated_on_every_path_and_the_pool_stays_usable(db: Database) -> None:
    for _ in range(3):  # Core, then the driver path twice
        with pytest.raises(DatabaseError) as info:
            await db.fetch_all(MISSING_TABLE)
        assert type(info.value) is DatabaseError
        if db.config.is_postgresql:
            assert info.value.sqlstate == "42P01"
    for _ in range(2 if db.config.is_postgresql else 0):  # SQLite compares any value with any other
        with pytest.raises(DatabaseError):  # a bad argument: asyncpg refuses it before sending anything
            await db.fetch_all(BY_ID, {"id": "not a number"})
    assert await db.fetch_one(BY_ID, {"id": 1}) == {"id": 1, "name": "n1"}  # the pool's only connection is fine
    async with db.session() as sess:
        with pytest.raises(Exception) as by_session:
            await sess.execute(BY_ID, {})
    for _ in range(2):  # a missing parameter: SQLAlchemy's own error on every path, as a session raises it
        with pytest.raises(type(by_session.value), match="A value is required for bind parameter 'id'"):
            await db.fetch_all(BY_ID, {})


@pytest.mark.postgres
async def test_a_repeated_statement_skips_sqlalchemys_execution_and_opens_no_transaction(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1, pre_ping=False)))
    sent: list[str] = []  # simple-protocol queries (BEGIN, COMMIT, ...) as asyncpg sends them
    executed: list[str] = []  # statements that went through SQLAlchemy's execution layer

    def log_queries(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.driver_connection.add_query_logger(lambda record: sent.append(record.query))

    event.listen(db.engine.sync_engine.pool, "connect", log_queries)
    # a dialect-level hook, not a cursor event (cursor-event listeners keep reads on the Core path)
    event.listen(db.engine.sync_engine, "do_execute", lambda cursor, sql, *args: executed.append(sql))
    statement = text("SELECT 41 + :n AS answer")
    try:
        before = (await db.get_stats()).engines[0].queries
        answers = [await db.scalar(statement, {"n": n}) for n in (1, 2, 3)]
        after = (await db.get_stats()).engines[0].queries
    finally:
        await db.dispose()
    assert answers == [42, 43, 44]
    # the first read ran through SQLAlchemy (its prepared statements are invisible to asyncpg's query loggers), the
    # next two on the driver connection; no BEGIN / COMMIT / ROLLBACK anywhere: one statement, one round trip
    assert sent == ["SELECT 41 + $1 AS answer"] * 2
    assert [sql for sql in executed if "answer" in sql] == ["SELECT 41 + $1 AS answer"]  # not the dialect's set-up
    assert after - before == 3  # every read is counted in the statement statistics


@pytest.mark.postgres
@pytest.mark.parametrize("hook", ["before_cursor_execute", "after_cursor_execute"])
async def test_cursor_event_listeners_see_every_read(pg_url: str, hook: str) -> None:
    # tracing (OpenTelemetry's SQLAlchemy instrumentation) and query logging listen to cursor events, which the
    # driver path would bypass: on such an engine every read runs through SQLAlchemy's execution
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1, pre_ping=False)))
    seen: list[tuple[str, Any]] = []
    event.listen(db.engine.sync_engine, hook, lambda conn, cursor, sql, params, *rest: seen.append((sql, params)))
    statement = text("SELECT 41 + :n AS answer")
    try:
        answers = [await db.scalar(statement, {"n": n}) for n in (1, 2, 3)]
    finally:
        await db.dispose()
    assert answers == [42, 43, 44]
    assert [params for _, params in seen] == [(1,), (2,), (3,)]


@pytest.mark.postgres
async def test_statement_stats_off_counts_no_statement_on_any_path(pg_url: str) -> None:
    pool = PoolConfig(min_size=1, max_size=1, pre_ping=False)
    db = Database(DatabaseConfig(url=pg_url, pool=pool, statement_stats=False))
    try:
        answers = [await db.scalar(text("SELECT 41 + :n"), {"n": 1}) for _ in range(3)]  # Core, then the driver
        with pytest.raises(DatabaseError):
            await db.scalar(MISSING_TABLE)
        with pytest.raises(DatabaseError):
            await db.scalar(MISSING_TABLE)  # the driver path's failure
        primary = (await db.get_stats()).engines[0]
    finally:
        await db.dispose()
    assert answers == [42, 42, 42]
    assert (primary.queries, primary.errors) == (0, 0)


@pytest.mark.postgres
async def test_a_lost_connection_is_translated_and_replaced(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1, pre_ping=False)))
    try:
        pids = [await db.scalar(PID) for _ in range(2)]  # the second runs on the driver path
        await pg_execute(pg_url, "SELECT pg_terminate_backend($1)", pids[0])
        with pytest.raises(DatabaseUnavailableError):
            await db.scalar(PID)
        replaced = await db.scalar(PID)
    finally:
        await db.dispose()
    assert pids[0] == pids[1]
    assert replaced != pids[0]


WHERE = text("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby")


@pytest.mark.postgres
@pytest.mark.replica
async def test_reads_go_to_a_replica_and_move_to_the_primary_when_it_stops(
    replica_db: ReplicaDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = replica_db.cluster
    assert cluster.primary is not None
    split = ReadWriteConfig(
        enable_read_write_split=True,
        replicas=(ReplicaConfig(url=replica_db.replica_urls[0], name="r0"),),
        failure_cooldown_seconds=30.0,
    )
    pool = PoolConfig(min_size=1, max_size=2, pre_ping=False)
    db = Database(DatabaseConfig(url=replica_db.primary_url, pool=pool, read_write=split))
    try:
        on_replica = [await db.fetch_one(WHERE) for _ in range(3)]  # Core, then the driver path twice
        cluster.stop_replica()
        # the pooled replica connection is dead: the read is re-run once on the primary, the replica ejected
        after_stop = [await db.fetch_one(WHERE) for _ in range(2)]
        stats = {engine.name: engine for engine in (await db.get_stats()).engines}
    finally:
        await db.dispose()
    assert on_replica == [{"port": cluster.replicas[0].port, "standby": True}] * 3
    assert after_stop == [{"port": cluster.primary.port, "standby": False}] * 2
    assert stats["r0"].ejected_until is not None
    assert "replica r0: connection error on a read" in caplog.text  # logged as a routing session's failover is
    assert stats["r0"].routed_reads == 4  # three reads, and the one that failed over
    assert stats["primary"].routed_reads == 2
