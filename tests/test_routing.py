"""Routing logic without servers: statement classification, strategies and weights, ejection, tokens, modes.

The engines below are real SQLAlchemy engines that are never connected (selection does not touch them).
"""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Sequence,
    Table,
    TypeDecorator,
    delete,
    func,
    insert,
    lambda_stmt,
    literal_column,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine

from litestar_db import ConfigurationError, Database, DatabaseConfig, ReadWriteConfig, ReplicaConfig, _classify
from litestar_db._classify import statement_kind
from litestar_db.litestar.guards import read_token, routing_mode
from litestar_db.read_your_writes import TokenSigner, format_lsn, parse_lsn
from litestar_db.routing import ReplicaSet, ReplicaState, is_plain_read
from litestar_db.stats import EngineCounters

items = Table("items", MetaData(), Column("id", Integer, primary_key=True))


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        (select(items), True),
        (union_all(select(items), select(items)), True),
        (select(items).with_for_update(), False),
        (select(items).with_for_update(read=True), False),
        (select(func.count()).select_from(items), True),
        (select(items.c.id, func.lower("x").label("l")), True),
        (select(func.nextval("items_id_seq")), False),
        (select(func.nextval("items_id_seq").label("n")), False),
        (select(Sequence("items_id_seq").next_value()), False),
        (select(func.pg_try_advisory_lock(1)), False),
        (select(insert(items).values(id=1).returning(items.c.id).cte("new").c.id), False),
        (select(items).add_cte(delete(items).cte("gone")), False),
        (insert(items), False),
        (update(items).values(id=1), False),
        (delete(items), False),
        (text("SELECT 1"), True),
        (text("  -- comment\n select * from items"), True),
        (text("/* hint */ WITH x AS (SELECT 1) SELECT * FROM x"), True),
        (text("(SELECT 1) UNION (SELECT 2)"), True),
        (text("SELECT * FROM items WHERE name = 'please delete me'"), True),
        (text("WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d"), False),
        (text("SELECT * FROM items FOR UPDATE"), False),
        (text("select * from items for no key update"), False),
        (text("SELECT * FROM items FOR KEY SHARE"), False),
        (text("SELECT * INTO copy FROM items"), False),
        (text("SELECT nextval('items_id_seq')"), False),
        (text("SELECT pg_advisory_lock(1)"), False),
        (text("SELECT pg_try_advisory_xact_lock(1)"), False),
        (text("SHOW transaction_read_only"), True),
        (text("VALUES (1), (2)"), True),
        (text("EXPLAIN SELECT * FROM items"), True),
        (text("EXPLAIN ANALYZE DELETE FROM items"), False),
        (text("INSERT INTO items VALUES (1)"), False),
        (text("UPDATE items SET id = 2"), False),
        (text("VACUUM"), False),
        (text("SET search_path TO x"), False),
        (None, False),
    ],
)
def test_plain_read_classification(clause: object, expected: bool) -> None:
    assert is_plain_read(clause) is expected


class _Sequenced(TypeDecorator[int]):
    impl = Integer
    cache_ok = True

    def column_expression(self, column: Any) -> Any:
        return func.nextval("s")


_gone = delete(items).where(items.c.id == 1).returning(items.c.id).cte("gone")
_renamed = update(items).values(id=2).returning(items.c.id).cte("renamed")


@pytest.mark.parametrize(
    ("clause", "kind"),
    [
        # writes hidden below the selected columns: found by walking the whole statement
        (select(items.c.id).where(items.c.id.in_(select(_gone.c.id))), "write"),
        (select(select(_renamed.c.id).scalar_subquery().label("x")), "write"),
        (select(items.c.id).where(func.nextval("s") > 0), "write"),
        (select(items.c.id).order_by(func.pg_catalog.nextval("s")), "write"),
        (select(items.c.id).where(func.pg_advisory_lock(1).is_not(None)), "write"),
        (select(items.c.id).where(items.c.id.in_(select(items.c.id).with_for_update())), "write"),
        (select(items).suffix_with("FOR UPDATE"), "write"),
        (select(items).with_statement_hint("FOR UPDATE"), "write"),
        (select(text("nextval('s') AS n")), "write"),
        (select(literal_column("nextval('s')")), "write"),
        (select(func.set_config("app.tenant", "42", False)), "write"),
        (text("SELECT set_config('app.tenant', '42', false)"), "write"),
        # text(): PostgreSQL's lexical rules, so a literal or comment neither hides code nor counts as code
        (text("WITH q AS (SELECT '/*' AS a), d AS (DELETE FROM items RETURNING id) SELECT '*/' FROM q, d"), "write"),
        (text("WITH q AS (SELECT E'\\'' AS a), u AS (UPDATE items SET id = 4 RETURNING id) SELECT 1 FROM u"), "write"),
        (text("SELECT $$ ' $$ AS a, id FROM items FOR UPDATE"), "write"),
        (text("SELECT 1 /* nested /* DELETE */ still a comment */"), "read"),
        (text("SELECT \"nextval\"('s')"), "write"),  # a quoted identifier is still a name
        (text("SELECT 'no delete here; nor update' AS a, $q$ INSERT $q$ AS b FROM items"), "read"),
        (text("SELECT 1; DELETE FROM items"), "write"),
        (text("SELECT 'unterminated"), "unknown"),
        (text("SELECT id FROM items").columns(items.c.id), "read"),
        (text("DELETE FROM items RETURNING id").columns(items.c.id), "write"),
        (select(literal_column("*")).select_from(items), "read"),
        # a lambda statement is judged by the statement it stands for; Unicode escapes are not read here
        (lambda_stmt(lambda: select(items)), "read"),
        (lambda_stmt(lambda: select(func.pg_advisory_lock(99))), "write"),
        (text("SELECT U&\"\\006Eextval\"('s')"), "unknown"),
        # PostgreSQL's lexer: a carriage return ends a -- comment, $ inside a name is not a dollar quote, dollar
        # quote tags may be non-ASCII
        (text("SELECT 1 --x\r, nextval('s')"), "write"),
        (text("SELECT 1 AS a$x$, nextval('s') AS b$x$"), "write"),
        (text("SELECT $\u00e9$'$\u00e9$, nextval('s') --'"), "write"),
        (text("EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1 AS x"), "write"),
        (text("EXPLAIN (ANALYZE) EXECUTE p1"), "write"),
        (text("EXPLAIN (ANALYZE, BUFFERS) SELECT 1"), "read"),
        (text("SELECT query_to_xml('select 1', true, false, '')"), "write"),  # runs the SQL in its argument
        # functions: only those free of side effects may run outside a transaction on the primary
        (select(func.count(), func.lower("X"), func.coalesce(items.c.id, 0), func.now()), "read"),
        (select(func.my_function(items.c.id)), "guarded"),
        (select(func.myschema.lower(items.c.id)), "guarded"),
        (text("SELECT my_function(id), comment, load FROM items"), "guarded"),
        (text("SELECT id, comment, load, reset FROM items WHERE id IN (SELECT id FROM items)"), "read"),
        (select(type_coerce(items.c.id, _Sequenced())), "write"),  # the type's column_expression
        # a third breaker round: any non-ASCII character belongs to a name, so "\u00ac$a$" is no dollar quote; names
        # that are not plain (quoted, symbols, keywords) are calls of functions not on the list
        (text("WITH \u00ac$a$ AS (INSERT INTO items VALUES (1) RETURNING id) SELECT id FROM \u00ac$a$"), "write"),
        (text('SELECT "log!"(1), audit\u20ac(2)'), "guarded"),
        (text("SELECT public.filter(7), filter(8)"), "guarded"),
        (text('SELECT "evil lower"(1)'), "guarded"),
        (text('SELECT "2fa".lower(1)'), "guarded"),
        # PostgreSQL's attribute notation: (x).f and t.f may call f(x), f(t) (a fourth breaker round)
        (text("SELECT ('s'::regclass).nextval"), "write"),
        (text("SELECT (42::bigint).pg_advisory_lock"), "write"),
        (text("SELECT (c).field FROM t"), "guarded"),
        # ... and common reads stay reads
        (text("SELECT replace(path, '\\', '/'), \"update\", \"delete\" FROM files"), "read"),
        (
            text(
                "SELECT CAST(p AS numeric(10,2)), count(*) OVER (PARTITION BY a), count(*) FILTER (WHERE a > 1) FROM t"
            ),
            "read",
        ),
        (text("SELECT * FROM (VALUES (1, 'a')) AS v(id, name)"), "read"),
    ],
)
def test_statement_kind_judges_the_sql_sent(clause: object, kind: str) -> None:
    assert statement_kind(clause) == kind
    assert statement_kind(clause) == kind  # the cached verdict


def test_lsn_text_round_trip() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848") or 0) == "16/B374D848"
    assert parse_lsn("0/0") == 0
    assert parse_lsn(None) is None


def _replicas(*weights: int) -> list[ReplicaState]:
    engine = create_async_engine("postgresql+asyncpg://u@127.0.0.1:1/db")
    return [ReplicaState(f"r{i}", engine, w, EngineCounters(1.0)) for i, w in enumerate(weights)]


def test_round_robin_honours_weights_exactly() -> None:
    replicas = _replicas(3, 1)
    picks = Counter(ReplicaSet(replicas, "round_robin", 1.0).choose().name for _ in range(400))  # type: ignore[union-attr]
    assert picks == {"r0": 300, "r1": 100}


def test_round_robin_interleaves_instead_of_bursting() -> None:
    replica_set = ReplicaSet(_replicas(3, 1), "round_robin", 1.0)
    sequence = [replica_set.choose().name for _ in range(8)]  # type: ignore[union-attr]
    assert sequence.count("r1") == 2
    assert "r1" in sequence[:4]


def test_random_honours_weights() -> None:
    replica_set = ReplicaSet(_replicas(3, 1), "random", 1.0, rng=random.Random(7))
    picks = Counter(replica_set.choose().name for _ in range(4000))  # type: ignore[union-attr]
    assert 0.75 * 0.95 <= picks["r0"] / 4000 <= 0.75 * 1.05


def test_least_lag_prefers_the_least_behind_replica() -> None:
    replicas = _replicas(1, 1, 1)
    replicas[0].lag_bytes, replicas[1].lag_bytes, replicas[2].lag_bytes = 5000, 0, None
    replica_set = ReplicaSet(replicas, "least_lag", 1.0)
    assert {replica_set.choose().name for _ in range(10)} == {"r1"}  # type: ignore[union-attr]


def test_ejected_replica_is_skipped_until_cooldown_ends() -> None:
    replicas = _replicas(1, 1)
    replica_set = ReplicaSet(replicas, "round_robin", 0.2)
    replica_set.eject(replicas[0], "connection error")
    assert {replica_set.choose().name for _ in range(6)} == {"r1"}  # type: ignore[union-attr]
    replica_set.eject(replicas[1], "connection error")
    assert replica_set.choose() is None
    time.sleep(0.25)
    assert {replica_set.choose().name for _ in range(6)} == {"r0", "r1"}  # type: ignore[union-attr]


def test_unhealthy_replica_stays_out_after_cooldown_until_a_probe_succeeds() -> None:
    replicas = _replicas(1)
    replicas[0].healthy = False
    assert ReplicaSet(replicas, "round_robin", 0.0).choose() is None


def test_min_lsn_only_accepts_replicas_that_replayed_it() -> None:
    replicas = _replicas(1, 1)
    replicas[0].replay_lsn, replicas[1].replay_lsn = 100, 200
    replica_set = ReplicaSet(replicas, "round_robin", 1.0)
    assert {replica_set.choose(min_lsn=150).name for _ in range(4)} == {"r1"}  # type: ignore[union-attr]
    assert replica_set.choose(min_lsn=201) is None
    assert replica_set.choose(exclude=(replicas[1],), min_lsn=100) is replicas[0]


def test_token_round_trip_tamper_and_expiry() -> None:
    signer = TokenSigner(b"secret", lsn_lifetime=30, sticky_seconds=2)
    token, lifetime = signer.issue(0x1_0000_00A0)
    assert lifetime == 30
    verified = signer.verify(token)
    assert verified is not None
    assert verified.lsn == 0x1_0000_00A0
    lsn_part, expires, sig = token.split(".")
    assert signer.verify(f"{int(lsn_part, 16) + 1:x}.{expires}.{sig}") is None  # LSN changed
    assert signer.verify(f"{lsn_part}.{int(expires) + 60_000}.{sig}") is None  # expiry extended
    assert signer.verify(token[:-2]) is None
    assert signer.verify("garbage") is None
    assert TokenSigner(b"other", 30, 2).verify(token) is None  # another key
    assert signer.verify(token, now=time.time() + 31) is None  # expired


def test_token_without_lsn_is_a_time_window() -> None:
    signer = TokenSigner(b"k", lsn_lifetime=30, sticky_seconds=2)
    token, lifetime = signer.issue(None)
    verified = signer.verify(token)
    assert lifetime == 2
    assert verified is not None
    assert verified.lsn is None
    assert verified.expires_at == pytest.approx(time.time() + 2, abs=0.1)
    assert signer.verify(token, now=time.time() + 2.5) is None


def test_routing_mode_by_guard_opt_and_method() -> None:
    methods = ("GET", "HEAD", "OPTIONS")
    assert routing_mode({"state": {}, "method": "GET"}, {}, methods) == "replica"  # type: ignore[typeddict-item]
    assert routing_mode({"state": {}, "method": "POST"}, {}, methods) == "primary"  # type: ignore[typeddict-item]
    assert routing_mode({"state": {}, "method": "GET"}, {"db_routing": "primary"}, methods) == "primary"  # type: ignore[typeddict-item]
    scope = {"state": {"litestar_db.routing": "read_only"}, "method": "POST"}
    assert routing_mode(scope, {"db_routing": "primary"}, methods) == "read_only"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="db_routing"):
        routing_mode({"state": {}, "method": "GET"}, {"db_routing": "replicas"}, methods)  # type: ignore[typeddict-item]


def test_token_is_read_from_cookie_or_header() -> None:
    scope = {"headers": [(b"cookie", b"a=1; litestar-db-lsn=abc.123.sig; b=2"), (b"x-lsn", b"h.1.s")]}
    assert read_token(scope, "cookie", "litestar-db-lsn") == "abc.123.sig"  # type: ignore[arg-type]
    assert read_token(scope, "header", "X-LSN") == "h.1.s"  # type: ignore[arg-type]
    assert read_token({"headers": []}, "cookie", "litestar-db-lsn") is None  # type: ignore[typeddict-item]


def test_split_off_creates_no_router() -> None:
    db = Database(DatabaseConfig(url="postgresql://u@127.0.0.1:1/db"))
    assert db.router is None
    cfg = ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url="postgresql://u@h:2/db"),))
    assert Database(DatabaseConfig(url="postgresql://u@127.0.0.1:1/db", read_write=cfg)).router is not None


def test_replica_urls_from_env_enable_the_split() -> None:
    cfg = DatabaseConfig.from_env(
        {
            "DATABASE_URL": "postgresql://u@p:5432/db",
            "DATABASE_REPLICA_URLS": "postgresql://u@r1/db, postgresql://u@r2/db",
        }
    )
    assert cfg.read_write.enable_read_write_split
    assert [cfg.replica_url(r).host for r in cfg.read_write.replicas] == ["r1", "r2"]
    with pytest.raises(ConfigurationError, match=r"read_write\.replicas\.weight"):
        ReplicaConfig(url="postgresql://u@r1/db", weight=0)


@pytest.mark.postgres
async def test_replica_and_fallback_transactions_are_read_only_on_the_server(pg_url: str) -> None:
    """Server-side READ ONLY, beyond the statement classifier: a SELECT calling a writing function is refused.

    The "replica" here is the same PostgreSQL database (not a standby), so only READ ONLY stops the write; the
    second replica points at a closed port, so its reads fall back to the primary, which must be READ ONLY too.
    """
    from litestar_db import ReadOnlyError
    from litestar_db.testing import free_port

    from .conftest import pg_execute

    await pg_execute(pg_url, "CREATE TABLE t (x int)")
    body = "INSERT INTO t VALUES (1) RETURNING x"
    await pg_execute(pg_url, f"CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS '{body}'")
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    for replica_url in (pg_url, dead):
        rw = ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url=replica_url, name="r"),))
        db = Database(DatabaseConfig(url=pg_url, read_write=rw))
        try:
            with pytest.raises(ReadOnlyError):  # 25006, translated when the block exits
                async with db.read_replica() as session:
                    assert (await session.execute(text("SHOW transaction_read_only"))).scalar() == "on"
                    await session.execute(text("SELECT sneaky()"))
            stats = {e.name: e for e in (await db.get_stats()).engines}
        finally:
            await db.dispose()
        if replica_url == pg_url:
            assert (stats["r"].routed_reads, stats["primary"].routed_reads) == (2, 0)
        else:  # the first read was tried on the dead replica (refused, ejected), then re-run on the primary
            assert (stats["r"].routed_reads, stats["primary"].routed_reads) == (1, 2)
            assert stats["r"].healthy is False
    assert (await pg_execute(pg_url, "SELECT count(*) FROM t"))[0][0] == 0


@pytest.mark.postgres
async def test_read_only_fallback_to_the_primary_builds_one_read_only_bind(pg_url: str) -> None:
    """With the replica down, ``read_only`` sessions read from the primary in READ ONLY transactions through one
    shared proxy per primary bind (built once, not per session), which adds no per-connection events."""
    from litestar_db.testing import free_port

    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    rw = ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url=dead, name="r"),))
    db = Database(DatabaseConfig(url=pg_url, read_write=rw))
    try:
        for _ in range(3):
            async with db.read_replica() as session:
                assert (await session.execute(text("SHOW transaction_read_only"))).scalar() == "on"
        assert db.router is not None
        readonly_binds = db.router.session_class.readonly_binds
        assert list(readonly_binds) == [db.engine.sync_engine]
        assert next(iter(readonly_binds.values()))._has_events is False
    finally:
        await db.dispose()


def test_the_verdict_cache_keeps_the_shapes_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full cache drops its least recently used verdict, not all of them: a statement in constant use is judged
    # (compiled) once however many other shapes pass by.
    monkeypatch.setattr(_classify, "_MAX_KINDS", 3)
    monkeypatch.setattr(_classify, "_KINDS", OrderedDict())
    judged: list[object] = []
    judge = _classify._kind
    monkeypatch.setattr(_classify, "_kind", lambda clause: judged.append(clause) or judge(clause))
    hot = select(items).where(items.c.id == 1)
    for n in range(10):
        assert statement_kind(hot) == "read"
        assert statement_kind(text(f"SELECT {n}")) == "read"
    assert judged.count(hot) == 1
    assert len(judged) == 11  # hot once, each text once
    assert len(_classify._KINDS) == 3
