"""Alembic migrations from async code: ``await db.migrations.upgrade()``, ``downgrade()``, ``status()``.

Safe inside a running event loop (an app's startup, an async test): Alembic runs on the sync side of one async
connection (``AsyncConnection.run_sync``) that is handed to ``env.py`` as ``config.attributes["connection"]``
(Alembic cookbook, "Programmatic API use (connection sharing) with asyncio"), so ``env.py`` never calls
``asyncio.run``.

Locking (like Rails' ``db:migrate`` advisory lock): on PostgreSQL, ``upgrade`` and ``downgrade`` hold the session
advisory lock :data:`MIGRATION_LOCK_KEY` on the connection that runs the migrations, for the whole run. Several
instances started together therefore apply each migration once: the first migrates, the others wait, then find
nothing to do. The lock is released when the run ends, fails or the connection drops (PostgreSQL releases session
locks at disconnect). SQLite needs no lock (one writer at a time by design).

Migrations always connect to the primary (``DatabaseConfig.sqlalchemy_url()``), never to a replica, with an unpooled
connection that has no ``statement_timeout`` (a long DDL or a wait for the lock must not be cut short).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import msgspec
from advanced_alchemy.alembic.commands import AlembicCommandConfig
from advanced_alchemy.config import AlembicAsyncConfig, SQLAlchemyAsyncConfig
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from litestar_db.config import DatabaseConfig
from litestar_db.engines import create_engine_for
from litestar_db.errors import DatabaseError, root_cause

__all__ = (
    "MIGRATION_LOCK_KEY",
    "MigrationConnectionError",
    "MigrationError",
    "MigrationFailedError",
    "MigrationScriptError",
    "MigrationStatus",
    "Migrations",
    "PendingMigration",
    "alchemy_config_for",
)

logger = logging.getLogger("litestar_db.migrations")

_IN_STATUS_CHECK: contextvars.ContextVar[bool] = contextvars.ContextVar("litestar_db_in_status_check", default=False)


class _StatusCheckFilter(logging.Filter):
    """Drops the INFO lines Alembic logs for every ``MigrationContext`` ("Context impl PostgresqlImpl.", "Will
    assume transactional DDL.") while a status check reads the current revision: readiness probes and
    ``database status``/``stats`` would log them on every call. Upgrades and downgrades still log them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not _IN_STATUS_CHECK.get()


logging.getLogger("alembic.runtime.migration").addFilter(_StatusCheckFilter())

MIGRATION_LOCK_KEY: Final = 0x6C7464626D696772
"""Key of the PostgreSQL advisory lock held while migrating: ``int.from_bytes(b"ltdbmigr")`` = 7814981627299850098.

Advisory locks are per database, so it never blocks migrations of another database. Find the holder with
``SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND ((classid::bigint << 32) | objid) = 7814981627299850098``.
"""


class PendingMigration(msgspec.Struct, frozen=True):
    """A revision not yet applied."""

    revision: str
    """Alembic revision id."""
    message: str | None
    """The revision's message (its docstring's first line)."""


class MigrationStatus(msgspec.Struct, frozen=True):
    """Where the schema stands (Django's ``showmigrations``, Rails' ``db:migrate:status``).

    ``msgspec.json.encode`` it for readiness endpoints or deploy scripts.
    """

    current: list[str]
    """Revisions recorded in the version table (empty for an unmigrated database; several only with branches)."""
    heads: list[str]
    """Head revisions of the migrations directory."""
    pending: list[PendingMigration]
    """Revisions still to apply, oldest first."""

    @property
    def up_to_date(self) -> bool:
        """Whether nothing is pending and the database is at the head(s)."""
        return not self.pending and sorted(self.current) == sorted(self.heads)


class MigrationError(DatabaseError):
    """Base of migration errors; the message is one line, names the path, host or revision, never a password."""

    default_detail = "Migration error"


class MigrationScriptError(MigrationError):
    """The migrations directory is missing or broken (no ``env.py``, a revision that does not import, …)."""


class MigrationConnectionError(MigrationError):
    """The primary could not be reached (refused, unknown host, wrong database or login)."""


class MigrationFailedError(MigrationError):
    """A revision raised while being applied; the database stays at ``current`` (its changes were rolled back).

    Attributes:
        revision: The revision that failed, when known.
        current: Revisions recorded in the version table after the failure.
    """

    def __init__(self, detail: str, *, revision: str | None, current: list[str]) -> None:
        super().__init__(detail)
        self.revision = revision
        self.current = current


def alchemy_config_for(config: DatabaseConfig) -> SQLAlchemyAsyncConfig:
    """An advanced-alchemy config for migration commands, on the *primary* with an unpooled engine.

    The engine runs without ``statement_timeout`` or ``connection.command_timeout`` (a migration may wait for the
    migration lock or run long DDL) and reports ``application_name`` ``<name> migrations``.

    Returns:
        :class:`advanced_alchemy.config.SQLAlchemyAsyncConfig` whose ``alembic_config`` carries
        ``migrations.script_location`` and ``migrations.version_table_name``.
    """
    app_name = f"{config.connection.application_name or 'litestar_db'} migrations"
    connection = replace(config.connection, application_name=app_name, command_timeout=None)
    quiet = replace(config, statement_timeout=None, connection=connection)
    engine = create_engine_for(quiet, config.sqlalchemy_url(), config.pool, null_pool=True)
    return SQLAlchemyAsyncConfig(
        engine_instance=engine,
        alembic_config=AlembicAsyncConfig(
            script_location=config.migrations.script_location,
            version_table_name=config.migrations.version_table_name,
            compare_type=True,
        ),
    )


def _modification_times(path: Path) -> tuple[float, ...]:
    """The modification times of ``path``, ``path/versions`` and ``path/env.py`` (``-1`` where missing): three
    ``stat`` calls, which cost microseconds next to loading the revision files."""
    times = []
    for item in (path, path / "versions", path / "env.py"):
        try:
            times.append(item.stat().st_mtime)
        except OSError:
            times.append(-1.0)
    return tuple(times)


def _first_line(exc: BaseException) -> str:
    """The innermost driver error's first line (``exc.orig`` for SQLAlchemy wrappers), without the SQL."""
    inner = root_cause(exc)
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


class Migrations:
    """Alembic operations for one :class:`~litestar_db.config.DatabaseConfig` (``Database.migrations``).

    Args:
        config: The database config; ``config.migrations`` gives the directory and version table.
    """

    __slots__ = ("_alchemy", "_script", "config")

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._alchemy: SQLAlchemyAsyncConfig | None = None
        """Built on first use and kept: its engine is unpooled (a fresh connection per call, closed after it), so
        reusing it costs nothing, while building one per call re-ran the dialect's first-connect queries
        (readiness calls :meth:`status` once per cache interval)."""
        self._script: tuple[tuple[float, ...], ScriptDirectory] | None = None
        """The loaded scripts of :meth:`status` and the modification times they were loaded at."""

    # -- building blocks -------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The primary as ``host:port/database`` (or the SQLite file), for messages; never the password."""
        url = self.config.sqlalchemy_url()
        if url.get_backend_name() == "sqlite":
            return f"SQLite file {url.database or ':memory:'}"
        return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    def script_directory(self) -> ScriptDirectory:
        """Alembic's view of the migrations directory, with every revision file loaded.

        Raises:
            MigrationScriptError: the directory or its ``env.py`` is missing, or a revision does not load.
        """
        location = self.config.migrations.script_location
        path = Path(location).resolve()
        if not (path / "env.py").is_file():
            what = "missing" if not path.is_dir() else "broken (no env.py)"
            msg = f"migrations directory {path} is {what}"
            raise MigrationScriptError(msg)
        env = path / "env.py"
        try:
            compile(env.read_bytes(), str(env), "exec")
        except SyntaxError as exc:
            msg = f"{env} failed: SyntaxError: {exc.msg} (line {exc.lineno})"
            raise MigrationScriptError(msg) from exc
        cfg = Config()
        cfg.set_main_option("script_location", location)
        try:
            script = ScriptDirectory.from_config(cfg)
            script.get_heads()  # loads every revision file
        except Exception as exc:
            msg = f"migrations directory {path} is broken: {_first_line(exc)}"
            raise MigrationScriptError(msg) from exc
        return script

    async def _loaded_script(self) -> ScriptDirectory:
        """:meth:`script_directory`, loaded in a worker thread and reused while the directory, ``versions/`` and
        ``env.py`` keep their modification times: loading every revision file took ~90 ms of the event loop per
        readiness probe with 400 revisions."""
        stamp = _modification_times(Path(self.config.migrations.script_location))
        cached = self._script
        if cached is not None and cached[0] == stamp:
            return cached[1]
        script = await asyncio.to_thread(self.script_directory)
        self._script = (stamp, script)
        return script

    def _alembic_config(self, alchemy: SQLAlchemyAsyncConfig, connection: Connection | None) -> AlembicCommandConfig:
        from advanced_alchemy.alembic.commands import AlembicCommands

        cfg = AlembicCommands(sqlalchemy_config=alchemy).config
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    @asynccontextmanager
    async def _connect(self, *, lock: bool) -> AsyncIterator[tuple[SQLAlchemyAsyncConfig, AsyncConnection]]:
        """A dedicated connection to the primary, holding the migration lock when ``lock`` (PostgreSQL)."""
        if self._alchemy is None:
            self._alchemy = alchemy_config_for(self.config)
        alchemy = self._alchemy
        try:
            conn = await alchemy.get_engine().connect()
        except Exception as exc:
            msg = f"cannot connect to the database at {self.where}: {_first_line(exc)}"
            raise MigrationConnectionError(msg) from exc
        try:
            if lock and self.config.is_postgresql:
                await self._acquire(conn)
            try:
                yield alchemy, conn
            finally:
                await self._release(conn, unlock=lock and self.config.is_postgresql)
        finally:
            await conn.close()  # also ends the session, so PostgreSQL frees the lock whatever happened above

    async def _acquire(self, conn: AsyncConnection) -> None:
        key = {"key": MIGRATION_LOCK_KEY}
        if not (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key)).scalar_one():
            logger.info("another process holds the migration lock of %s; waiting for it", self.where)
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), key)
        await conn.commit()  # the session lock outlives this transaction; Alembic starts its own

    async def _release(self, conn: AsyncConnection, *, unlock: bool) -> None:
        try:
            if conn.in_transaction():
                await conn.rollback()
            if unlock:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                await conn.commit()
        except Exception:  # the connection broke: closing it releases the lock server-side
            logger.warning(
                "releasing the migration lock of %s failed; closing the connection", self.where, exc_info=True
            )
            await conn.invalidate()

    def _status_sync(self, script: ScriptDirectory, connection: Connection) -> MigrationStatus:
        opts = {"version_table": self.config.migrations.version_table_name}
        in_status_check = _IN_STATUS_CHECK.set(True)
        try:
            current = list(MigrationContext.configure(connection, opts=opts).get_current_heads())
        finally:
            _IN_STATUS_CHECK.reset(in_status_check)
        if connection.in_transaction():
            connection.rollback()
        applied: set[str] = set()
        try:
            for head in current:
                applied.update(r.revision for r in script.iterate_revisions(head, "base") if r is not None)
        except CommandError as exc:
            msg = f"the database is at revision {', '.join(current)}, unknown to {script.dir}: {exc}"
            raise MigrationScriptError(msg) from exc
        pending = [
            PendingMigration(rev.revision, rev.doc.strip().splitlines()[0] if rev.doc else None)
            for rev in reversed(list(script.walk_revisions()))
            if rev.revision not in applied
        ]
        return MigrationStatus(current=current, heads=list(script.get_heads()), pending=pending)

    # -- public API ------------------------------------------------------------------------------------------
    async def status(self) -> MigrationStatus:
        """Current revision(s), head(s) and pending revisions; takes no lock.

        Returns:
            :class:`MigrationStatus`.

        Raises:
            MigrationScriptError: the migrations directory is missing or broken.
            MigrationConnectionError: the primary cannot be reached.
        """
        script = await self._loaded_script()
        async with self._connect(lock=False) as (_, conn):
            return await conn.run_sync(lambda sync: self._status_sync(script, sync))

    async def upgrade(self, revision: str = "head", *, tag: str | None = None) -> list[PendingMigration]:
        """Apply migrations up to ``revision`` under the migration lock (Django's ``migrate``).

        Args:
            revision: Target revision, ``"head"`` (default) or ``"heads"`` or a relative ``"+1"``.
            tag: Passed to ``env.py`` (``EnvironmentContext.get_tag_argument``).

        Returns:
            The revisions this call applied, oldest first (empty when another process had already done it).

        Raises:
            MigrationScriptError: the migrations directory is missing or broken.
            MigrationConnectionError: the primary cannot be reached.
            MigrationFailedError: a revision raised; its changes were rolled back (on PostgreSQL) and the lock freed.
        """
        return await self._run(lambda cfg: command.upgrade(cfg, revision, tag=tag), f"upgrade to {revision}")

    async def downgrade(self, revision: str, *, tag: str | None = None) -> list[PendingMigration]:
        """Revert migrations down to ``revision`` (``"-1"``, a revision id or ``"base"``) under the migration lock.

        Args:
            revision: Target revision.
            tag: Passed to ``env.py`` (``EnvironmentContext.get_tag_argument``).

        Returns:
            The revisions this call reverted, newest first.

        Raises:
            MigrationScriptError: the migrations directory is missing or broken.
            MigrationConnectionError: the primary cannot be reached.
            MigrationFailedError: a revision's downgrade raised.
        """
        return await self._run(lambda cfg: command.downgrade(cfg, revision, tag=tag), f"downgrade to {revision}")

    async def _run(self, operation: Callable[[AlembicCommandConfig], Any], what: str) -> list[PendingMigration]:
        script = self.script_directory()
        async with self._connect(lock=True) as (alchemy, conn):

            def run(sync: Connection) -> list[PendingMigration]:
                before = self._status_sync(script, sync)
                try:
                    operation(self._alembic_config(alchemy, sync))
                except Exception as exc:
                    if sync.in_transaction():
                        sync.rollback()
                    raise self._failure(script, sync, exc, what) from exc
                after = self._status_sync(script, sync)
                was, now = {p.revision for p in before.pending}, {p.revision for p in after.pending}
                if now <= was:  # upgrade: what left the pending list
                    return [p for p in before.pending if p.revision not in now]
                return [p for p in reversed(after.pending) if p.revision not in was]

            changed = await conn.run_sync(run)
        for item in changed:
            logger.info("%s: %s %s", what, item.revision, item.message or "")
        return changed

    def _failure(self, script: ScriptDirectory, sync: Connection, exc: Exception, what: str) -> MigrationError:
        if isinstance(exc, MigrationError):
            return exc
        files = {Path(rev.path).resolve(): rev for rev in script.walk_revisions() if rev.path}
        failed = None
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            rev = files.get(Path(frame.filename).resolve())
            if rev is not None:
                failed = rev
                break
        try:
            current = self._status_sync(script, sync).current
        except Exception:
            current = []
        at = ", ".join(current) or "base"
        if failed is None:
            if isinstance(exc, CommandError):
                return MigrationScriptError(f"{what} failed: {exc}")
            env = Path(script.dir, "env.py").resolve()
            if any(Path(f.filename).resolve() == env for f in traceback.extract_tb(exc.__traceback__)):
                return MigrationScriptError(f"{env} failed: {_first_line(exc)}")
            return MigrationFailedError(
                f"{what} failed: {_first_line(exc)}; the database is at {at}", revision=None, current=current
            )
        doc = (failed.doc or "").strip().splitlines()
        name = f"{failed.revision} ({doc[0]})" if doc else failed.revision
        msg = f"migration {name} failed: {_first_line(exc)}; the database stays at {at}"
        return MigrationFailedError(msg, revision=failed.revision, current=current)
