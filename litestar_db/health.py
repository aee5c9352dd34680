"""Readiness of every engine: cached, single-flight probes on connections outside the request pool.

:class:`HealthChecker` answers "can this process serve database work now?" in the shape of the IETF draft
*Health Check Response Format for HTTP APIs* (``application/health+json``): an overall ``status`` (``pass``,
``warn``, ``fail``) and ``checks`` keyed ``"<component>:<measurement>"``:

* ``primary:responseTime`` / ``<replica>:responseTime`` - one probe statement's round trip in milliseconds;
* ``<engine>:connections`` - the request pool's figures (checked out, idle, overflow, waiting), ``warn`` when the
  pool is exhausted (every connection lent and checkouts waiting);
* ``<replica>:replicationLag`` - replay lag in seconds (and bytes of WAL), ``warn`` beyond
  ``read_write.max_lag_seconds``/``max_lag_bytes`` or while the routing layer has ejected the replica;
* ``migrations:pending`` - when the app has a migrations directory (``migrations.script_location``) and the database
  exposes ``migrations.status()``: ``fail`` while revisions are pending and ``health.fail_on_pending_migrations``
  is set (a new release is not ready before its schema is).

The overall status is ``fail`` when the primary does not answer (or answers as a standby) or migrations are pending;
trouble on a replica or an exhausted pool is ``warn`` (Kubernetes keeps routing traffic; reads fall back to the
primary). Probe results are reused for ``health.cache_seconds`` and concurrent callers share the probe in flight,
so a flood of probes sends at most one statement per engine per interval (django-health-check and Spring Boot
Actuator probe on every call; this does not). Each probe opens an unpooled connection
(:meth:`Database.probe_engine <litestar_db.database.Database.probe_engine>`) under ``health.probe_timeout_seconds``,
so it answers while the request pool is exhausted. No output ever carries a URL, a user name or a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from sqlalchemy import text

from litestar_db.errors import root_cause
from litestar_db.read_your_writes import parse_lsn
from litestar_db.stats import EngineStats, PoolStats

if TYPE_CHECKING:
    from litestar_db.config import HealthConfig
    from litestar_db.database import Database
    from litestar_db.stats import EngineTarget

__all__ = ("HealthCheck", "HealthChecker", "HealthResponse", "HealthStatus", "ProbeResult")

logger = logging.getLogger("litestar_db")

HealthStatus = Literal["pass", "warn", "fail"]
"""The IETF draft's status values; ``warn`` still means healthy enough to serve (HTTP 200)."""

_PG_PROBE = text(
    "SELECT pg_is_in_recovery(),"
    " (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,"
    " CASE WHEN NOT pg_is_in_recovery() THEN NULL"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0"
    " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END"
)
_SQLITE_PROBE = text("SELECT 1")
_EXHAUSTED = "pool exhausted: every connection is checked out and checkouts are waiting"
_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


class HealthCheck(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One measurement of one component (an entry of ``checks`` in the IETF draft)."""

    status: Annotated[HealthStatus, msgspec.Meta(description="pass, warn or fail")]
    component_id: Annotated[
        str, msgspec.Meta(description="The engine name ('primary', a replica's name) or 'migrations'.")
    ]
    component_type: Annotated[
        str, msgspec.Meta(description="'datastore' for servers, 'component' for the migration state.")
    ]
    time: Annotated[str, msgspec.Meta(description="When the measurement was taken (ISO 8601, UTC).")]
    output: Annotated[
        str | None, msgspec.Meta(description="Why the status is not pass; never contains a host, URL or credential.")
    ] = None
    observed_value: Annotated[float | None, msgspec.Meta(description="The measurement (detail).")] = None
    observed_unit: Annotated[
        str | None, msgspec.Meta(description="Its unit: 'ms', 's', 'connections', 'revisions' (detail).")
    ] = None
    location: Annotated[
        str | None, msgspec.Meta(description="host:port/database of the server (detail; never the URL or the user).")
    ] = None
    pool: Annotated[PoolStats | None, msgspec.Meta(description="Request-pool figures (detail).")] = None
    lag_bytes: Annotated[
        int | None, msgspec.Meta(description="Replica replay lag in bytes of WAL behind the primary (detail).")
    ] = None
    ejected: Annotated[
        bool | None, msgspec.Meta(description="Whether the routing layer has taken the replica out of rotation.")
    ] = None
    current: Annotated[
        str | None, msgspec.Meta(description="Migration revision(s) the database is at, comma-separated (detail).")
    ] = None
    head: Annotated[
        str | None, msgspec.Meta(description="Head revision(s) of the migrations directory, comma-separated (detail).")
    ] = None
    pending: Annotated[int | None, msgspec.Meta(description="Migrations not applied yet.")] = None

    def public(self) -> HealthCheck:
        """The same check without detail fields (what anonymous callers see).

        Returns:
            A :class:`HealthCheck` holding only status, component, time, output, ``ejected`` and ``pending``.
        """
        return HealthCheck(
            status=self.status,
            component_id=self.component_id,
            component_type=self.component_type,
            time=self.time,
            output=self.output,
            ejected=self.ejected,
            pending=self.pending,
        )


class HealthResponse(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """A health response (IETF draft "Health Check Response Format for HTTP APIs", ``application/health+json``)."""

    status: Annotated[HealthStatus, msgspec.Meta(description="pass and warn are served with HTTP 200, fail with 503.")]
    description: Annotated[str | None, msgspec.Meta(description="What is checked")] = None
    output: Annotated[str | None, msgspec.Meta(description="Why the status is fail.")] = None
    checks: Annotated[
        dict[str, list[HealthCheck]], msgspec.Meta(description="Measurements keyed '<component>:<measurement>'.")
    ] = msgspec.field(default_factory=dict)

    def public(self) -> HealthResponse:
        """The response without detail fields.

        Returns:
            A :class:`HealthResponse` whose checks went through :meth:`HealthCheck.public`.
        """
        checks = {key: [c.public() for c in items] for key, items in self.checks.items()}
        return HealthResponse(status=self.status, description=self.description, output=self.output, checks=checks)


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of probing one engine (cached for ``health.cache_seconds``)."""

    ok: bool
    """The server answered the probe statement within the timeout."""
    time: str
    """When the probe finished (ISO 8601, UTC)."""
    round_trip_ms: float | None = None
    """Milliseconds the probe statement took (connection set-up excluded)."""
    output: str | None = None
    """Failure summary (exception class or timeout), never the driver's message."""
    in_recovery: bool | None = None
    """PostgreSQL ``pg_is_in_recovery()``: ``True`` on a standby."""
    wal_lsn: int | None = None
    """Current WAL position (primary) or replay position (standby), as a byte offset."""
    lag_seconds: float | None = None
    """Standby replay lag in seconds (0 when everything received is replayed)."""


class _Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    probes: dict[str, ProbeResult]
    migrations: HealthCheck | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def probe_target(target: EngineTarget, limit: float) -> ProbeResult:
    """Run one probe statement on ``target.probe_engine`` within ``limit`` seconds; never raises.

    Returns:
        A :class:`ProbeResult`.
    """
    postgres = target.probe_engine.url.get_backend_name() != "sqlite"
    try:
        async with asyncio.timeout(limit), target.probe_engine.connect() as conn:
            started = time.perf_counter()
            row = (await conn.execute(_PG_PROBE if postgres else _SQLITE_PROBE)).one()
            elapsed_ms = (time.perf_counter() - started) * 1000
    except TimeoutError:
        return ProbeResult(ok=False, time=_now(), output=f"no answer within {limit:g} s")
    except Exception as exc:
        logger.warning("health probe of %s failed: %r", target.name, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        return ProbeResult(ok=False, time=_now(), output=f"unreachable ({type(root_cause(exc)).__name__})")
    if not postgres:
        return ProbeResult(ok=True, time=_now(), round_trip_ms=round(elapsed_ms, 3))
    in_recovery, lsn, lag = row
    return ProbeResult(
        ok=True,
        time=_now(),
        round_trip_ms=round(elapsed_ms, 3),
        in_recovery=bool(in_recovery),
        wal_lsn=parse_lsn(lsn),
        lag_seconds=None if lag is None else max(float(lag), 0.0),
    )


class HealthChecker:
    """Probes every engine of a :class:`~litestar_db.database.Database` and builds a :class:`HealthResponse`.

    Safe to call from many tasks at once: results are cached for ``cache_seconds`` (counted from the end of the
    previous probe) and callers arriving while a probe runs await that probe instead of starting another.

    Args:
        database: The database whose :meth:`~litestar_db.database.Database.engine_targets` are probed.
        config: Probe settings; ``database.config.health`` when ``None``.
    """

    __slots__ = ("_cached", "_config", "_database", "_expires", "_inflight", "probes_run")

    def __init__(self, database: Database, config: HealthConfig | None = None) -> None:
        self._database = database
        self._config = config or database.config.health
        self._cached: _Snapshot | None = None
        self._expires = 0.0
        self._inflight: asyncio.Future[_Snapshot] | None = None
        self.probes_run = 0
        """Probe rounds started since creation (each sends one statement per engine)."""

    async def check(self, *, details: bool = True) -> HealthResponse:
        """The readiness report: cached probe results plus the live pool figures.

        Args:
            details: Include detail fields (locations, pool figures, measurements); see :meth:`HealthResponse.public`.

        Returns:
            A :class:`HealthResponse`; its ``status`` is ``fail`` when the primary is down, answers as a standby, or
            migrations are pending with ``fail_on_pending_migrations``.
        """
        snapshot = await self._snapshot()
        report = self._report(snapshot)
        return report if details else report.public()

    async def _snapshot(self) -> _Snapshot:
        if self._cached is not None and time.monotonic() < self._expires:
            return self._cached
        if self._inflight is None:
            self.probes_run += 1
            self._inflight = asyncio.ensure_future(self._probe_all())
            self._inflight.add_done_callback(self._store)
        # shield: a caller that goes away (client disconnect) must not cancel the probe others are waiting for
        return await asyncio.shield(self._inflight)

    async def aclose(self) -> None:
        """Cancel a probe still in flight (call before disposing the database)."""
        future, self._inflight = self._inflight, None
        if future is not None and not future.done():
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future

    def _store(self, future: asyncio.Future[_Snapshot]) -> None:
        if self._inflight is future:
            self._inflight = None
        if not future.cancelled() and future.exception() is None:
            self._cached = future.result()
            self._expires = time.monotonic() + self._config.cache_seconds

    async def _probe_all(self) -> _Snapshot:
        targets = self._database.engine_targets()
        timeout = self._config.probe_timeout_seconds
        engines = asyncio.gather(*(probe_target(t, timeout) for t in targets))
        results, migrations = await asyncio.gather(engines, self._migrations(timeout))
        probes = dict(zip((t.name for t in targets), results, strict=True))
        return _Snapshot(probes=probes, migrations=migrations)

    async def _migrations(self, limit: float) -> HealthCheck | None:
        """``db.migrations.status()`` as a check, when the app has a migrations directory (else ``None``)."""
        script_location = Path(self._database.config.migrations.script_location)
        if not (script_location / "env.py").is_file():  # this app does not use migrations
            return None
        try:
            async with asyncio.timeout(limit):
                result = await self._database.migrations.status()
        except Exception as exc:
            logger.warning("reading the migration status failed: %r", exc)
            why = f"no answer within {limit:g} s" if isinstance(exc, TimeoutError) else type(root_cause(exc)).__name__
            return HealthCheck(status="warn", component_id="migrations", component_type="component", time=_now(),
                               output=f"migration status unavailable ({why})")  # fmt: skip
        count = len(result.pending)
        status: HealthStatus = "pass"
        output = None
        if count:
            status = "fail" if self._config.fail_on_pending_migrations else "warn"
            output = f"{count} migration(s) pending"
        current, head = ", ".join(result.current) or None, ", ".join(result.heads) or None
        return HealthCheck(
            status=status,
            component_id="migrations",
            component_type="component",
            time=_now(),
            output=output,
            observed_value=count,
            observed_unit="revisions",
            current=current,
            head=head,
            pending=count,
        )

    def _report(self, snapshot: _Snapshot) -> HealthResponse:
        stats = {e.name: e for e in self._database.stats_snapshot().engines}
        checks: dict[str, list[HealthCheck]] = {}
        overall: HealthStatus = "pass"
        failure: str | None = None
        primary_lsn = next((p.wal_lsn for p in snapshot.probes.values() if p.in_recovery is False), None)
        for target in self._database.engine_targets():
            probe = snapshot.probes.get(target.name)
            if probe is None:  # an engine added after the cached probe: seen at the next round
                continue
            items = self._engine_checks(target, probe, stats.get(target.name), primary_lsn)
            for key, check in items.items():
                checks[key] = [check]
                severity = check.status if target.role == "primary" or check.status == "pass" else "warn"
                if _RANK[severity] > _RANK[overall]:
                    overall = severity
                if severity == "fail" and failure is None:
                    failure = f"{target.name}: {check.output}"
        if snapshot.migrations is not None:
            checks["migrations:pending"] = [snapshot.migrations]
            if _RANK[snapshot.migrations.status] > _RANK[overall]:
                overall = snapshot.migrations.status
            if snapshot.migrations.status == "fail" and failure is None:
                failure = snapshot.migrations.output
        return HealthResponse(status=overall, description="database readiness", output=failure, checks=checks)

    def _engine_checks(
        self, target: EngineTarget, probe: ProbeResult, stats: EngineStats | None, primary_lsn: int | None
    ) -> dict[str, HealthCheck]:
        name = target.name
        status: HealthStatus = "pass" if probe.ok else "fail"
        output = probe.output
        if probe.ok and target.role == "primary" and probe.in_recovery:
            status, output = "fail", "the primary is in recovery (a read-only standby)"
        elif probe.ok and target.role == "replica" and probe.in_recovery is False:
            status, output = "warn", "not a standby (promoted?)"
        checks = {
            f"{name}:responseTime": HealthCheck(
                status=status, time=probe.time, output=output, observed_value=probe.round_trip_ms,
                observed_unit="ms", location=target.location, component_id=name, component_type="datastore",
            )
        }  # fmt: skip
        if stats is not None:
            pool = stats.pool
            exhausted = pool.max_size > 0 and pool.checked_out >= pool.max_size and pool.waiting > 0
            checks[f"{name}:connections"] = HealthCheck(
                status="warn" if exhausted else "pass", time=_now(), output=_EXHAUSTED if exhausted else None,
                observed_value=pool.checked_out, observed_unit="connections", pool=pool, component_id=name,
                component_type="datastore",
            )  # fmt: skip
        if target.role == "replica":
            checks[f"{name}:replicationLag"] = self._lag_check(target, probe, primary_lsn)
        return checks

    def _lag_check(self, target: EngineTarget, probe: ProbeResult, primary_lsn: int | None) -> HealthCheck:
        lag_s, lag_b, ejected = target.lag_seconds, target.lag_bytes, target.ejected
        if lag_s is None:
            lag_s = probe.lag_seconds
        if lag_b is None and primary_lsn is not None and probe.wal_lsn is not None and probe.in_recovery:
            lag_b = max(primary_lsn - probe.wal_lsn, 0)
        rw = self._database.config.read_write
        reasons = []
        if ejected:
            reasons.append("ejected from rotation")
        if lag_s is not None and rw.max_lag_seconds is not None and lag_s > rw.max_lag_seconds:
            reasons.append("replay lag above read_write.max_lag_seconds")
        if lag_b is not None and rw.max_lag_bytes is not None and lag_b > rw.max_lag_bytes:
            reasons.append("replay lag above read_write.max_lag_bytes")
        return HealthCheck(
            status="warn" if reasons or not probe.ok else "pass", component_id=target.name,
            component_type="datastore", time=probe.time, output="; ".join(reasons) or None,
            observed_value=lag_s, observed_unit="s", lag_bytes=lag_b, ejected=ejected,
        )  # fmt: skip
