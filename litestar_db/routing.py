"""Read-replica routing: replica state, selection strategies, read-your-writes tokens and the routing session.

The routing session is SQLAlchemy's documented extension point: a :class:`~sqlalchemy.orm.Session` subclass
overriding :meth:`~sqlalchemy.orm.Session.get_bind` ("Custom Vertical Partitioning"), handed to
:class:`~sqlalchemy.ext.asyncio.async_sessionmaker` as ``sync_session_class``. Every statement is routed on its
own (Rails' automatic role switching and GitLab's database load balancer are the references):

* plain reads (``SELECT`` without ``FOR UPDATE``/``FOR SHARE``, ``text()`` that is plainly ``SELECT``/``WITH …
  SELECT``) go to one healthy replica, chosen once per session by the configured strategy and weights;
* everything else (INSERT/UPDATE/DELETE, flushes, locking reads, other raw SQL, an explicit ``connection()``)
  goes to the primary, and from then on the whole session stays on the primary, so it reads its own writes;
* in ``read_only`` mode a write raises :class:`~litestar_db.errors.ReadOnlyError` before any SQL is sent.

A connection error on a replica read ejects that replica and re-runs the read once on another replica or the
primary; a SQL error (syntax, constraint, …) is raised as is and never re-run elsewhere.

No Litestar import here: the core runs in workers and scripts too.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState

from litestar_db._classify import is_plain_read
from litestar_db.engines import connection_options_engine
from litestar_db.errors import DatabaseUnavailableError, PoolTimeoutError, ReadOnlyError, translate_error
from litestar_db.read_your_writes import ReadYourWrites
from litestar_db.session import SyncSession

if TYPE_CHECKING:
    from sqlalchemy.engine import Result
    from sqlalchemy.ext.asyncio import AsyncEngine

    from litestar_db.stats import EngineCounters

__all__ = (
    "ReplicaSet",
    "ReplicaState",
    "RoutingMode",
    "RoutingSession",
    "is_plain_read",
)

logger = logging.getLogger("litestar_db")
RoutingMode = Literal["replica", "read_only", "primary"]
"""``replica``: reads on a replica, writes on the primary (then stay there); ``read_only``: reads on a replica,
writes raise ``ReadOnlyError``; ``primary``: everything on the primary."""


class ReplicaState:
    """Live state of one replica: health, lag, round-trip time and ejection (all times in seconds).

    Args:
        name: Label in stats and health output.
        engine: The replica's own engine (own pool).
        weight: Relative share of reads.
        counters: Statement counters of ``engine`` (``routed_reads`` is incremented here).
    """

    __slots__ = (
        "counters",
        "current_weight",
        "ejected_reason",
        "ejected_until",
        "engine",
        "healthy",
        "in_recovery",
        "lag_bytes",
        "lag_seconds",
        "last_probe",
        "name",
        "replay_lsn",
        "round_trip_ms",
        "weight",
    )

    def __init__(self, name: str, engine: AsyncEngine, weight: int, counters: EngineCounters) -> None:
        self.name = name
        self.engine = engine
        self.weight = weight
        self.counters = counters
        self.healthy = True
        """Result of the last probe (``True`` until a probe fails)."""
        self.ejected_until = 0.0
        """``time.monotonic()`` value until which the replica is out of rotation."""
        self.ejected_reason: str | None = None
        self.lag_seconds: float | None = None
        self.lag_bytes: int | None = None
        self.round_trip_ms: float | None = None
        self.replay_lsn: int | None = None
        """``pg_last_wal_replay_lsn()`` at the last probe (replay only moves forward, so it is a safe bound)."""
        self.in_recovery: bool | None = None
        self.last_probe: float | None = None
        self.current_weight = 0

    def available(self, now: float) -> bool:
        """Healthy and not ejected at monotonic time ``now``."""
        return self.healthy and now >= self.ejected_until

    def eject(self, seconds: float, reason: str) -> None:
        """Take the replica out of rotation for ``seconds`` (extends an ejection already running)."""
        self.ejected_until = max(self.ejected_until, time.monotonic() + seconds)
        self.ejected_reason = reason

    def ejected_for(self, now: float) -> float | None:
        """Seconds of ejection left at ``now``, or ``None`` when in rotation."""
        return round(self.ejected_until - now, 3) if self.ejected_until > now else None


class ReplicaSet:
    """The replicas and the strategy choosing among the available ones.

    Strategies: ``round_robin`` is nginx's smooth weighted round robin (weights 3 and 1 give exactly 3 of every
    4 picks to the first, interleaved); ``random`` draws with probability proportional to the weight;
    ``least_lag`` picks the replica with the fewest bytes of replay lag (ties: weighted round robin).

    Args:
        replicas: Replica states, in configuration order.
        strategy: ``"round_robin"``, ``"random"`` or ``"least_lag"``.
        cooldown_seconds: Ejection time after a failure.
        rng: Random source for ``random`` (tests may pass a seeded one).
        fallback_to_primary: Whether reads may use the primary while no replica is available.
        retry_after: Seconds for ``Retry-After`` when they may not.
    """

    __slots__ = ("cooldown_seconds", "fallback_to_primary", "replicas", "retry_after", "rng", "strategy")

    def __init__(
        self,
        replicas: list[ReplicaState],
        strategy: str,
        cooldown_seconds: float,
        rng: random.Random | None = None,
        *,
        fallback_to_primary: bool = True,
        retry_after: int | None = None,
    ) -> None:
        self.replicas = replicas
        self.strategy = strategy
        self.cooldown_seconds = cooldown_seconds
        self.rng = rng or random.Random()  # noqa: S311 - load balancing, not cryptography
        self.fallback_to_primary = fallback_to_primary
        self.retry_after = retry_after

    def choose(self, min_lsn: int | None = None, exclude: tuple[ReplicaState, ...] = ()) -> ReplicaState | None:
        """Pick a replica for a session's reads.

        Args:
            min_lsn: Only replicas known to have replayed this WAL position qualify (read-your-writes).
            exclude: Replicas that already failed for this session.

        Returns:
            The replica, or ``None`` when none is available (the caller falls back to the primary).
        """
        now = time.monotonic()
        candidates = [
            r
            for r in self.replicas
            if r.available(now)
            and r not in exclude
            and (min_lsn is None or (r.replay_lsn is not None and r.replay_lsn >= min_lsn))
        ]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        if self.strategy == "random":
            return self.rng.choices(candidates, weights=[r.weight for r in candidates])[0]
        if self.strategy == "least_lag":
            least = min(_lag_key(r) for r in candidates)
            candidates = [r for r in candidates if _lag_key(r) == least]
        return _smooth_weighted(candidates)

    def eject(self, replica: ReplicaState, reason: str) -> None:
        """Eject ``replica`` for the cooldown."""
        replica.eject(self.cooldown_seconds, reason)

    def connection_failed(self, replica: ReplicaState, exc: BaseException) -> None:
        """Eject ``replica`` after a connection error on a read (which the caller runs once on another host)."""
        self.eject(replica, f"connection error: {type(exc).__name__}")
        logger.warning(
            "replica %s: connection error on a read (%s); ejected for %ss, the read runs once on another host",
            replica.name,
            type(exc).__name__,
            self.cooldown_seconds,
        )

    def choose_for_read(
        self, token: ReadYourWrites | None, exclude: tuple[ReplicaState, ...] = ()
    ) -> ReplicaState | None:
        """The replica for reads that carry the client's read-your-writes ``token``, or ``None`` for the primary.

        With an LSN token only a replica that has replayed that WAL position qualifies; a time-window token (no
        LSN) reads the primary until it expires.

        Raises:
            DatabaseUnavailableError: no replica qualifies and ``fallback_to_primary`` is off.
        """
        replica = None
        if token is None or token.lsn is not None or token.expires_at <= time.time():
            replica = self.choose(None if token is None else token.lsn, exclude)
        if replica is None:
            self.check_fallback()
        return replica

    def check_fallback(self) -> None:
        """Allow reads on the primary (no replica chosen), or refuse them.

        Raises:
            DatabaseUnavailableError: ``fallback_to_primary`` is off.
        """
        if not self.fallback_to_primary:
            msg = "No replica is available and fallback to the primary is disabled"
            raise DatabaseUnavailableError(msg, retry_after=self.retry_after)


def _lag_key(replica: ReplicaState) -> float:
    return float("inf") if replica.lag_bytes is None else float(replica.lag_bytes)


def _smooth_weighted(candidates: list[ReplicaState]) -> ReplicaState:
    total = 0
    best = candidates[0]
    for replica in candidates:
        replica.current_weight += replica.weight
        total += replica.weight
        if replica.current_weight > best.current_weight:
            best = replica
    best.current_weight -= total
    return best


_UNSET: Any = object()


class RoutingSession(SyncSession):
    """Sync session routing each statement to the primary or a replica (see the module docstring).

    Extends :class:`litestar_db.session.SyncSession`, so the misuse guards of every litestar_db session apply.

    Built per :class:`~litestar_db.database.Database` as a subclass whose ``replica_set`` (with the fallback rule)
    and ``primary_counters`` class attributes are set; the async layer uses it through ``sync_session_class``.
    Per-session routing state is set by :meth:`configure_routing`.
    """

    replica_set: ReplicaSet
    primary_counters: EngineCounters
    readonly_binds: dict[Engine, Engine]
    """Primary bind → the same with ``postgresql_readonly`` (filled on first use; the router's subclass owns it)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.routing_mode: RoutingMode = "primary"
        self.route_label = "session"
        self.token: ReadYourWrites | None = None
        """The client's read-your-writes token, if any."""
        self.wrote = False
        """Set once a statement that may write (or an explicit ``connection()``) went to the primary."""
        self.pinned = False
        """Set once the session used the primary; every later statement goes there too."""
        self._target: ReplicaState | None = _UNSET
        self._failed: tuple[ReplicaState, ...] = ()
        self._last_replica: ReplicaState | None = None

    def configure_routing(self, mode: RoutingMode, label: str, token: ReadYourWrites | None = None) -> None:
        """Set the session's mode, the label used in errors, and the client's read-your-writes token."""
        self.routing_mode = mode
        self.route_label = label
        self.token = token

    @property
    def replica_name(self) -> str | None:
        """Name of the replica serving this session's reads, if one was chosen."""
        target = self._target
        return None if target is _UNSET or target is None else target.name

    def get_bind(self, mapper: Any = None, *, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        """The engine for one statement: a replica for plain reads, the primary otherwise.

        Raises:
            ReadOnlyError: a write in ``read_only`` mode (nothing is sent to any server).
            DatabaseUnavailableError: no replica available and ``fallback_to_primary`` is off.
        """
        if bind is not None:
            return bind
        mode = self.routing_mode
        if mode == "primary" or self.pinned:
            if not self.wrote and (self._flushing or not is_plain_read(clause)):
                self.wrote = True
            self.pinned = True
            return self.bind
        # An explicit ``connection()`` (no clause) is a read in read_only mode: the raw SQL runs READ ONLY.
        read = not self._flushing and (is_plain_read(clause) or (mode == "read_only" and clause is None))
        if not read:
            if mode == "read_only":
                what = "flush of pending changes" if self._flushing else type(clause).__name__
                msg = f"Write attempted on read-only {self.route_label} ({what}); nothing was sent to the database"
                raise ReadOnlyError(msg)
            self.wrote = self.pinned = True
            self._release_replica_connections()
            return self.bind
        target = self._target
        if target is _UNSET:
            target = self._choose()
        if target is None:
            self.primary_counters.routed_reads += 1
            if mode == "read_only":
                return self._readonly_primary_bind()
            self.pinned = True
            return self.bind
        self._last_replica = target
        target.counters.routed_reads += 1
        return target.engine.sync_engine

    def use_primary_for_reads(self) -> None:
        """Serve this session's reads from the primary (``READ ONLY`` in ``read_only`` mode): a route isolation
        level promises one snapshot on one server, which a replica's own transaction cannot keep."""
        self._target = None

    def _choose(self) -> ReplicaState | None:
        self._target = self.replica_set.choose_for_read(self.token, self._failed)
        return self._target

    def _readonly_primary_bind(self) -> Engine:
        """The primary with ``postgresql_readonly`` (asyncpg ``BEGIN READ ONLY``), sharing its pool; built once per
        primary bind (the plain primary, or one with a route isolation level) and router."""
        bind = self.bind
        assert isinstance(bind, Engine)
        readonly = self.readonly_binds.get(bind)
        if readonly is None:
            readonly = self.readonly_binds[bind] = connection_options_engine(bind, postgresql_readonly=True)
        return readonly

    def _release_replica_connections(self) -> None:
        """Give back the replica connections once the session moved to the primary.

        Their transactions are READ ONLY, so nothing is lost; kept, they would be committed at the end of the
        request, and a replica lost meanwhile would fail that COMMIT and with it the primary's write.
        """
        for replica in self.replica_set.replicas:
            self.drop_bind_connection(replica.engine.sync_engine)

    def _replica_failed(self, replica: ReplicaState, exc: BaseException) -> None:
        """Eject ``replica``, forget it for this session, and drop its broken connection from the transaction."""
        self.replica_set.connection_failed(replica, exc)
        self._failed = (*self._failed, replica)
        self._target = _UNSET
        # A broken connection cannot COMMIT (the session would fail at commit although its reads were retried
        # elsewhere). It held only this session's reads, so it is taken out of the session transaction.
        self.drop_bind_connection(replica.engine.sync_engine, invalidate=True)


def _is_connection_error(exc: BaseException) -> bool:
    err = translate_error(exc)
    return isinstance(err, DatabaseUnavailableError) and not isinstance(err, PoolTimeoutError)


@event.listens_for(RoutingSession, "do_orm_execute")
def _retry_read_elsewhere(state: ORMExecuteState) -> Result[Any] | None:
    """Re-run a replica read once on another host when the replica's connection failed (never on SQL errors)."""
    session = state.session
    if not isinstance(session, RoutingSession) or session.pinned or session.routing_mode == "primary":
        return None
    session._last_replica = None
    try:
        return state.invoke_statement()
    except Exception as exc:
        failed = session._last_replica
        if failed is None or not _is_connection_error(exc):
            raise
        session._replica_failed(failed, exc)
        return state.invoke_statement()
