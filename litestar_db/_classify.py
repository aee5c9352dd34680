"""Which statements are plain reads: what may run on a replica, outside a transaction under lazy begin, or without
a session (:mod:`litestar_db.fetch`).

A ``select()`` is judged by the SQL it compiles to (PostgreSQL dialect), so what reaches the server is what is
judged: a data-modifying CTE in a subquery, ``nextval()`` in a WHERE clause, ``FOR UPDATE`` in a subquery, a
``column_property`` of a polymorphic subclass, ``with_expression()``, a type's ``column_expression()`` all show up
there. ``text()`` is read with PostgreSQL's lexical rules for comments (``--`` to a line end, nested ``/* */``),
string literals (``'...'``, ``E'...'``, ``$tag$...$tag$``) and quoted identifiers, so a keyword inside a literal
is not code and a literal cannot hide code. Functions decide between ``read`` and ``guarded``: only functions
known to be free of side effects (:data:`PURE_FUNCTIONS`) may run outside a transaction on the primary; any other
function (your own, ``query_to_xml()`` which runs the SQL in its argument, an extension's) is a read only where
PostgreSQL enforces read-only (a replica, a ``READ ONLY`` transaction). The verdict is kept per SQLAlchemy cache
key (which SQLAlchemy computes and memoizes on the statement to find its compiled form).

No Litestar import here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Literal

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm.context import FromStatement
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement, TextClause
from sqlalchemy.sql.lambdas import StatementLambdaElement
from sqlalchemy.sql.selectable import CompoundSelect, Select, TextualSelect

from litestar_db._pure_functions import NOT_FUNCTIONS, PURE_FUNCTIONS

__all__ = ("PURE_FUNCTIONS", "StatementKind", "is_autocommit_read", "is_plain_read", "statement_kind")

StatementKind = Literal["read", "guarded", "write", "unknown"]
"""``read``: a plain read calling only functions free of side effects, safe anywhere; ``guarded``: a plain read
that calls other functions, safe where PostgreSQL enforces read-only (a replica, a ``READ ONLY`` transaction);
``write``: writes, locks or has side effects; ``unknown``: SQL whose effect is not read here (Unicode-escaped
names, an unclosed literal, a construct that does not compile for PostgreSQL)."""

_SIDE_EFFECT_FUNCTIONS = (
    r"nextval|setval|next_value|set_config|setseed|pg_(?:try_)?advisory\w*|pg_notify|txid_current|"
    r"pg_current_xact_id|lo_\w+|pg_(?:terminate|cancel)_backend|pg_reload_conf|pg_stat\w*_reset\w*|pg_switch_wal|"
    r"pg_promote|pg_logical\w*|pg_\w*replication\w*|pg_create_restore_point|pg_wal_replay_\w+|dblink\w*|"
    r"query_to_xml\w*|cursor_to_xml\w*|pg_rotate_logfile\w*|pg_log_backend_memory_contexts"
)
"""Functions that change state, take locks or run SQL given as text: a statement calling one is a write. PostgreSQL
refuses most of them in a ``READ ONLY`` transaction; advisory locks and ``set_config()`` it allows, and they
outlive it."""
_CONT = "A-Za-z0-9_$\u0080-\U0010ffff"  # what PostgreSQL's lexer takes into a name: any byte >= 0x80 too
_START = "A-Za-z_\u0080-\U0010ffff"
_NAME = rf'(?:"(?:[^"]|"")*"|[{_START}][{_CONT}]*)'  # after _code_only: a quoted name keeps its quotes
_WRITES = re.compile(
    rf'(?<![.{_CONT}"])(?:INSERT|UPDATE|DELETE|MERGE|INTO|FOR\s+(?:KEY\s+)?SHARE)(?![.{_CONT}"])',
    re.I,
)
_WRITING_FUNCTION = re.compile(rf"^(?:{_SIDE_EFFECT_FUNCTIONS})$", re.I)
_LABEL = re.compile(rf'(?<![{_CONT}"])AS\s+{_NAME}', re.I)  # "AS comment", "AS v(a, b)", "AS numeric(10, 2)": not calls
_CALL = re.compile(rf'(?<![{_CONT}".])((?:{_NAME}\s*\.\s*)*)({_NAME})\s*\(')
_ATTRIBUTE = re.compile(rf"(\)?)\s*\.\s*({_NAME})")  # x.f and (x).f: PostgreSQL's attribute notation for f(x)
_READ_START = re.compile(
    r"^\s*\(*\s*(?:SELECT|WITH|VALUES|TABLE|SHOW"
    r"|EXPLAIN(?:\s*\([^)]*\)|\s+(?:ANALYZE|ANALYSE|VERBOSE))*\s+\(*\s*(?:SELECT|WITH|VALUES|TABLE))\b",
    re.I,
)
_LEXEME = re.compile(
    rf"--|/\*|(?<![{_CONT}])[uU]&[\"']|(?<![{_CONT}])[eE]'|'|\"|(?<![{_CONT}])\$(?:[{_START}][{_START}0-9]*)?\$"
)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
_KINDS: OrderedDict[Any, StatementKind] = OrderedDict()
_MAX_KINDS = 1000
_MAX_CACHED_TEXT = 16384  # characters: a longer text() is judged on every call rather than kept in the cache


def is_plain_read(clause: object) -> bool:
    """Whether ``clause`` is a plain read that may run on a replica or in a ``READ ONLY`` transaction.

    ``True`` for a ``SELECT`` (Core or ORM, also UNION/..., ``text().columns()``) and for ``text()`` that is plainly
    ``SELECT``/``WITH ... SELECT`` (also ``VALUES``, ``TABLE``, ``SHOW``, ``EXPLAIN`` of a read), when nothing in the
    SQL writes: no data-modifying CTE, ``SELECT ... INTO``, locking clause (``FOR UPDATE``/``FOR SHARE``, at any
    depth), or function with side effects (sequences, ``set_config()``, advisory locks, ...). Anything else - DML,
    DDL, constructs not judged here, ``None`` - is not a plain read.
    """
    return statement_kind(clause) in ("read", "guarded")


def is_autocommit_read(clause: object) -> bool:
    """Whether ``clause`` may run outside a transaction on the primary (lazy begin, session-free reads): a plain
    read (:func:`is_plain_read`) whose functions are all free of side effects (:data:`PURE_FUNCTIONS`)."""
    return statement_kind(clause) == "read"


def statement_kind(clause: object) -> StatementKind:
    """What ``clause`` is, see :data:`StatementKind`; the verdict is cached per SQLAlchemy cache key (the 1,000 most
    recently used statement shapes)."""
    if isinstance(clause, Select | CompoundSelect | TextualSelect | TextClause):
        key = clause._generate_cache_key()
        if key is None:
            return _kind(clause)
        kind = _KINDS.get(key.key)
        if kind is not None:
            _KINDS.move_to_end(key.key)
            return kind
        kind = _kind(clause)
        if not isinstance(clause, TextClause) or len(clause.text) <= _MAX_CACHED_TEXT:
            if len(_KINDS) >= _MAX_KINDS:
                _KINDS.popitem(last=False)  # the least recently used shape: judging it again compiles it again
            _KINDS[key.key] = kind
        return kind
    if isinstance(clause, UpdateBase | ExecutableDDLElement):
        return "write"
    # the statement a lambda_stmt stands for, or the text()/select() an ORM from_statement() loads entities from
    inner = getattr(clause, "_resolved" if isinstance(clause, StatementLambdaElement) else "element", None)
    if isinstance(clause, StatementLambdaElement | FromStatement) and isinstance(inner, ClauseElement):
        return statement_kind(inner)
    return "unknown" if isinstance(clause, ClauseElement) else "write"


def _kind(statement: ClauseElement) -> StatementKind:
    if isinstance(statement, TextClause):
        return _sql_kind(statement.text)
    if isinstance(statement, TextualSelect):
        element = statement.element
        return _sql_kind(element.text) if isinstance(element, TextClause) else "unknown"
    try:
        sql = str(statement.compile(dialect=_PG))
    except Exception:
        return "unknown"
    return _sql_kind(sql)


def _sql_kind(sql: str) -> StatementKind:
    """The verdict on the SQL of a whole statement, read as PostgreSQL reads it with ``standard_conforming_strings``
    on (its default, and what litestar_db's connections set): backslashes escape only in ``E'...'``."""
    code = _code_only(sql)
    if code is None:
        return "unknown"
    unlabelled = _LABEL.sub(" AS _ ", code)
    if _WRITES.search(unlabelled) or ";" in code.rstrip().rstrip(";") or not _READ_START.match(code):
        return "write"
    kind: StatementKind = "read"
    for after_parenthesis, name in _ATTRIBUTE.findall(unlabelled):
        # (42::bigint).pg_advisory_lock calls pg_advisory_lock(42); t.f may call f(t) as well as name a column
        if _WRITING_FUNCTION.match(_name(name)):
            return "write"
        if after_parenthesis:
            kind = "guarded"  # (x).f: a field of a composite value, or a call of f
    for call in _CALL.finditer(unlabelled):
        qualifier, name = call.groups()
        function = _name(name)
        if _WRITING_FUNCTION.match(function):
            return "write"
        if not qualifier and not name.startswith('"'):
            if function in NOT_FUNCTIONS or function == "_":
                continue  # IN (, VALUES (, AS _ ( ...: not a call
            before = unlabelled[: call.start()].rstrip()
            if function in ("over", "filter") and before.endswith(")"):
                continue  # count(*) OVER (...), count(*) FILTER (WHERE ...)
            if function == "explain" and not before.strip("( \t\r\n"):
                continue  # EXPLAIN (ANALYZE) SELECT ...
        schema = _name(qualifier.rstrip().rstrip(".").rstrip()) if qualifier else ""
        if function not in PURE_FUNCTIONS or schema not in ("", "pg_catalog"):
            kind = "guarded"
    return kind


def _name(name: str) -> str:
    """A name as PostgreSQL resolves it: a quoted name as written, an unquoted one in lower case; a qualified one
    keeps its dots."""
    if name.startswith('"') and name.endswith('"') and '"."' not in name:
        return name[1:-1].replace('""', '"')
    return name if '"' in name else name.lower()


def _code_only(sql: str) -> str | None:
    """``sql`` with comments blanked and literals emptied (quoted names kept, quotes included), following
    PostgreSQL's lexer (nested ``/* */`` comments, ``--`` up to a newline or carriage return, ``''`` and, in
    ``E'...'``, backslash escapes, ``$tag$`` quoting, any non-ASCII character as part of a name); ``None`` when a
    comment, literal or name is not closed, or for Unicode-escaped names and strings (``U&"..."``), whose meaning
    is not read here."""
    out: list[str] = []
    pos = 0
    while (match := _LEXEME.search(sql, pos)) is not None:
        out.append(sql[pos : match.start()])
        lexeme, start = match.group(), match.end()
        if lexeme.startswith(("u", "U")):
            return None
        if lexeme == "--":
            end = min((i for i in (sql.find("\n", start), sql.find("\r", start)) if i >= 0), default=len(sql))
            out.append(" ")
        elif lexeme == "/*":
            end = _comment_end(sql, start)
            out.append(" ")
        elif lexeme == '"':
            end = _quote_end(sql, start, '"', backslash=False)
            out.append(sql[start - 1 : end])
        elif lexeme.startswith("$"):
            found = sql.find(lexeme, start)
            end = -1 if found < 0 else found + len(lexeme)
            out.append("''")
        else:
            end = _quote_end(sql, start, "'", backslash=lexeme != "'")
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
