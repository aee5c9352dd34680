"""Statistics and health probes of :class:`~litestar_db.database.Database` (kept apart to keep that module small).

The methods here are part of ``Database``'s public API (``await db.get_stats()``, ``await db.health_check()``, …);
this module only holds them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from litestar_db.config import DatabaseConfig, ReplicaConfig
from litestar_db.engines import create_engine_for
from litestar_db.errors import PoolTimeoutError
from litestar_db.stats import DatabaseStats, EngineCounters, EngineTarget

if TYPE_CHECKING:
    from litestar_db.replicas import ReplicaRouter

__all__ = ("MonitoringMixin",)

logger = logging.getLogger("litestar_db")


class MonitoringMixin:
    """Counters, engine listing, statistics and health probes; mixed into ``Database``."""

    config: DatabaseConfig
    engine: AsyncEngine
    router: ReplicaRouter | None
    _counters: dict[str, EngineCounters]
    _retried: int
    _probe_engine: AsyncEngine | None
    _replica_probe_engines: dict[str, AsyncEngine]

    # -- statistics ------------------------------------------------------------------------------------------
    def counters_retried(self) -> None:
        """Count one retried unit of work (called by :func:`~litestar_db.transactions.run_in_transaction`)."""
        self._retried += 1

    def record_error(self, exc: BaseException, engine: str = "primary") -> None:
        """Count errors that no engine event sees: checkout timeouts of a pool that does not count them itself
        (every pooled engine of :func:`~litestar_db.engines.create_engine_for` does)."""
        counters = self._counters.get(engine)
        if isinstance(exc, PoolTimeoutError) and counters is not None and not counters.pool_instrumented:
            counters.checkout_timeouts += 1

    def engine_targets(self) -> list[EngineTarget]:
        """Every server this database uses, primary first (replicas follow when the read/write split has them).

        Health probes, :meth:`get_stats` and the Prometheus collector iterate this list, so a server listed here
        is probed, counted and exported without further wiring.

        Returns:
            A list of :class:`EngineTarget`.
        """
        targets = [EngineTarget("primary", "primary", self.engine, self.probe_engine(), self.config.pool.max_size)]
        replicas = self.router.replica_set.replicas if self.router is not None else ()
        for state in replicas:
            replica = self._replica_configs().get(state.name)
            if replica is None:
                continue
            pool = replica.pool or self.config.pool
            probe = self._replica_probe_engines.get(state.name)
            if probe is None:
                url = self.config.replica_url(replica)
                probe = create_engine_for(self.config, url, pool, null_pool=True)
                self._replica_probe_engines[state.name] = probe
            targets.append(EngineTarget(state.name, "replica", state.engine, probe, pool.max_size, state))
        return targets

    def _replica_configs(self) -> dict[str, ReplicaConfig]:
        replicas = self.config.read_write.replicas
        return {r.name or f"replica{i}": r for i, r in enumerate(replicas, start=1)}

    def stats_snapshot(self) -> DatabaseStats:
        """Pool and usage figures of every engine, read synchronously (no I/O; used at Prometheus scrape time).

        Returns:
            A :class:`~litestar_db.stats.DatabaseStats`.
        """
        counters = self._counters["primary"]
        primary = counters.engine_stats(
            "primary", "primary", self.config.type.value, self.engine, self.config.pool.max_size
        )
        replicas = self.router.engine_stats() if self.router is not None else []
        return DatabaseStats(
            engines=[primary, *replicas],
            transactions_retried=self._retried,
            checkout_timeouts=sum(c.checkout_timeouts for c in self._counters.values())
            + sum(c.checkout_timeouts for c in (self.router.counters.values() if self.router else ())),
        )

    async def get_stats(self) -> DatabaseStats:
        """Pool and usage figures of every engine (the users' guide's ``await db.get_stats()``).

        Returns:
            A :class:`~litestar_db.stats.DatabaseStats` (msgspec Struct; ``msgspec.json.encode`` it for JSON): per
            engine the pool (size, checked out, idle, overflow, waiting, checkout timeouts, connections created
            and invalidated), statement counts (queries, errors, slow queries with the slowest normalized
            statements), transactions committed and rolled back, routed reads; overall the retried units of work.
        """
        return self.stats_snapshot()

    # -- health ----------------------------------------------------------------------------------------------
    def probe_engine(self) -> AsyncEngine:
        """An engine without pooling for probes, so a probe never waits behind an exhausted pool."""
        if self._probe_engine is None:
            cfg = self.config
            self._probe_engine = create_engine_for(cfg, cfg.sqlalchemy_url(), cfg.pool, null_pool=True)
        return self._probe_engine

    async def health_check(self, probe_timeout: float | None = None) -> bool:
        """Whether the primary answers ``SELECT 1`` within ``probe_timeout`` seconds.

        ``probe_timeout`` defaults to ``health.probe_timeout_seconds``.

        Uses a dedicated unpooled connection, so it answers even when the request pool is exhausted.

        Returns:
            ``True`` when the primary answered; never raises for database errors.
        """
        limit = self.config.health.probe_timeout_seconds if probe_timeout is None else probe_timeout
        try:
            async with asyncio.timeout(limit):
                async with self.probe_engine().connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except (Exception, TimeoutError):
            logger.debug("health check failed", exc_info=True)
            return False
        return True
