"""Prometheus export: the collector's figures match the pool, registration is idempotent across apps in one
process, and ``/metrics`` served by Litestar's ``PrometheusController`` exposes gauges and counters that only grow."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import Database, DatabaseConfig, PoolConfig
from litestar_db.litestar.plugin import DatabasePlugin
from litestar_db.metrics import DatabaseCollector, register_collector
from tests.server import serve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(exposition: str) -> tuple[Samples, dict[str, str]]:
    """Samples keyed by (name, sorted labels), and each family's type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(exposition):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


@pytest.mark.postgres
async def test_collector_reports_pool_and_registers_once(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=3)))
    registry = CollectorRegistry()
    collector = DatabaseCollector(lambda: {"orders": db})
    registry.register(collector)
    try:
        held = [await db.engine.connect() for _ in range(2)]
        for conn in held:
            await conn.execute(text("SELECT 1"))
        samples, types = parse(generate_latest(registry).decode())
        key = {"database": "orders", "engine": "primary"}

        def value(name: str, **extra: str) -> float:
            return samples[(name, tuple(sorted({**key, **extra}.items())))]

        assert value("db_pool_connections", state="checked_out") == 2
        assert value("db_pool_connections", state="idle") == 0
        assert value("db_pool_connections", state="overflow") == 1
        assert value("db_pool_connections", state="waiting") == 0
        assert value("db_pool_max_size") == 3
        assert value("db_connections_created_total") == 2
        assert value("db_queries_total") == 2
        assert types["db_queries"] == "counter"
        assert types["db_pool_connections"] == "gauge"
        for conn in held:
            await conn.close()
        # a second collector exporting the same names is refused by the registry instead of doubling series
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            registry.register(DatabaseCollector(lambda: {"orders": db}))
        fresh = CollectorRegistry()
        assert register_collector(fresh) is register_collector(fresh)
    finally:
        await db.dispose()


@post("/work", status_code=200)  # a POST runs in a transaction (a GET that only reads commits nothing)
async def work(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    await db_session.execute(text("SELECT 1"))
    return {"one": (await db_session.execute(text("SELECT 1"))).scalar_one()}


def make_app(url: str, alias: str) -> Litestar:
    return Litestar(
        route_handlers=[work, PrometheusController], plugins=[DatabasePlugin(DatabaseConfig(url=url), alias=alias)]
    )


@pytest.mark.postgres
async def test_metrics_endpoint_counters_only_grow(pg_url: str) -> None:
    url = make_url(pg_url).set(password="metrics-pw-31").render_as_string(hide_password=False)
    first, second = make_app(url, "metrics_a"), make_app(url, "metrics_b")  # two apps, one process, one registry
    async with serve(first) as base_a, serve(second) as base_b, httpx.AsyncClient() as client:
        assert (await client.post(f"{base_a}/work")).status_code == 200
        before_text = (await client.get(f"{base_a}/metrics")).text
        for _ in range(3):
            assert (await client.post(f"{base_a}/work")).status_code == 200
        assert (await client.post(f"{base_b}/work")).status_code == 200
        after_text = (await client.get(f"{base_a}/metrics")).text
    before, types = parse(before_text)
    after, _ = parse(after_text)
    label = (("database", "metrics_a"), ("engine", "primary"))
    for state in ("checked_out", "idle", "overflow", "waiting"):
        assert ("db_pool_connections", tuple(sorted((*label, ("state", state))))) in after
    counters = {name for name, kind in types.items() if kind == "counter" and name.startswith("db_")}
    assert {"db_queries", "db_query_errors", "db_slow_queries", "db_transactions", "db_connections_created"} <= counters
    grown = 0
    for (name, labels), value in before.items():
        if name.removesuffix("_total") in counters:
            assert after[(name, labels)] >= value, name
            grown += after[(name, labels)] > value
    assert after[("db_queries_total", label)] == before[("db_queries_total", label)] + 6
    assert after[("db_transactions_total", (*label, ("outcome", "committed")))] > 0
    assert grown >= 2
    # the second app's database is exported on the same registry under its own alias
    assert after[("db_queries_total", (("database", "metrics_b"), ("engine", "primary")))] == 2
    assert "metrics-pw-31" not in after_text
    assert "127.0.0.1" not in after_text
