"""``DatabasePlugin``: wires a :class:`~litestar_db.database.Database` into a Litestar app.

What it registers (compare advanced-alchemy's ``SQLAlchemyInitPlugin``, which it extends rather than replaces):

* a lifespan that creates the engines on the running loop, registers the database as the default in
  :func:`litestar_db.get_database`, optionally migrates, and disposes every engine at shutdown;
* dependencies ``db_session`` (the request's session) and ``db_engine`` (the primary engine, same pool);
* the request-transaction middleware (:mod:`litestar_db.litestar.request`);
* exception handlers mapping database errors to statuses (:mod:`litestar_db.litestar.exceptions`);
* the health controller (``/health/live``, ``/health/ready``; :mod:`litestar_db.litestar.health`) and, when
  ``prometheus-client`` is installed, the collector exporting :meth:`Database.get_stats` (:mod:`litestar_db.metrics`);
* advanced-alchemy's signature namespace and type encoders;
* the ``litestar database`` command group (advanced-alchemy's migration commands plus this project's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from advanced_alchemy.extensions.litestar.plugins.init.plugin import signature_namespace_values
from advanced_alchemy.extensions.litestar.plugins.serialization import merge_aa_litestar_type_encoders
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import CLIPlugin, InitPlugin
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from litestar_db.config import DatabaseConfig
from litestar_db.database import Database
from litestar_db.health import HealthChecker
from litestar_db.litestar.exceptions import exception_handlers
from litestar_db.litestar.health import create_health_controller
from litestar_db.litestar.provider import RequestSessionProvider, check_route_options
from litestar_db.litestar.request import RequestTransactionMiddleware
from litestar_db.registry import _registry, register_database

if TYPE_CHECKING:
    from click import Group
    from litestar import Litestar

__all__ = ("DatabasePlugin",)


class DatabasePlugin(InitPlugin, CLIPlugin):
    """The Litestar plugin of litestar_db.

    Example:
        ``Litestar(route_handlers=[...], plugins=[DatabasePlugin(DatabaseConfig.from_env())])``

    Args:
        config: The one :class:`~litestar_db.config.DatabaseConfig`.
        alias: Registry name under which :func:`litestar_db.get_database` finds this database while the app runs.
    """

    __slots__ = ("_health", "_provider", "alias", "config")

    def __init__(self, config: DatabaseConfig, *, alias: str = "default") -> None:
        self.config = config
        self.alias = alias
        self._provider = RequestSessionProvider(config.request)
        self._health: HealthChecker | None = None

    @property
    def database(self) -> Database:
        """The running :class:`Database` (available between startup and shutdown).

        Raises:
            RuntimeError: the app is not running.
        """
        return self._provider.database

    @property
    def health(self) -> HealthChecker:
        """The running database's :class:`~litestar_db.health.HealthChecker` (shared by every readiness call).

        Raises:
            RuntimeError: the app is not running.
        """
        if self._health is None:
            msg = "litestar_db: the database is not started (is the app running?)"
            raise RuntimeError(msg)
        return self._health

    def _get_health(self) -> HealthChecker:
        return self.health

    def record_error(self, err: BaseException) -> None:
        """Count an error in the running database's stats (no-op when the app is not running)."""
        db = self._provider.bound
        if db is not None:
            db.record_error(err)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register lifespan, dependencies, middleware, exception handlers and signature namespace.

        Returns:
            The updated app config.
        """
        request = self.config.request
        app_config.lifespan.append(self.lifespan)
        app_config.dependencies.update(
            {
                request.session_dependency_key: Provide(self._provider.provide_session, sync_to_thread=False),
                request.engine_dependency_key: Provide(self._provider.provide_engine, sync_to_thread=False),
            }
        )
        app_config.middleware.insert(
            0, RequestTransactionMiddleware(request, self.config.health.retry_after_seconds, self._provider)
        )
        for exc_class, handler in exception_handlers().items():
            app_config.exception_handlers.setdefault(exc_class, handler)
        app_config.signature_namespace.update(
            {**signature_namespace_values, "AsyncSession": AsyncSession, "AsyncEngine": AsyncEngine}
        )
        merge_aa_litestar_type_encoders(app_config, include_default_encoders=False)
        if self.config.health.enabled:
            app_config.route_handlers.append(create_health_controller(self.config.health, self._get_health))
        _register_metrics()
        return app_config

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        """Create the database on the running loop, register it, and dispose it at shutdown.

        Yields:
            While the app runs.
        """
        check_route_options(app)
        db = Database(self.config)
        self._provider.bind(db)
        register_database(db, self.alias)
        self._health = HealthChecker(db)
        try:
            if self.config.migrations.migrate_on_startup:
                await _migrate(db)
            await db.start()
            yield
        finally:
            if _registry.get(self.alias) is db:
                del _registry[self.alias]
            self._provider.bind(None)
            health, self._health = self._health, None
            if health is not None:
                await health.aclose()
            await db.dispose()

    def on_cli_init(self, cli: Group) -> None:
        """Add the ``database`` (alias ``db``) command group."""
        from litestar_db.litestar.cli import database_group

        cli.add_command(database_group)


def _register_metrics() -> None:
    """Export the statistics to prometheus-client's default registry when it is installed (idempotent)."""
    try:
        from litestar_db.metrics import register_collector
    except ImportError:  # the ``metrics`` extra is not installed
        return
    register_collector()


async def _migrate(db: Database) -> Any:
    upgrade = getattr(db, "migrations", None)
    if upgrade is None:  # pragma: no cover - migrations module not available
        msg = "migrate_on_startup needs litestar_db.migrations"
        raise RuntimeError(msg)
    return await upgrade.upgrade()
