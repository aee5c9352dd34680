"""Exception hierarchy and translation of driver errors into it.

Translation is decided by SQLSTATE (PostgreSQL, see the "PostgreSQL Error Codes" appendix), by SQLite's
extended result code and by exception type - never by message text. The classes extend advanced-alchemy's
exceptions so code that already catches ``advanced_alchemy.exceptions`` keeps working.

Each class carries the HTTP ``status_code`` the Litestar layer answers with and a ``detail`` that is safe to
show a client (no SQL, no parameters, no host names).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import ClassVar

from advanced_alchemy import exceptions as aa_exc
from sqlalchemy import exc as sa_exc

__all__ = (
    "AmbiguousCommitError",
    "ConcurrentSessionUseError",
    "ConflictError",
    "ConnectionLostError",
    "ConstraintViolationError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DeadlockDetectedError",
    "NotFoundError",
    "PoolTimeoutError",
    "ReadOnlyError",
    "ResultClosedError",
    "SerializationFailureError",
    "StatementTimeoutError",
    "TransactionConflictError",
    "is_retryable",
    "root_cause",
    "translate_error",
)


class DatabaseError(aa_exc.AdvancedAlchemyError):
    """Base of every litestar_db error.

    Attributes:
        status_code: HTTP status the Litestar layer answers with.
        detail: Client-safe description (no SQL, parameters or hosts).
        sqlstate: The five-character SQLSTATE (PostgreSQL) or SQLite extended code name, when known.
        retry_after: Seconds a client should wait before retrying (sent as ``Retry-After``), or ``None``.
    """

    status_code: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Database error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        sqlstate: str | None = None,
        constraint: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.sqlstate = sqlstate
        self.constraint = constraint
        self.retry_after = retry_after
        super().__init__(detail=self.detail)


class ConflictError(DatabaseError, aa_exc.IntegrityError):
    """The change conflicts with existing data: unique (23505) or foreign-key (23503) violation. HTTP 409."""

    status_code = 409
    default_detail = "Conflict with existing data"


class ConstraintViolationError(DatabaseError, aa_exc.IntegrityError):
    """A NOT NULL (23502) or CHECK (23514) constraint, or the column type (22001 too long, 22003 out of range,
    22007/22008 date/time, 22P02 invalid text representation), rejected the values. HTTP 422."""

    status_code = 422
    default_detail = "A value violates a constraint"


class NotFoundError(DatabaseError, aa_exc.NotFoundError):
    """The requested row does not exist. HTTP 404."""

    status_code = 404
    default_detail = "Not found"


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached or cannot serve now. HTTP 503 with ``Retry-After``."""

    status_code = 503
    default_detail = "Database unavailable"


class ConnectionLostError(DatabaseUnavailableError):
    """The server connection broke (class 08, 57P01 admin shutdown, closed socket); it was invalidated."""

    default_detail = "Database connection lost"


class PoolTimeoutError(DatabaseUnavailableError):
    """No pooled connection became free within ``pool.timeout`` seconds."""

    default_detail = "Database busy: no connection available"


class AmbiguousCommitError(DatabaseUnavailableError):
    """The connection broke during COMMIT: the outcome is unknown, so the work is never retried."""

    default_detail = "Database connection lost during commit; the outcome is unknown"


class StatementTimeoutError(DatabaseError):
    """A statement ran longer than ``statement_timeout`` (57014). HTTP 504."""

    status_code = 504
    default_detail = "Database statement timed out"


class TransactionConflictError(ConflictError):
    """A concurrent transaction won (40001/40P01) and retries ran out. HTTP 409 with ``Retry-After``."""

    default_detail = "Concurrent update conflict; retry the request"


class SerializationFailureError(TransactionConflictError):
    """SQLSTATE 40001: could not serialize access (SERIALIZABLE / REPEATABLE READ)."""


class DeadlockDetectedError(TransactionConflictError):
    """SQLSTATE 40P01: the server broke a deadlock by aborting this transaction."""


class ReadOnlyError(DatabaseError):
    """A write was attempted in a read-only transaction or on a read-only route (25006). HTTP 500."""

    default_detail = "Write attempted in a read-only transaction"


class ResultClosedError(DatabaseError):
    """A result was read after its session or connection was released; fetch rows inside the block."""

    default_detail = "Result read after its connection was released; fetch rows inside the session block"


class ConcurrentSessionUseError(DatabaseError):
    """One session was used by concurrent tasks; give each task its own session (``Database.session()``)."""

    default_detail = (
        "One database session was used concurrently (e.g. asyncio.gather on one session); "
        "use a separate session per task, e.g. `async with db.session()` inside each task"
    )


_INVALID_TRANSACTION = "8s2b"  # SQLAlchemy's "Can't reconnect until invalid transaction is rolled back"
_BY_SQLSTATE: dict[str, type[DatabaseError]] = {
    "23505": ConflictError,
    "23503": ConflictError,
    "23P01": ConflictError,
    "23502": ConstraintViolationError,
    "22001": ConstraintViolationError,
    "22003": ConstraintViolationError,
    "22007": ConstraintViolationError,
    "22008": ConstraintViolationError,
    "22P02": ConstraintViolationError,
    "23514": ConstraintViolationError,
    "40001": SerializationFailureError,
    "40P01": DeadlockDetectedError,
    "57014": StatementTimeoutError,
    "25006": ReadOnlyError,
    "57P01": ConnectionLostError,
    "57P02": ConnectionLostError,
    "57P03": DatabaseUnavailableError,
    "53300": DatabaseUnavailableError,
    "55P03": TransactionConflictError,
}
_BY_SQLITE_CODE: dict[str, type[DatabaseError]] = {
    "SQLITE_CONSTRAINT_UNIQUE": ConflictError,
    "SQLITE_CONSTRAINT_PRIMARYKEY": ConflictError,
    "SQLITE_CONSTRAINT_FOREIGNKEY": ConflictError,
    "SQLITE_CONSTRAINT_NOTNULL": ConstraintViolationError,
    "SQLITE_CONSTRAINT_CHECK": ConstraintViolationError,
    "SQLITE_BUSY": DatabaseUnavailableError,
    "SQLITE_LOCKED": DatabaseUnavailableError,
    "SQLITE_CANTOPEN": DatabaseUnavailableError,
    "SQLITE_READONLY": ReadOnlyError,
}
_DETAILS: dict[str, str] = {
    "23505": "Duplicate value violates unique constraint",
    "23503": "Referenced row is missing or still referenced (foreign key)",
    "23502": "A required value is missing (NOT NULL)",
    "23514": "A value violates a CHECK constraint",
    "22001": "A value is too long for its column",
    "22003": "A numeric value is out of range",
    "22007": "A date/time value has an invalid format",
    "22008": "A date/time value is out of range",
    "22P02": "A value has an invalid format for its column type",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: a DBAPI error's ``orig`` and explicit causes (``raise … from``).

    ``__context__`` (an exception raised *while handling* another) is not followed: an application error raised in
    an ``except IntegrityError:`` block is the application's, not the database's.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, sa_exc.DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception ``exc`` wraps (a DBAPI error's ``orig``, then explicit causes): the driver's or the
    socket's error behind a SQLAlchemy wrapper.

    Returns:
        The last exception of the chain (``exc`` itself when it wraps nothing).
    """
    *_, inner = _chain(exc)
    return inner


_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3")


def _raised_by_driver(exc: BaseException) -> bool:
    """Whether the traceback of ``exc`` passes through the database driver or SQLAlchemy (so a socket error is the
    database connection's, not an application's HTTP call or file access)."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] in _DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def translate_error(exc: BaseException, *, retry_after: int | None = None) -> DatabaseError | None:
    """Map a driver/SQLAlchemy/advanced-alchemy exception to a :class:`DatabaseError`.

    Walks ``exc`` and its causes (so errors advanced-alchemy's repositories re-wrapped are classified by the
    original driver error). PostgreSQL errors are classified by SQLSTATE, SQLite errors by extended result code.

    Args:
        exc: The exception caught.
        retry_after: Seconds for ``Retry-After`` on unavailable/conflict errors.

    Returns:
        The translated error (the original is attached as ``__cause__`` by the caller's ``raise … from``), or
        ``None`` when ``exc`` is not a database error.
    """
    chain = list(_chain(exc))
    invalidated = any(isinstance(i, sa_exc.DBAPIError) and i.connection_invalidated for i in chain)
    constraint = next((c for i in chain if isinstance(c := getattr(i, "constraint_name", None), str)), None)
    for item in chain:
        if isinstance(item, DatabaseError):
            return item
        state = _sqlstate(item)
        if state is not None:
            cls = _BY_SQLSTATE.get(state)
            if cls is None and state.startswith("08"):
                cls = ConnectionLostError
            if cls is None:
                return DatabaseError(sqlstate=state)
            wait = retry_after if issubclass(cls, DatabaseUnavailableError | TransactionConflictError) else None
            detail = _DETAILS.get(state)
            if detail and constraint:
                detail = f"{detail} ({constraint})"
            return cls(detail, sqlstate=state, constraint=constraint, retry_after=wait)
        if isinstance(item, sqlite3.Error):
            name = getattr(item, "sqlite_errorname", None)
            cls = _BY_SQLITE_CODE.get(name or "", DatabaseError)
            wait = retry_after if issubclass(cls, DatabaseUnavailableError) else None
            return cls(sqlstate=name, retry_after=wait)
        if isinstance(item, sa_exc.PendingRollbackError) and item.code == _INVALID_TRANSACTION:
            # the session's connection was lost (or its query cancelled) earlier in the transaction and the code
            # carried on: the connection is gone, as for the first error
            return ConnectionLostError(retry_after=retry_after)
        if isinstance(item, sa_exc.IllegalStateChangeError):
            return ConcurrentSessionUseError()
        if isinstance(item, sa_exc.ResourceClosedError):
            return ResultClosedError()
        if isinstance(item, sa_exc.TimeoutError):
            return PoolTimeoutError(retry_after=retry_after)
        if isinstance(item, OSError | TimeoutError) and _raised_by_driver(item):
            return ConnectionLostError(retry_after=retry_after)
        if isinstance(item, aa_exc.NotFoundError):
            return NotFoundError(str(item.detail) or None)
    if invalidated:
        return ConnectionLostError(retry_after=retry_after)
    if isinstance(exc, sa_exc.DBAPIError | aa_exc.RepositoryError):
        return DatabaseError()
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether re-running the whole unit of work may succeed.

    True for serialization failures (40001), deadlocks (40P01) and connection loss before COMMIT; never for an
    :class:`AmbiguousCommitError` (the first attempt may have committed).

    Returns:
        ``True`` when a retry with a fresh session is safe.
    """
    err = exc if isinstance(exc, DatabaseError) else translate_error(exc)
    if err is None or isinstance(err, AmbiguousCommitError):
        return False
    return isinstance(err, SerializationFailureError | DeadlockDetectedError | ConnectionLostError)
