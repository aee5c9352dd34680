"""Reads without BEGIN/COMMIT until the first write (the request fast path for read-only methods).

Under PostgreSQL's default ``READ COMMITTED`` every statement takes its own snapshot, so a transaction around
plain reads adds two round trips (``BEGIN``, ``COMMIT``) and buys nothing. A :class:`LazyBeginSession` runs plain
reads on the primary in autocommit mode and opens the real transaction at the first statement that is not a plain
read (a write, a flush, ``SELECT … FOR UPDATE``, ``SET LOCAL``, an advisory lock, an explicit ``connection()``);
from then on every statement runs in that transaction, which the request commits or rolls back as usual. The
decision per statement is the read/write split's, stricter: a read calling a function not known to be free of
side effects also opens the transaction (:func:`litestar_db._classify.is_autocommit_read`).

Used only where it cannot change what a handler observes: read-only HTTP methods, no route isolation level, a
default isolation level of ``READ COMMITTED``, and not behind PgBouncer in transaction mode (outside a transaction
the prepare and the execute of one statement may reach different servers there). Disable with
``RequestConfig(lazy_begin=False)``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from litestar_db._classify import is_autocommit_read
from litestar_db.session import SyncSession

__all__ = ("LazyBeginSession",)


class LazyBeginSession(SyncSession):
    """Sync session sending plain reads to ``autocommit_bind`` until the first other statement.

    The subclass built per database sets ``autocommit_bind``: the primary engine in autocommit
    (:func:`litestar_db.engines.isolation_level_engine`, same pool).
    """

    autocommit_bind: Engine

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.began = False
        """Set once a statement needed the real transaction; every later statement runs in it."""

    @property
    def nothing_to_commit(self) -> bool:
        """No statement began the real transaction and nothing is pending: a commit would send nothing."""
        # Session._is_clean(): what flush() checks, without building the new/dirty/deleted sets
        return not self.began and self._is_clean()

    def leave_autocommit(self) -> None:
        """Run every later statement in the real transaction (a SAVEPOINT, a server-side cursor need one)."""
        if not self.began:
            self.began = True
            self.drop_bind_connection(self.autocommit_bind)

    def get_bind(self, mapper: Any = None, *, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        """The autocommit engine for plain reads before the first write, the primary's transaction otherwise."""
        if bind is not None:
            return bind
        if not self.began:
            if not self._flushing and is_autocommit_read(clause):
                return self.autocommit_bind
            # give the autocommit connection back first: it carries no transaction, and keeping it would make the
            # request hold two connections of one pool (a pool of one would wait on itself)
            self.leave_autocommit()
        return self.bind
