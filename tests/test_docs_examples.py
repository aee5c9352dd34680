"""Every example of the guide (``docs/examples/``) runs here, so a broken example fails the suite.

SQLite by default; the examples whose point is PostgreSQL behaviour (isolation levels, statement timeout,
SQLSTATE details) also run on PostgreSQL through the ``pg_url`` fixture.
"""

from __future__ import annotations

import datetime
import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from docs.examples import (
    access,
    after_commit,
    configuration,
    deploy_migrations,
    errors_example,
    health_app,
    litestar_app,
    monitoring,
    pitfalls,
    pool_sizing,
    queries,
    read_replicas,
    replica_routes,
)
from docs.examples import transactions as tx_examples
from docs.examples.models import Account, Product, Sale, Transfer, User, create_tables
from litestar_db import (
    Database,
    DatabaseConfig,
    DatabasePlugin,
    ReadWriteConfig,
    ReplicaConfig,
    cleanup_database,
    initialize_database,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """The example tables on a fresh database, registered as the default (as the plugin does)."""
    db = initialize_database(DatabaseConfig(url=db_url))
    await create_tables(db.engine)
    try:
        yield db
    finally:
        await cleanup_database()


def test_every_example_is_tested() -> None:
    """A new file under docs/examples must be exercised by this module (imported, or imported by a test)."""
    examples = {p.stem for p in (DOCS / "examples").glob("*.py")} - {"__init__"}
    imported = {name.rsplit(".", 1)[-1] for name in sys.modules if name.startswith("docs.examples.")}
    source = "".join(p.read_text() for p in Path(__file__).parent.glob("test_docs_*.py"))
    mentioned = {stem for stem in examples if f"docs.examples.{stem}" in source}
    assert examples <= imported | mentioned, f"examples not exercised: {examples - imported - mentioned}"


def test_every_literalinclude_points_at_an_existing_marker() -> None:
    """``:start-after:``/``:end-before:`` markers used by the pages exist in the example files."""
    import re

    pattern = re.compile(r"literalinclude:: (\S+)\n((?:\s+:[\w-]+:.*\n)*)")
    checked = 0
    for page in DOCS.rglob("*.rst"):
        for match in pattern.finditer(page.read_text()):
            source = (page.parent / match.group(1)).resolve()
            assert source.is_file(), f"{page}: {match.group(1)} does not exist"
            body = source.read_text()
            for marker in re.findall(r":(?:start-after|end-before): (.+)", match.group(2)):
                assert marker.strip() in body, f"{page}: marker {marker!r} not in {source.name}"
            checked += 1
    assert checked >= 20


def test_configuration_examples() -> None:
    assert configuration.config.pool.max_size == 20
    assert configuration.config.sqlalchemy_url() == configuration.same_database.sqlalchemy_url()
    assert configuration.from_env.pool.timeout == 10.0
    assert configuration.from_env.statement_timeout == 15.0
    message = configuration.show_validation()
    assert "pool.min_size" in message
    assert "s3cret" not in repr(configuration.config) + repr(configuration.same_database)


def test_documented_environment_variables_are_the_ones_read() -> None:
    """The Environment column of the configuration tables (docs/_ext/env_vars.py) matches from_env."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        env_vars = importlib.import_module("env_vars").ENV_VARS
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    values = {
        "DATABASE_URL": "postgresql://u@h:5433/d",
        "DATABASE_ECHO": "true",
        "DATABASE_STATEMENT_TIMEOUT": "7",
        "DATABASE_COMMAND_TIMEOUT": "12",
        "DATABASE_SLOW_QUERY_SECONDS": "0.25",
        "DATABASE_POOL_SIZE": "3",
        "DATABASE_POOL_MAX_SIZE": "9",
        "DATABASE_POOL_TIMEOUT": "4",
        "DATABASE_POOL_RECYCLE": "60",
        "DATABASE_POOL_PRE_PING": "false",
        "DATABASE_APPLICATION_NAME": "docs-test",
        "DATABASE_REPLICA_URLS": "postgresql://u@r1/d,postgresql://u@r2/d",
        "DATABASE_TOKEN_SECRET": "shared-secret",
        "DATABASE_MIGRATE_ON_STARTUP": "true",
    }
    assert set(env_vars.values()) == set(values)
    default = DatabaseConfig.from_env({"DATABASE_URL": values["DATABASE_URL"]})
    configured = DatabaseConfig.from_env(values)
    parts = {
        "DatabaseConfig": "",
        "PoolConfig": "pool.",
        "ConnectionConfig": "connection.",
        "ReadWriteConfig": "read_write.",
        "MigrationConfig": "migrations.",
    }
    for field_path, variable in env_vars.items():
        owner, name = field_path.split(".")
        path = (parts[owner] + name).split(".")
        if variable == "DATABASE_URL":
            assert configured.url == values["DATABASE_URL"]
            continue
        left, right = configured, default
        for attr in path:
            left, right = getattr(left, attr), getattr(right, attr)
        assert left != right, f"{variable} does not change {field_path}"


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_access_levels(db_url: str) -> None:
    result = await access.main(db_url)
    assert result["user"] == "Ada L."
    assert result["accounts"] == [{"id": 1, "balance": 70}, {"id": 2, "balance": 30}]


async def test_transactions(database: Database) -> None:
    async with database.transaction() as db:
        db.add_all([Account(id=1, balance=100), Account(id=2, balance=50)])
        db.add(User(email="taken@example.com", name="taken"))
    assert await tx_examples.total_balance() == 150
    skipped = await tx_examples.register_many(["a@example.com", "taken@example.com", "b@example.com"])
    assert skipped == ["taken@example.com"]
    assert await database.scalar(select(func.count()).select_from(User)) == 3
    assert await tx_examples.pay_interest(10) == 2
    assert await tx_examples.total_balance() == 165
    assert await tx_examples.close_account(2) == 55
    assert await database.scalar(select(func.count()).select_from(Account)) == 1


async def test_queries(database: Database) -> None:
    created = await queries.create_user("ada@example.com", "Ada")
    assert created.id is not None
    with pytest.raises(queries.EmailTaken):
        await queries.create_user("ada@example.com", "Someone else")
    assert (await queries.user_by_email("ada@example.com")).name == "Ada"  # type: ignore[union-attr]
    products = [
        {"name": f"Widget {i}", "category": "tools" if i % 2 else "toys", "price": i * 100} for i in range(1, 51)
    ]
    assert await queries.bulk_insert_products(products) == 50
    async with database.session() as db:
        page = await queries.search_products(db, category="tools", min_price=1000, max_price=3000, limit=5, offset=1)
        assert [p.price for p in page] == [1300, 1500, 1700, 1900, 2100]
        found = await queries.search_products(db, name_contains="widget 4")
        assert {p.name for p in found} == {"Widget 4"} | {f"Widget {i}" for i in range(40, 50)}
    now = datetime.datetime.now(datetime.UTC)
    await queries.bulk_insert_sales(
        [
            {"product_id": 1, "customer_id": created.id, "quantity": 3, "unit_price": 100, "sold_at": now},
            {"product_id": 2, "customer_id": None, "quantity": 1, "unit_price": 200, "sold_at": now},
            {"product_id": 2, "customer_id": created.id, "quantity": 5, "unit_price": 200, "sold_at": now},
        ]
    )
    stats = await queries.sales_stats(now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1))
    assert [(r["product_id"], r["units"], r["revenue"], r["customers"]) for r in stats] == [
        (2, 6, 1200, 1),
        (1, 3, 300, 1),
    ]
    assert await database.scalar(select(func.count()).select_from(Sale)) == 3


async def test_errors_example(database: Database) -> None:
    assert await errors_example.add_user("x@example.com") == "created"
    answer = await errors_example.add_user("x@example.com")
    assert answer.startswith("taken (")


@pytest.mark.postgres
async def test_errors_example_names_the_constraint_on_postgres(pg_url: str) -> None:
    db = initialize_database(DatabaseConfig(url=pg_url))
    try:
        await create_tables(db.engine)
        await errors_example.add_user("x@example.com")
        assert await errors_example.add_user("x@example.com") == "taken (23505, constraint users_email_key)"
    finally:
        await cleanup_database()


async def test_error_handler_override(sqlite_url: str) -> None:
    setup = Database(DatabaseConfig(url=sqlite_url))
    await create_tables(setup.engine)
    await setup.dispose()

    @post("/dup")
    async def dup(db_session: NamedDependency[AsyncSession]) -> None:
        db_session.add_all([User(email="d@example.com", name="a"), User(email="d@example.com", name="b")])
        await db_session.flush()

    app = errors_example.create_app(DatabaseConfig(url=sqlite_url))
    app.register(dup)
    async with AsyncTestClient(app) as client:
        response = await client.post("/dup")
    assert response.status_code == 409
    assert response.json()["title"] == "Conflict"


async def test_monitoring(database: Database) -> None:
    async with database.session() as db:
        await db.execute(text("SELECT 1"))
    report = await monitoring.database_report()
    assert report["healthy"] is True
    assert report["checked_out"] == 0
    assert report["queries"] >= 1
    assert msgspec.json.decode(report["json"])["engines"][0]["name"] == "primary"


async def test_pitfalls(database: Database) -> None:
    assert await pitfalls.nested_blocks() == 2
    rows = await pitfalls.rows_read_inside()
    assert [r["email"] for r in rows] == ["outer@example.com", "inner@example.com"]
    assert await pitfalls.buffered_helpers() == rows
    assert "fetch rows inside" in await pitfalls.streamed_result_read_late()
    assert "separate session" in await pitfalls.one_session_two_tasks()
    async with database.transaction() as db:
        db.add_all([User(email=f"bulk{i}@example.com", name="b") for i in range(5)])
    assert await pitfalls.export_in_batches(3) == [3, 3, 1]
    stats = await database.get_stats()
    assert stats.engines[0].pool.checked_out == 0


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_litestar_app(db_url: str) -> None:
    # the test client runs the app on its own loop: prepare the tables from this loop with a separate Database
    setup = Database(DatabaseConfig(url=db_url))
    await create_tables(setup.engine)
    async with setup.transaction() as s:
        s.add_all([Account(id=1, balance=100), Account(id=2, balance=0)])
    await setup.dispose()
    app = litestar_app.create_app(DatabaseConfig(url=db_url))
    async with AsyncTestClient(app) as client:
        created = await client.post("/users", json={"email": "ada@example.com", "name": "Ada"})
        assert created.status_code == 201, created.text
        duplicate = await client.post("/users", json={"email": "ada@example.com", "name": "Other"})
        assert duplicate.status_code == 409
        found = await client.get("/users/by-email", params={"email": "ada@example.com"})
        assert found.json() == created.json()
        assert (await client.get("/users/by-email", params={"email": "nobody@example.com"})).status_code == 404
        batch = [{"email": f"u{i}@example.com", "name": f"u{i}"} for i in range(150)]
        assert (await client.post("/import", json=batch)).json() == {"imported": 150}
        moved = await client.post("/transfers", json={"from_id": 1, "to_id": 2, "amount": 40})
        assert moved.status_code == 201, moved.text
        assert moved.json() == {"from_balance": 60, "to_balance": 40}
        overdraft = await client.post("/transfers", json={"from_id": 1, "to_id": 2, "amount": 1000})
        assert overdraft.status_code == 422
        assert (await client.get("/accounts/total")).json() == {"total": 100}
    check = Database(DatabaseConfig(url=db_url))
    try:
        async with check.session() as s:
            assert await s.scalar(select(func.count()).select_from(User)) == 151
            assert await s.scalar(select(func.count()).select_from(Transfer)) == 1
    finally:
        await check.dispose()


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_after_commit(db_url: str) -> None:
    """The background task runs after a committed request, and not when the COMMIT itself fails."""
    setup = Database(DatabaseConfig(url=db_url))
    await create_tables(setup.engine)
    if setup.config.is_postgresql:  # make the duplicate surface at COMMIT, not at the INSERT
        async with setup.connection() as conn:
            await conn.execute(
                text(
                    "ALTER TABLE users DROP CONSTRAINT users_email_key,"
                    " ADD CONSTRAINT users_email_key UNIQUE (email) DEFERRABLE INITIALLY DEFERRED"
                )
            )
    await setup.dispose()
    after_commit.SENT.clear()
    app = Litestar(route_handlers=[after_commit.sign_up], plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        ok = await client.post("/signup", json={"email": "a@example.com", "name": "A"})
        assert ok.status_code == 201
        again = await client.post("/signup", json={"email": "a@example.com", "name": "A"})
        assert again.status_code == 409
    assert after_commit.SENT == ["a@example.com"]
    db = initialize_database(DatabaseConfig(url=db_url))
    try:
        await after_commit.sign_up_from_a_worker("w@example.com", "W")
        assert after_commit.SENT == ["a@example.com", "w@example.com"]
        assert await db.scalar(select(func.count()).select_from(User)) == 2
    finally:
        await cleanup_database()


def test_pool_sizing() -> None:
    assert (pool_sizing.config.pool.min_size, pool_sizing.config.pool.max_size) == (5, 15)
    assert pool_sizing.behind_pgbouncer.connection.pgbouncer is True
    assert "pgbouncer" not in pool_sizing.behind_pgbouncer.sqlalchemy_url().query  # not passed on to asyncpg
    with pytest.raises(ValueError, match="PgBouncer"):
        pool_sizing.pool_for(max_connections=20, reserved=10, instances=4, workers_per_instance=4)


async def test_read_replicas(database: Database) -> None:
    names = [r.name for r in read_replicas.config.read_write.replicas]
    assert names == ["a", "b"]
    assert read_replicas.config.read_write.replicas[1].pool.max_size == 10  # type: ignore[union-attr]
    async with database.transaction() as db:
        db.add(Product(id=1, name="p", category="c", price=1))
        await db.flush()
        db.add_all([Sale(product_id=1, quantity=2, unit_price=1), Sale(product_id=1, quantity=3, unit_price=1)])
    assert await read_replicas.units_sold() == {"units": 5}


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_deploy_migrations(db_url: str) -> None:
    script_location = str(DOCS.parent / "migrations")
    applied = await deploy_migrations.migrate(db_url, script_location)
    assert len(applied) >= 1
    assert await deploy_migrations.migrate(db_url, script_location) == []


async def test_health_app(sqlite_url: str) -> None:
    async with AsyncTestClient(health_app.create_app(sqlite_url)) as client:
        live = await client.get("/health/live")
        assert (live.status_code, live.json()["status"]) == (200, "pass")
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        check = ready.json()["checks"]["primary:responseTime"][0]
        assert check["status"] == "pass"
        assert "location" in check  # details shown to this (local) client
        metrics = await client.get("/metrics")
        assert 'db_pool_max_size{database="default",engine="primary"}' in metrics.text


@pytest.mark.postgres
@pytest.mark.replica
async def test_replica_routes(request: pytest.FixtureRequest) -> None:
    cluster_db = request.getfixturevalue("replica_db")
    setup = Database(DatabaseConfig(url=cluster_db.primary_url))
    await create_tables(setup.engine)
    async with setup.transaction() as db:
        db.add_all([Account(id=1, balance=7), Product(id=1, name="p", category="c", price=1)])
    await setup.dispose()
    cluster_db.cluster.wait_for_catchup()
    replicas = (ReplicaConfig(url=cluster_db.replica_urls[0], name="r0"),)
    config = DatabaseConfig(
        url=cluster_db.primary_url,
        read_write=ReadWriteConfig(enable_read_write_split=True, replicas=replicas),
    )
    routes = [replica_routes.count_products, replica_routes.fresh_balance, replica_routes.refresh_report]
    plugin = DatabasePlugin(config)
    async with AsyncTestClient(Litestar(route_handlers=routes, plugins=[plugin])) as client:
        assert (await client.get("/products/count")).json() == {"products": 1}
        assert (await client.get("/accounts/1/balance")).json() == {"balance": 7}
        assert (await client.post("/reports/refresh")).status_code == 201
        stats = await plugin.database.get_stats()
    routed = {engine.name: engine.routed_reads for engine in stats.engines}
    assert routed["r0"] >= 2  # the read-only GET and the read-only POST
    initialize_database(config)
    try:
        assert await replica_routes.balance_after_payment(1) == 7
    finally:
        await cleanup_database()


def test_environment_tables_list_every_variable() -> None:
    """The environment-variable tables of both configuration pages name exactly the variables from_env reads."""
    import re

    import litestar_db._env

    read = set(re.findall(r'"(DATABASE_[A-Z_]+)"', Path(litestar_db._env.__file__).read_text()))
    for page in (DOCS / "configuration.rst", DOCS / "zh" / "configuration.rst"):
        listed = set(re.findall(r"^``(DATABASE_[A-Z_]+)``", page.read_text(), re.M))
        assert listed == read, f"{page}: missing {read - listed}, unknown {listed - read}"
