"""The ``litestar database`` (alias ``db``) command group.

One group: advanced-alchemy's migration commands (``upgrade``, ``downgrade``, ``make-migrations``, ``stamp``,
``history``, ``show-current-revision``, ``check``, …) added with :func:`advanced_alchemy.cli.add_migration_commands`
to a group whose context carries this project's config. Registering advanced-alchemy's own plugin next to
``DatabasePlugin`` is unnecessary (and its ``database`` group would replace this one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advanced_alchemy.cli import add_migration_commands
from advanced_alchemy.config import AlembicAsyncConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.utils.cli_tools import click, group
from litestar.cli._utils import LitestarGroup

from litestar_db.config import DatabaseConfig
from litestar_db.engines import create_engine_for
from litestar_db.litestar.cli_stats import stats_command

if TYPE_CHECKING:
    from litestar import Litestar

__all__ = ("alchemy_config_for", "database_group")


def alchemy_config_for(config: DatabaseConfig) -> SQLAlchemyAsyncConfig:
    """An advanced-alchemy config pointing at the *primary* (never a replica) for migration commands.

    The engine uses no pool (one connection per command) and the project's own settings.

    Returns:
        :class:`advanced_alchemy.config.SQLAlchemyAsyncConfig`.
    """
    engine = create_engine_for(config, config.sqlalchemy_url(), config.pool, null_pool=True)
    return SQLAlchemyAsyncConfig(
        engine_instance=engine,
        alembic_config=AlembicAsyncConfig(
            script_location=config.migrations.script_location,
            version_table_name=config.migrations.version_table_name,
        ),
    )


def _plugin_config(app: Litestar) -> DatabaseConfig:
    from litestar_db.litestar.plugin import DatabasePlugin

    try:
        return app.plugins.get(DatabasePlugin).config
    except KeyError:
        msg = "the app has no DatabasePlugin: add DatabasePlugin(DatabaseConfig(...)) to its plugins"
        raise click.ClickException(msg) from None


@group(cls=LitestarGroup, name="database", aliases=["db"])
def database_group(ctx: click.Context) -> None:
    """Manage the database: migrations, status, statistics."""
    config = _plugin_config(ctx.obj.app)
    ctx.obj = {"app": ctx.obj, "configs": [alchemy_config_for(config)], "database_config": config}


add_migration_commands(database_group)
database_group.add_command(stats_command)
