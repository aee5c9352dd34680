"""``litestar database stats``: probe every engine and print the health and statistics figures.

The command builds a :class:`~litestar_db.database.Database` from the app's ``DatabasePlugin`` config, runs one
readiness probe per engine, checks out one pooled connection (``SELECT 1``), prints
:class:`~litestar_db.health.HealthResponse` and :class:`~litestar_db.stats.DatabaseStats`, and disposes the engines.
The pool figures are this command's own; a running server's live figures are at ``/health/ready`` (details) and
``/metrics``. Exits with status 1 when readiness is ``fail``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from advanced_alchemy.utils.cli_tools import click
from click import get_current_context
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from litestar_db.config import DatabaseConfig
from litestar_db.database import Database
from litestar_db.health import HealthChecker, HealthResponse
from litestar_db.stats import DatabaseStats

__all__ = ("collect_stats", "stats_command")


async def collect_stats(config: DatabaseConfig) -> tuple[HealthResponse, DatabaseStats]:
    """Probe every engine of a new :class:`Database` for ``config``, use the primary pool once, then dispose.

    Returns:
        The readiness report (with details) and the statistics taken after the probe.
    """
    db = Database(config)
    try:
        report = await HealthChecker(db).check(details=True)
        if report.status != "fail":
            async with db.connection() as conn:
                await conn.execute(text("SELECT 1"))
        return report, db.stats_snapshot()
    finally:
        await db.dispose()


def _table(report: HealthResponse, stats: DatabaseStats) -> Table:
    table = Table(title=f"database: {report.status}", show_lines=False)
    table.add_column("figure")
    engines = stats.engines
    for eng in engines:
        table.add_column(f"{eng.name} ({eng.role})", justify="right")

    def check(engine: str, measurement: str) -> Any:
        items = report.checks.get(f"{engine}:{measurement}")
        return items[0] if items else None

    rows: list[tuple[str, list[Any]]] = [
        ("status", [getattr(check(e.name, "responseTime"), "status", "-") for e in engines]),
        ("round trip (ms)", [getattr(check(e.name, "responseTime"), "observed_value", None) for e in engines]),
        ("location", [getattr(check(e.name, "responseTime"), "location", None) for e in engines]),
        ("pool size / max", [f"{e.pool.size} / {e.pool.max_size}" for e in engines]),
        ("checked out", [e.pool.checked_out for e in engines]),
        ("idle", [e.pool.checked_in for e in engines]),
        ("overflow", [e.pool.overflow for e in engines]),
        ("waiting", [e.pool.waiting for e in engines]),
        ("checkout timeouts", [e.pool.checkout_timeouts for e in engines]),
        ("connections created", [e.pool.connections_created for e in engines]),
        ("connections invalidated", [e.pool.connections_invalidated for e in engines]),
        ("queries", [e.queries for e in engines]),
        ("errors", [e.errors for e in engines]),
        ("slow queries", [e.slow_queries for e in engines]),
        ("commits", [e.commits for e in engines]),
        ("rollbacks", [e.rollbacks for e in engines]),
        ("routed reads", [e.routed_reads for e in engines]),
        ("lag (s)", [e.lag_seconds for e in engines]),
        ("lag (bytes)", [e.lag_bytes for e in engines]),
    ]
    for label, values in rows:
        table.add_row(label, *("-" if v is None else str(v) for v in values))
    table.caption = f"transactions retried: {stats.transactions_retried}"
    return table


@click.command(name="stats")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of a table.")
def stats_command(as_json: bool) -> None:
    """Probe every engine and print health, pool and usage figures."""
    ctx = get_current_context()
    config: DatabaseConfig = ctx.obj["database_config"]
    report, stats = asyncio.run(collect_stats(config))
    if as_json:
        payload = msgspec.json.encode({"health": report, "stats": stats})
        click.echo(msgspec.json.format(payload, indent=2).decode())
    else:
        console = Console()
        console.print(_table(report, stats))
        for check_list in report.checks.values():
            for item in check_list:
                if item.output:
                    console.print(f"[yellow]{item.component_id}[/]: {item.output}")
    if report.status == "fail":
        ctx.exit(1)
