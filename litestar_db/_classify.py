"""Which statements are plain reads: what may run on a replica, or outside a transaction under lazy begin.

No Litestar import here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from sqlalchemy.orm import Mapper
from sqlalchemy.sql import Select, visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseList, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CTE, CompoundSelect, FromClause

__all__ = ("is_plain_read",)

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_LITERALS = re.compile(r"'(?:[^']|'')*'")
_READ_START = re.compile(r"^\s*\(*\s*(?:SELECT|WITH|VALUES|TABLE|SHOW|EXPLAIN)\b", re.I)
_SIDE_EFFECT_FUNCTIONS = (
    r"nextval|setval|next_value|pg_(?:try_)?advisory\w*|pg_notify|txid_current|pg_current_xact_id|lo_\w+"
)
"""Functions that change state or take locks (sequences, advisory locks, NOTIFY, transaction ids, large objects):
a statement calling one is not a plain read, whether it is ``text()`` or a Core ``SELECT``."""
_NOT_A_READ = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|COPY|LOCK|FOR\s+(?:NO\s+KEY\s+)?UPDATE|FOR\s+(?:KEY\s+)?SHARE|"
    rf"{_SIDE_EFFECT_FUNCTIONS})\b",
    re.I,
)


def is_plain_read(clause: object) -> bool:
    """Whether ``clause`` may run on a replica.

    ``True`` for a ``SELECT`` (Core or ORM, also UNION/…) without a locking clause, and for ``text()`` that is
    plainly ``SELECT``/``WITH … SELECT`` (also ``VALUES``, ``TABLE``, ``SHOW``, ``EXPLAIN``) with no
    data-modifying CTE, ``SELECT … INTO``, locking clause, sequence or advisory-lock function. Anything else -
    DML, DDL, unknown constructs, ``None`` - is not a plain read.
    """
    if isinstance(clause, Select | CompoundSelect):
        return clause._for_update_arg is None and not _select_writes(clause)
    if isinstance(clause, TextClause):
        sql = _LITERALS.sub("''", _COMMENTS.sub(" ", clause.text))
        return bool(_READ_START.match(sql)) and not _NOT_A_READ.search(sql)
    return False


_WRITING_FUNCTION = re.compile(rf"^(?:{_SIDE_EFFECT_FUNCTIONS})$", re.I)


def _writes(element: object) -> bool:
    """A part of a Core ``SELECT`` that changes state: a data-modifying CTE or a function with side effects."""
    element = getattr(element, "element", element) if not isinstance(element, CTE) else element  # unwrap labels
    if isinstance(element, CTE):
        return isinstance(element.element, UpdateBase)
    if isinstance(element, FunctionElement):
        return bool(_WRITING_FUNCTION.match(getattr(element, "name", "") or ""))
    return False


def _column_writes(column: Any) -> bool:
    """A raw column of a ``SELECT`` that changes state, also one hidden in an ORM entity or a ``Bundle``.

    ``select(Entity)`` lists the entity's (annotated) table, not its column properties, and a ``Bundle`` one
    clause list: their columns are checked here (an entity's column properties are what it selects).
    """
    if _writes(column):
        return True
    if isinstance(column, FromClause):
        entity = column._annotations.get("parententity")
        return entity is not None and _mapper_writes(entity.mapper)
    if isinstance(column, ClauseList):
        return any(_column_writes(c) for c in column.clauses)
    return False


@functools.cache
def _mapper_writes(mapper: Mapper[Any]) -> bool:
    """Whether selecting the mapped entity runs a side-effect function (a ``column_property``); computed once per
    mapper, since its column properties do not change after configuration."""
    return any(_writes(c) for prop in mapper.column_attrs for c in prop.columns)


def _select_writes(statement: Select[Any] | CompoundSelect[Any]) -> bool:
    """Whether a Core ``SELECT`` selects a side-effect function or reads a data-modifying CTE.

    Checks the selected columns and the FROMs they imply (cheap, on every routed statement); a compound select or
    one with CTEs attached by ``add_cte()`` is walked whole.
    """
    if isinstance(statement, CompoundSelect) or statement._independent_ctes:
        return any(_writes(element) for element in visitors.iterate(statement))
    # The columns as written (_raw_columns: selected_columns would build a column collection, ~10 us for an ORM
    # entity), the FROMs they imply (columns_clause_froms: a CTE selected from; get_final_froms() costs ~100 us)
    # and the explicit select_from()/join() targets (_from_obj, _setup_joins: no public accessor that does not
    # compute the whole FROM list)
    if any(_column_writes(column) for column in statement._raw_columns):
        return True
    froms = (*statement.columns_clause_froms, *statement._from_obj, *(j[0] for j in statement._setup_joins))
    return any(_writes(source) for source in froms)
