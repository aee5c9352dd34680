"""Which statements are plain reads: what may run on a replica, outside a transaction under lazy begin, or without
a session (:mod:`litestar_db.fetch`).

A statement is walked whole (columns, FROMs, WHERE, subqueries, CTEs, prefixes, suffixes and hints): a write
hidden anywhere - a data-modifying CTE in a subquery, ``nextval()`` in a WHERE clause, ``FOR UPDATE`` in a
subquery - makes it a write, not a read. ``text()`` is read with PostgreSQL's lexical rules for comments, string
literals (``'...'``, ``E'...'``, dollar quotes) and quoted identifiers, so a keyword inside a literal is not
code and a literal cannot hide code. The verdict is kept per SQLAlchemy cache key (the key SQLAlchemy computes,
and memoizes on the statement, to find its compiled form: two statements with one key compile to the same SQL).

No Litestar import here.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from sqlalchemy.orm import Mapper
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement, ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect, ForUpdateArg, FromClause, Select, TextualSelect

__all__ = ("StatementKind", "is_plain_read", "statement_kind")

StatementKind = Literal["read", "write", "unknown"]
"""``read``: a plain read; ``write``: writes, locks or has side effects; ``unknown``: a construct not judged here
(a ``lambda_stmt``, ``text()`` the lexer cannot follow): run it where the server enforces read-only, or as a write."""

_SIDE_EFFECT_FUNCTIONS = (
    r"nextval|setval|next_value|set_config|pg_(?:try_)?advisory\w*|pg_notify|txid_current|pg_current_xact_id|"
    r"lo_\w+|pg_(?:terminate|cancel)_backend|pg_reload_conf|pg_stat_reset\w*|pg_switch_wal|pg_promote|"
    r"pg_logical_emit_message|pg_\w*replication_\w*|dblink\w*"
)
"""Functions that change state or take locks (sequences, settings, advisory locks, NOTIFY, transaction ids, large
objects, backends, replication): a statement calling one is not a plain read. PostgreSQL also refuses most of
them in a ``READ ONLY`` transaction; advisory locks and ``set_config()`` it allows, and they outlive it."""
_WRITING_FUNCTION = re.compile(rf"^(?:{_SIDE_EFFECT_FUNCTIONS})$", re.I)
_NOT_A_READ = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|COPY|LOCK|TRUNCATE|CALL|NOTIFY|LISTEN|FOR\s+(?:KEY\s+)?SHARE|"
    rf"(?:{_SIDE_EFFECT_FUNCTIONS})\s*\()",
    re.I,
)
_READ_START = re.compile(r"^\s*\(*\s*(?:SELECT|WITH|VALUES|TABLE|SHOW|EXPLAIN)\b", re.I)
_LEXEME = re.compile(r"--|/\*|(?<![\w$])[eE]'|'|\"|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_KINDS: dict[Any, StatementKind] = {}
_MAX_KINDS = 5000


def is_plain_read(clause: object) -> bool:
    """Whether ``clause`` is a plain read: it may run on a replica, or outside a transaction.

    ``True`` for a ``SELECT`` (Core or ORM, also UNION/..., ``text().columns()``) and for ``text()`` that is plainly
    ``SELECT``/``WITH ... SELECT`` (also ``VALUES``, ``TABLE``, ``SHOW``, ``EXPLAIN``), when nothing in it writes: no
    data-modifying CTE, ``SELECT ... INTO``, locking clause (``FOR UPDATE``/``FOR SHARE``, at any depth), or
    function with side effects (sequences, ``set_config()``, advisory locks, ...). Anything else - DML, DDL,
    constructs not judged here, ``None`` - is not a plain read. A function of your own that writes is not
    detected (PostgreSQL's ``READ ONLY`` refuses it where the transaction is read-only).
    """
    return statement_kind(clause) == "read"


def statement_kind(clause: object) -> StatementKind:
    """What ``clause`` is, see :data:`StatementKind`; the verdict is cached per SQLAlchemy cache key."""
    if isinstance(clause, Select | CompoundSelect | TextualSelect | TextClause):
        key = clause._generate_cache_key()
        if key is None:
            return _kind(clause)
        kind = _KINDS.get(key.key)
        if kind is None:
            if len(_KINDS) >= _MAX_KINDS:
                _KINDS.clear()
            kind = _KINDS[key.key] = _kind(clause)
        return kind
    if isinstance(clause, UpdateBase | ExecutableDDLElement):
        return "write"
    return "unknown" if isinstance(clause, ClauseElement) else "write"


def _kind(statement: ClauseElement) -> StatementKind:
    if isinstance(statement, TextClause):
        return _text_kind(statement.text, statement=True)
    if isinstance(statement, TextualSelect):
        element = statement.element
        return _text_kind(element.text, statement=True) if isinstance(element, TextClause) else "unknown"
    verdicts = {_element_kind(element) for element in visitors.iterate(statement)}
    return "write" if "write" in verdicts else "unknown" if "unknown" in verdicts else "read"


def _element_kind(element: Any) -> StatementKind:
    """The verdict on one element of a walked statement."""
    if isinstance(element, UpdateBase | ForUpdateArg):
        return "write"
    if isinstance(element, FunctionElement):
        return "write" if _WRITING_FUNCTION.match(getattr(element, "name", "") or "") else "read"
    if isinstance(element, TextClause):
        return _text_kind(element.text, statement=False)
    if isinstance(element, ColumnClause) and element.is_literal:
        return _text_kind(element.name, statement=False)
    if isinstance(element, FromClause):
        entity = element._annotations.get("parententity")
        return "write" if entity is not None and _mapper_writes(entity.mapper) else "read"
    if isinstance(element, Select | CompoundSelect):
        if getattr(element, "_for_update_arg", None) is not None:
            return "write"
        fragments = [
            *(e.text if isinstance(e, TextClause) else None for e, _ in getattr(element, "_prefixes", ())),
            *(e.text if isinstance(e, TextClause) else None for e, _ in getattr(element, "_suffixes", ())),
            *(hint for _, hint in getattr(element, "_statement_hints", ())),
            *getattr(element, "_hints", {}).values(),
        ]
        kinds = {"unknown" if f is None else _text_kind(f, statement=False) for f in fragments}
        return "write" if "write" in kinds else "unknown" if "unknown" in kinds else "read"
    return "read"


def _text_kind(sql: str, *, statement: bool) -> StatementKind:
    """The verdict on SQL text: a whole statement (``statement``) or a fragment (a column, a suffix, a hint).

    Read twice, with and without backslash escapes in ``'...'`` literals (``standard_conforming_strings`` off and
    on): it is a read only when both readings are.
    """
    kinds = {_code_kind(_code_only(sql, backslash_escapes=flag), statement=statement) for flag in (False, True)}
    return "write" if "write" in kinds else "unknown" if "unknown" in kinds else "read"


def _code_kind(code: str | None, *, statement: bool) -> StatementKind:
    if code is None:
        return "unknown"
    if _NOT_A_READ.search(code):
        return "write"
    if ";" in code.rstrip().rstrip(";") or (statement and not _READ_START.match(code)):
        return "write" if statement else "unknown"
    return "read"


def _code_only(sql: str, *, backslash_escapes: bool) -> str | None:
    """``sql`` with comments blanked and literals emptied (quoted identifiers keep their name, unquoted), following
    PostgreSQL's lexer (nested ``/* */`` comments, ``''`` and, in ``E'...'``, backslash escapes, ``$tag$``
    quoting); ``None`` when a comment, literal or identifier is not closed."""
    out: list[str] = []
    pos = 0
    while (match := _LEXEME.search(sql, pos)) is not None:
        out.append(sql[pos : match.start()])
        lexeme, start = match.group(), match.end()
        if lexeme == "--":
            end = sql.find("\n", start)
            pos = len(sql) if end < 0 else end
            out.append(" ")
            continue
        if lexeme == "/*":
            end = _comment_end(sql, start)
            out.append(" ")
        elif lexeme == '"':
            end = _quote_end(sql, start, '"', backslash=False)
            out.append(sql[start : end - 1].replace('""', '"') if end > 0 else "")
        elif lexeme.startswith("$"):
            found = sql.find(lexeme, start)
            end = -1 if found < 0 else found + len(lexeme)
            out.append("''")
        else:
            end = _quote_end(sql, start, "'", backslash=backslash_escapes or lexeme != "'")
            out.append("''")
        if end < 0:
            return None
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _comment_end(sql: str, pos: int) -> int:
    depth = 1
    while depth:
        close = sql.find("*/", pos)
        if close < 0:
            return -1
        opening = sql.find("/*", pos, close)
        depth, pos = (depth + 1, opening + 2) if opening >= 0 else (depth - 1, close + 2)
    return pos


def _quote_end(sql: str, pos: int, quote: str, *, backslash: bool) -> int:
    """The index after the closing ``quote`` (a doubled quote is part of the literal), or -1."""
    while pos < len(sql):
        char = sql[pos]
        if backslash and char == "\\":
            pos += 2
        elif char == quote:
            if sql.startswith(quote, pos + 1):
                pos += 2
            else:
                return pos + 1
        else:
            pos += 1
    return -1


@functools.cache
def _mapper_writes(mapper: Mapper[Any]) -> bool:
    """Whether selecting the mapped entity runs a side-effect function (a ``column_property``); computed once per
    mapper, since its column properties do not change after configuration."""
    columns = (c for prop in mapper.column_attrs for c in prop.columns)
    return any(_element_kind(e) == "write" for c in columns for e in visitors.iterate(c))
