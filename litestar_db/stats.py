"""Statistics: msgspec Structs returned by :meth:`Database.get_stats` and the counters behind them.

:mod:`litestar_db.instrument` feeds the counters (:class:`EngineCounters`). They are plain integers updated on
the event loop thread, so reading them is cheap and needs no lock.
"""

from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

if TYPE_CHECKING:
    from litestar_db.routing import ReplicaState

__all__ = (
    "DatabaseStats",
    "EngineCounters",
    "EngineStats",
    "EngineTarget",
    "PoolStats",
    "SlowQuery",
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
    """Mutable counters of one engine, fed by :func:`litestar_db.instrument.instrument_engine`."""

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

    def record_statement(self, statement: str, seconds: float) -> None:
        """Count one statement that took ``seconds``, and keep it among the slowest when it was slow."""
        self.queries += 1
        if seconds >= self.slow_threshold:
            self.record_slow(statement, seconds)

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
