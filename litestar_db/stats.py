"""Statistics: msgspec Structs returned by :meth:`Database.get_stats` and the counters behind them.

Counters are fed by SQLAlchemy engine and pool events (``connect``, ``invalidate``, ``soft_invalidate``,
``before_cursor_execute``/``after_cursor_execute``, ``handle_error``, ``commit``, ``rollback``) and, for what no
event reports (checkouts waiting for a connection, checkouts that timed out), by :class:`InstrumentedQueuePool`,
the pool class every pooled engine uses. They are plain integers updated on the event loop thread, so reading them
is cheap and needs no lock.
"""

from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, Pool, QueuePool

if TYPE_CHECKING:
    from litestar_db.routing import ReplicaState

__all__ = (
    "DatabaseStats",
    "EngineCounters",
    "EngineStats",
    "EngineTarget",
    "InstrumentedQueuePool",
    "PoolStats",
    "SlowQuery",
    "instrument_engine",
)

_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACES = re.compile(r"\s+")
_SLOWEST_KEPT = 5


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    """Connection-pool figures of one engine (HikariCP's vocabulary: total/active/idle/pending)."""

    size: int
    """Configured persistent connections (``pool.min_size``)."""
    max_size: int
    """Configured upper bound, overflow included."""
    checked_out: int
    """Connections currently lent to sessions (active)."""
    checked_in: int
    """Open connections idle in the pool."""
    overflow: int
    """Connections open above ``size`` right now (0 while the pool is still filling)."""
    waiting: int
    """Checkouts currently waiting for a connection to be returned (HikariCP's ``pending``)."""
    checkout_timeouts: int
    """Checkouts that gave up after ``pool.timeout`` seconds, since start."""
    connections_created: int
    """Server connections opened, since start."""
    connections_invalidated: int
    """Connections discarded as broken or stale, since start."""


class SlowQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A slow statement, normalized (literals replaced by ``?``; parameters are never recorded)."""

    statement: str
    seconds: float


class EngineStats(msgspec.Struct, frozen=True, kw_only=True):
    """Figures of one engine (the primary or a replica)."""

    name: str
    """``"primary"`` or the replica's name."""
    role: str
    """``"primary"`` or ``"replica"``."""
    backend: str
    """``"postgresql"`` or ``"sqlite"``."""
    pool: PoolStats
    queries: int
    """Statements executed, since start."""
    errors: int
    """Driver errors seen by this engine (failed statements and failed connection attempts), since start."""
    slow_queries: int
    """Statements slower than ``slow_query_seconds``, since start."""
    slowest: list[SlowQuery]
    """The slowest statements seen (at most 5), slowest first."""
    commits: int
    """Transactions committed."""
    rollbacks: int
    """Transactions rolled back."""
    routed_reads: int = 0
    """Statements routed to this engine by the read/write split."""
    healthy: bool = True
    """Last known health (replicas: not ejected)."""
    ejected_until: float | None = None
    """Monotonic-clock seconds until which a replica is out of rotation, if ejected."""
    lag_seconds: float | None = None
    """Replica replay lag in seconds, when measured."""
    lag_bytes: int | None = None
    """Replica replay lag in bytes of WAL, when measured."""
    round_trip_ms: float | None = None
    """Round-trip time of the last lag probe, milliseconds (replicas)."""
    ejected_reason: str | None = None
    """Why the replica was last ejected (``"lag 3.1s over 1.0s"``, ``"connection error: …"``)."""


class DatabaseStats(msgspec.Struct, frozen=True, kw_only=True):
    """Everything :meth:`Database.get_stats` reports; JSON-serialisable with ``msgspec.json.encode``."""

    engines: list[EngineStats]
    transactions_retried: int
    """Unit-of-work attempts re-run after a serialization failure, deadlock or lost connection."""
    checkout_timeouts: int
    """Requests/blocks that could not get a connection within ``pool.timeout`` (all engines)."""


@dataclass(frozen=True, slots=True)
class EngineTarget:
    """One server the database talks to, as health probes, statistics and metrics see it."""

    name: str
    """``"primary"`` or the replica's name (the ``engine`` label in stats, health and metrics)."""
    role: Literal["primary", "replica"]
    """The server's role."""
    engine: AsyncEngine
    """The pooled engine requests use (pool figures are read from it)."""
    probe_engine: AsyncEngine
    """An unpooled engine to the same server, so a probe never waits behind an exhausted pool."""
    max_size: int
    """Configured upper bound of the engine's pool."""
    state: ReplicaState | None = None
    """The routing layer's live view of a replica (health, ejection, lag); ``None`` for the primary."""

    @property
    def ejected(self) -> bool:
        """Whether the routing layer has taken this replica out of rotation (ejected, or failed its last probe)."""
        return self.state is not None and not self.state.available(time.monotonic())

    @property
    def lag_seconds(self) -> float | None:
        """Replay lag in seconds measured by the routing layer's lag monitor."""
        return self.state.lag_seconds if self.state is not None else None

    @property
    def lag_bytes(self) -> int | None:
        """Replay lag in bytes of WAL measured by the routing layer's lag monitor."""
        return self.state.lag_bytes if self.state is not None else None

    @property
    def location(self) -> str:
        """``host:port/database`` (PostgreSQL) or the SQLite file name: never the URL, user or password."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            return Path(url.database or ":memory:").name
        return f"{url.host}:{url.port or 5432}/{url.database}"


class EngineCounters:
    """Mutable counters of one engine, fed by SQLAlchemy events."""

    __slots__ = (
        "checkout_timeouts",
        "commits",
        "connections_created",
        "connections_invalidated",
        "errors",
        "pool_instrumented",
        "queries",
        "rollbacks",
        "routed_reads",
        "slow_queries",
        "slow_threshold",
        "slowest",
        "waiting",
    )

    def __init__(self, slow_threshold: float) -> None:
        self.slow_threshold = slow_threshold
        self.queries = 0
        self.errors = 0
        self.slow_queries = 0
        self.commits = 0
        self.rollbacks = 0
        self.connections_created = 0
        self.connections_invalidated = 0
        self.checkout_timeouts = 0
        self.waiting = 0
        self.routed_reads = 0
        self.pool_instrumented = False
        self.slowest: list[tuple[float, str]] = []

    def record_slow(self, statement: str, seconds: float) -> None:
        """Count a slow statement and keep the slowest few, normalized."""
        self.slow_queries += 1
        normalized = _SPACES.sub(" ", _LITERALS.sub("?", statement)).strip()[:500]
        item = (seconds, normalized)
        if len(self.slowest) < _SLOWEST_KEPT:
            heapq.heappush(self.slowest, item)
        else:
            heapq.heappushpop(self.slowest, item)

    def pool_stats(self, engine: AsyncEngine, max_size: int) -> PoolStats:
        """Read the pool's live figures.

        Returns:
            A :class:`PoolStats` snapshot.
        """
        pool = engine.sync_engine.pool
        if isinstance(pool, QueuePool):
            size, checked_out, checked_in = pool.size(), pool.checkedout(), pool.checkedin()
            overflow = max(pool.overflow(), 0)  # SQLAlchemy counts from -size while the pool fills
        else:
            size, checked_out, checked_in, overflow = 0, 0, 0, 0
        return PoolStats(
            size=size,
            max_size=max_size,
            checked_out=checked_out,
            checked_in=checked_in,
            overflow=overflow,
            waiting=self.waiting,
            checkout_timeouts=self.checkout_timeouts,
            connections_created=self.connections_created,
            connections_invalidated=self.connections_invalidated,
        )

    def engine_stats(
        self, name: str, role: str, backend: str, engine: AsyncEngine, max_size: int, **extra: Any
    ) -> EngineStats:
        """An :class:`EngineStats` snapshot from these counters; ``extra`` sets the replica-only fields.

        Returns:
            The snapshot.
        """
        return EngineStats(
            name=name,
            role=role,
            backend=backend,
            pool=self.pool_stats(engine, max_size),
            queries=self.queries,
            errors=self.errors,
            slow_queries=self.slow_queries,
            slowest=self.slowest_queries(),
            commits=self.commits,
            rollbacks=self.rollbacks,
            routed_reads=self.routed_reads,
            **extra,
        )

    def slowest_queries(self) -> list[SlowQuery]:
        """The slowest statements, slowest first."""
        return [SlowQuery(statement=s, seconds=round(t, 6)) for t, s in sorted(self.slowest, reverse=True)]


class InstrumentedQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, also counting waiting checkouts and checkout timeouts.

    No pool event fires *before* a checkout, so these two figures come from ``_do_get`` (the method pool classes
    implement to hand out a connection). A checkout counts as waiting from the moment the pool is at
    ``max_size`` (every connection lent, no overflow left) until it gets a connection or gives up after
    ``pool.timeout`` seconds (HikariCP's ``pendingThreads`` and ``connectionTimeout`` count). Outside that case a
    checkout never suspends, so the figure is exact for any observer on the event loop.
    """

    _sqla_logger_namespace = "sqlalchemy.pool.impl.InstrumentedQueuePool"  # log under sqlalchemy.* like its base

    counters: EngineCounters | None = None
    """Where the figures go; set by :func:`instrument_engine` and carried over by :meth:`recreate`."""

    def _do_get(self) -> ConnectionPoolEntry:
        counters = self.counters
        if counters is None or not (-1 < self._max_overflow <= self._overflow):
            return super()._do_get()
        counters.waiting += 1
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            counters.checkout_timeouts += 1
            raise
        finally:
            counters.waiting -= 1

    def recreate(self) -> QueuePool:
        """A fresh pool with the same settings (``engine.dispose()``), still feeding the same counters.

        Returns:
            The new pool.
        """
        new = super().recreate()
        if isinstance(new, InstrumentedQueuePool):
            new.counters = self.counters
        return new


def instrument_engine(engine: AsyncEngine, counters: EngineCounters, *, statements: bool = True) -> None:
    """Attach the event listeners that feed ``counters`` to ``engine`` and its pool.

    Args:
        engine: The engine to observe.
        counters: Where the figures go.
        statements: Also count statements, errors, slow queries, commits and rollbacks (engine events on every
            statement: about 50 us per request on a 2-core machine); pool figures are always kept.
    """
    sync_engine = engine.sync_engine
    if isinstance(sync_engine.pool, InstrumentedQueuePool):
        sync_engine.pool.counters = counters
        counters.pool_instrumented = True

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        counters.connections_created += 1

    def on_invalidate(dbapi_conn: Any, record: Any, exc: BaseException | None) -> None:
        counters.connections_invalidated += 1

    def before_execute(conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info["litestar_db.t0"] = time.perf_counter()

    def after_execute(conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        counters.queries += 1
        started = conn.info.pop("litestar_db.t0", None)
        if started is not None:
            elapsed = time.perf_counter() - started
            if elapsed >= counters.slow_threshold:
                counters.record_slow(statement, elapsed)

    def on_error(context: ExceptionContext) -> None:
        if context.statement is not None:
            counters.queries += 1
        counters.errors += 1

    def on_commit(conn: Connection) -> None:
        counters.commits += 1

    def on_rollback(conn: Connection) -> None:
        counters.rollbacks += 1

    pool: Pool = sync_engine.pool
    event.listen(pool, "connect", on_connect)
    event.listen(pool, "invalidate", on_invalidate)
    event.listen(pool, "soft_invalidate", on_invalidate)
    if not statements:
        return
    event.listen(sync_engine, "before_cursor_execute", before_execute)
    event.listen(sync_engine, "after_cursor_execute", after_execute)
    event.listen(sync_engine, "handle_error", on_error)
    event.listen(sync_engine, "commit", on_commit)
    event.listen(sync_engine, "rollback", on_rollback)
