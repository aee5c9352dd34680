"""Replica engines, the background lag monitor, and the router tying them to the routing session.

The monitor probes every replica each ``monitor_interval_seconds`` over its own one-connection pool (so a probe
never waits behind a busy request pool) and records:

* ``lag_bytes`` - ``pg_wal_lsn_diff(primary pg_current_wal_lsn(), replica pg_last_wal_replay_lsn())``;
* ``lag_seconds`` - ``0`` when the replica has replayed everything the primary had written (an idle but caught-up
  replica has no lag, although ``now() - pg_last_xact_replay_timestamp()`` keeps growing while the primary is
  idle); otherwise the time since the primary first reported a WAL position beyond the replica's replay
  position (monitor clock, so no clock skew between servers), or ``now() - pg_last_xact_replay_timestamp()`` when
  the monitor's history does not go back that far;
* ``round_trip_ms`` of the probe query.

A replica over ``max_lag_seconds``/``max_lag_bytes``, or failing its probe, is ejected for
``failure_cooldown_seconds`` (GitLab's load balancer does the same with its replication-lag check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from litestar_db.config import DatabaseConfig, PoolConfig
from litestar_db.engines import create_engine_for
from litestar_db.instrument import instrument_engine
from litestar_db.read_your_writes import ReadYourWrites, TokenSigner, format_lsn, parse_lsn
from litestar_db.routing import ReplicaSet, ReplicaState, RoutingMode, RoutingSession
from litestar_db.session import AsyncSession, make_sessionmaker
from litestar_db.stats import EngineCounters, EngineStats

__all__ = ("LagMonitor", "ReadRouting", "ReplicaRouter", "read_routing")

logger = logging.getLogger("litestar_db")
_REPLICA_PROBE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " pg_wal_lsn_diff(CAST(CAST(:primary_lsn AS text) AS pg_lsn), pg_last_wal_replay_lsn())::bigint,"
    " EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
)
_PRIMARY_LSN = text("SELECT pg_current_wal_lsn()::text")

ReadRouting = Callable[[], tuple[RoutingMode, ReadYourWrites | None]]
"""Where the current unit of work's session-free reads go: its routing mode and read-your-writes token."""
read_routing: ContextVar[ReadRouting | None] = ContextVar("litestar_db_read_routing", default=None)
"""Set by the Litestar layer for each request with the read/write split on: session-free reads
(:meth:`ReplicaRouter.choose_for_read`) then follow the request's routing (``primary`` routes and guards, a
read-your-writes token, a session that already wrote) as its session does. Unset: a read goes to any replica."""


class LagMonitor:
    """Background task measuring replica health and lag (see the module docstring).

    Args:
        replica_set: The replicas to probe and eject.
        primary_probe: One-connection engine to the primary (for ``pg_current_wal_lsn()``).
        probes: One-connection engine per replica, by replica name.
        interval: Seconds between probe rounds.
        timeout: Seconds one probe may take before it counts as a failure.
        max_lag_seconds: Ejection threshold (``None``: not checked).
        max_lag_bytes: Ejection threshold (``None``: not checked).
    """

    def __init__(
        self,
        replica_set: ReplicaSet,
        primary_probe: AsyncEngine,
        probes: dict[str, AsyncEngine],
        *,
        interval: float,
        timeout: float,
        max_lag_seconds: float | None,
        max_lag_bytes: int | None,
    ) -> None:
        self.replica_set = replica_set
        self.primary_probe = primary_probe
        self.probes = probes
        self.interval = interval
        self.timeout = timeout
        self.max_lag_seconds = max_lag_seconds
        self.max_lag_bytes = max_lag_bytes
        window = max(60.0, 3 * (max_lag_seconds or 0.0))
        self._history: deque[tuple[float, int]] = deque(maxlen=min(10_000, int(window / interval) + 2))
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background task on the running event loop (no-op when running)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="litestar_db-lag-monitor")

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe_once()
            except Exception:  # the monitor must survive anything; failures are recorded per replica
                logger.exception("replica lag probe round failed")

    async def probe_once(self) -> None:
        """Probe the primary's WAL position, then every replica concurrently, and eject where needed."""
        primary_lsn: int | None = None
        try:
            async with asyncio.timeout(self.timeout), self.primary_probe.connect() as conn:
                primary_lsn = parse_lsn(await conn.scalar(_PRIMARY_LSN))
        except Exception as exc:  # primary down: lag cannot be measured this round
            logger.warning("cannot read the primary's WAL position for replica lag: %s", type(exc).__name__)
        now = time.monotonic()
        if primary_lsn is not None:
            self._history.append((now, primary_lsn))
        await asyncio.gather(*(self._probe(r, primary_lsn, now) for r in self.replica_set.replicas))

    async def _probe(self, replica: ReplicaState, primary_lsn: int | None, sampled_at: float) -> None:
        params = {"primary_lsn": format_lsn(primary_lsn) if primary_lsn is not None else None}
        try:
            async with asyncio.timeout(self.timeout), self.probes[replica.name].connect() as conn:
                started = time.perf_counter()
                row = (await conn.execute(_REPLICA_PROBE, params)).one()
                replica.round_trip_ms = round((time.perf_counter() - started) * 1000, 3)
        except Exception as exc:  # any failure ejects the replica
            if replica.healthy:  # log transitions only, not every probe of a replica that stays down
                logger.warning("replica %s failed its probe (%s); ejected", replica.name, type(exc).__name__)
            replica.healthy = False
            self.replica_set.eject(replica, f"probe failed: {type(exc).__name__}")
            return
        in_recovery, replay_text, diff, replay_age = row
        if not replica.healthy:
            logger.info("replica %s answers again; back in rotation after its cooldown", replica.name)
        replica.healthy = True
        replica.in_recovery = bool(in_recovery)
        replica.last_probe = time.monotonic()
        if not in_recovery:  # promoted, or the URL points at another primary: its data is not the primary's
            if replica.ejected_until <= time.monotonic():
                logger.warning("replica %s is not a standby (pg_is_in_recovery() is false); ejected", replica.name)
            self.replica_set.eject(replica, "not a standby: pg_is_in_recovery() is false")
            return
        replay_lsn = parse_lsn(replay_text)
        replica.replay_lsn = replay_lsn
        if replay_lsn is None or diff is None:  # not a standby, or the primary was unreachable
            replica.lag_bytes = None
            replica.lag_seconds = None
            return
        replica.lag_bytes = max(0, int(diff))
        replica.lag_seconds = 0.0 if replica.lag_bytes == 0 else self._seconds_behind(replay_lsn, replay_age)
        reason = self._over_limit(replica)
        if reason is not None:
            if replica.ejected_until <= time.monotonic():
                logger.warning("replica %s ejected: %s", replica.name, reason)
            self.replica_set.eject(replica, reason)

    def _seconds_behind(self, replay_lsn: int, replay_age: float | None) -> float | None:
        now = time.monotonic()
        history = self._history
        for index, (sampled_at, lsn) in enumerate(history):
            if lsn > replay_lsn:
                if index > 0 or replay_age is None:
                    return round(now - sampled_at, 3)
                break
        return None if replay_age is None else round(max(0.0, replay_age), 3)

    def _over_limit(self, replica: ReplicaState) -> str | None:
        lag_s, lag_b = replica.lag_seconds, replica.lag_bytes
        if self.max_lag_seconds is not None and lag_s is not None and lag_s > self.max_lag_seconds:
            return f"lag {lag_s}s over {self.max_lag_seconds}s"
        if self.max_lag_bytes is not None and lag_b is not None and lag_b > self.max_lag_bytes:
            return f"lag {lag_b} bytes over {self.max_lag_bytes}"
        return None


class ReplicaRouter:
    """Everything the read/write split needs, owned by :class:`~litestar_db.database.Database`.

    Args:
        config: The database config (``read_write.enable_read_write_split`` on, replicas given).
        primary: The primary engine.
        primary_counters: The primary's counters (reads that fell back to it are counted there).
    """

    def __init__(self, config: DatabaseConfig, primary: AsyncEngine, primary_counters: EngineCounters) -> None:
        rw = config.read_write
        self.config = config
        self.primary = primary
        self.counters: dict[str, EngineCounters] = {}
        states: list[ReplicaState] = []
        probes: dict[str, AsyncEngine] = {}
        probe_pool = PoolConfig(min_size=1, max_size=1, pre_ping=False, timeout=config.health.probe_timeout_seconds)
        self._pool_sizes: dict[str, int] = {}
        for index, replica in enumerate(rw.replicas, start=1):
            name = replica.name or f"replica{index}"
            url = config.replica_url(replica)
            pool = replica.pool or config.pool
            engine = _read_only_engine(config, url, pool)
            self.counters[name] = counters = EngineCounters(config.slow_query_seconds)
            instrument_engine(engine, counters, statements=config.statement_stats, reset_on_return=pool.reset_on_return)
            states.append(ReplicaState(name, engine, replica.weight, counters))
            probes[name] = _read_only_engine(config, url, probe_pool)
            self._pool_sizes[name] = pool.max_size
        self.replica_set = ReplicaSet(
            states,
            rw.strategy,
            rw.failure_cooldown_seconds,
            fallback_to_primary=rw.fallback_to_primary,
            retry_after=config.health.retry_after_seconds,
        )
        self.session_class: type[RoutingSession] = type(
            "RoutingSession",
            (RoutingSession,),
            {
                "replica_set": self.replica_set,
                "primary_counters": primary_counters,
                "readonly_binds": {},
            },
        )
        self.sessionmaker = self.maker_for(primary)
        secret = rw.token_secret.encode() if rw.token_secret else os.urandom(32)
        lsn_lifetime = max(rw.sticky_seconds, rw.max_lag_seconds or 60.0)
        self.signer = TokenSigner(secret, lsn_lifetime, rw.sticky_seconds)
        self.monitor = LagMonitor(
            self.replica_set,
            create_engine_for(config, config.sqlalchemy_url(), probe_pool),
            probes,
            interval=rw.monitor_interval_seconds,
            timeout=config.health.probe_timeout_seconds,
            max_lag_seconds=rw.max_lag_seconds,
            max_lag_bytes=rw.max_lag_bytes,
        )
        self._started = False

    def maker_for(self, bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        """A routing session maker whose primary is ``bind`` (e.g. the primary with an isolation level)."""
        return make_sessionmaker(bind, self.session_class)

    def session(
        self,
        mode: RoutingMode,
        label: str,
        token: ReadYourWrites | None = None,
        maker: async_sessionmaker[AsyncSession] | None = None,
    ) -> AsyncSession:
        """A new routing session (not yet connected); starts the monitor lazily on the running loop.

        Returns:
            An :class:`~sqlalchemy.ext.asyncio.AsyncSession` whose ``sync_session`` is a :class:`RoutingSession`.
        """
        if not self._started:
            self.start_monitor()
        session = (maker or self.sessionmaker)()
        sync = session.sync_session
        assert isinstance(sync, RoutingSession)
        sync.configure_routing(mode, label, token)
        return session

    def choose_for_read(self, exclude: tuple[ReplicaState, ...] = ()) -> ReplicaState | None:
        """The replica for one session-free read (:mod:`litestar_db.fetch`), or ``None`` for the primary.

        The same choice as the current request's routing session (:data:`read_routing`): the primary for a
        ``primary`` route or once the session wrote; with a read-your-writes token, only a replica that has
        replayed its WAL position (the primary while a time-window token lasts); ejected and lagging replicas are
        skipped. Starts the lag monitor lazily on the running loop.

        Raises:
            DatabaseUnavailableError: no replica is available and ``fallback_to_primary`` is off.
        """
        if not self._started:
            self.start_monitor()
        routing = read_routing.get()
        mode, token = ("replica", None) if routing is None else routing()
        return None if mode == "primary" else self.replica_set.choose_for_read(token, exclude)

    def verify_token(self, raw: str | None) -> ReadYourWrites | None:
        """The verified token, or ``None`` (absent, tampered or expired)."""
        return self.signer.verify(raw)

    async def issue_token(self) -> tuple[str, float]:
        """A token for a client that just committed a write: the primary's WAL position now.

        Falls back to a time-window token (``sticky_seconds``) when the position cannot be read.

        Returns:
            ``(token, lifetime_seconds)``.
        """
        lsn: int | None = None
        try:
            async with self.primary.connect() as conn:
                lsn = parse_lsn(await conn.scalar(_PRIMARY_LSN))
        except Exception as exc:  # degrade to the time window, never fail the response
            logger.warning("cannot read pg_current_wal_lsn() for the read-your-writes token: %s", type(exc).__name__)
        return self.signer.issue(lsn)

    def start_monitor(self) -> None:
        """Start the lag monitor on the running loop (no-op without a running loop or when started)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._started = True
        self.monitor.start()

    async def start(self) -> None:
        """Probe every replica once (so the first requests know their state), then start the monitor."""
        await self.monitor.probe_once()
        self.start_monitor()

    def engine_stats(self) -> list[EngineStats]:
        """One :class:`EngineStats` per replica (health, ejection, lag, round trip, routed reads)."""
        now = time.monotonic()
        return [
            self.counters[r.name].engine_stats(
                r.name,
                "replica",
                "postgresql",
                r.engine,
                self._pool_sizes[r.name],
                healthy=r.available(now),
                ejected_until=r.ejected_until if r.ejected_until > now else None,
                lag_seconds=r.lag_seconds,
                lag_bytes=r.lag_bytes,
                round_trip_ms=r.round_trip_ms,
                ejected_reason=r.ejected_reason,
            )
            for r in self.replica_set.replicas
        ]

    async def dispose(self) -> None:
        """Stop the monitor and close every replica and probe connection."""
        await self.monitor.stop()
        engines = [r.engine for r in self.replica_set.replicas]
        engines += [*self.monitor.probes.values(), self.monitor.primary_probe]
        await asyncio.gather(*(e.dispose() for e in engines), return_exceptions=True)


def _read_only_engine(config: DatabaseConfig, url: Any, pool: PoolConfig) -> AsyncEngine:
    """A replica engine whose every transaction is READ ONLY (``default_transaction_read_only``)."""
    return create_engine_for(config, url, pool, server_settings={"default_transaction_read_only": "on"})
