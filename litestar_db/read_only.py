"""Read-only sessions without the read/write split: a ``read_only`` route refuses writes on a single database too.

With the split on, a ``read_only`` route gets a routing session (:mod:`litestar_db.routing`). Without replicas
(SQLite, or one PostgreSQL), it gets a :class:`ReadOnlySession`, which keeps the same promise:

* a write (a flush of pending changes, DML, ``SELECT … FOR UPDATE``, any statement that is not a plain read)
  raises :class:`~litestar_db.errors.ReadOnlyError` naming the route, before anything is sent;
* on PostgreSQL its reads run in a ``READ ONLY`` transaction on the primary (asyncpg's ``BEGIN READ ONLY``), so
  PostgreSQL itself refuses a write hidden where the statement check cannot see it (a function of your own, a
  view over one): ``ERROR: cannot execute … in a read-only transaction`` (SQLSTATE 25006).

SQLite has no read-only transactions: there the statement check is the whole guard (raw SQL run on an explicit
``session.connection()`` is not checked).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from litestar_db._classify import is_plain_read
from litestar_db.engines import connection_options_engine
from litestar_db.errors import ReadOnlyError
from litestar_db.session import AsyncSession, SyncSession, make_sessionmaker

__all__ = ("ReadOnlySession", "read_only_sessionmaker")


class ReadOnlySession(SyncSession):
    """Sync session of a read-only route on a database without the read/write split.

    Built per bind by :func:`read_only_sessionmaker` as a subclass whose ``readonly_bind`` is set: the primary with
    ``postgresql_readonly`` on PostgreSQL (same pool), the plain engine on SQLite.
    """

    readonly_bind: Engine

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.route_label = "session"
        """How errors name the route (``route GET /report (report)``)."""

    def get_bind(self, mapper: Any = None, *, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        """The read-only primary for plain reads (and an explicit ``connection()``, whose SQL runs READ ONLY).

        Raises:
            ReadOnlyError: a flush of pending changes or a statement that is not a plain read; nothing is sent.
        """
        if bind is not None:
            return bind
        if self._flushing or (clause is not None and not is_plain_read(clause)):
            what = "flush of pending changes" if self._flushing else type(clause).__name__
            msg = f"Write attempted on read-only {self.route_label} ({what}); nothing was sent to the database"
            raise ReadOnlyError(msg)
        return self.readonly_bind


def read_only_sessionmaker(bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A factory of :class:`ReadOnlySession` sessions over ``bind`` (the primary, or one at a route's isolation
    level), with litestar_db's session rules (:func:`litestar_db.session.make_sessionmaker`).

    Returns:
        An :class:`~sqlalchemy.ext.asyncio.async_sessionmaker` whose sessions refuse writes.
    """
    sync = bind.sync_engine
    readonly = connection_options_engine(sync, postgresql_readonly=True) if sync.dialect.name == "postgresql" else sync
    session_class = type("ReadOnlySession", (ReadOnlySession,), {"readonly_bind": readonly})
    return make_sessionmaker(bind, session_class)
