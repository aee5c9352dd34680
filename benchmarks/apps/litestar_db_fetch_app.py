"""Contender 5: litestar_db's session-free read path (``Database.fetch_one`` / ``fetch_all``, :mod:`litestar_db.fetch`).

The same plugin and configuration as contender 1. ``read`` and ``list`` run module-level statements with
``bindparam()`` values through ``fetch_one`` / ``fetch_all(..., into=ItemOut)`` (after their first call, on the
asyncpg connection directly); ``insert`` and ``transfer`` are contender 1's ORM handlers (``db_session``), since
the fast path only reads. Compared with the raw asyncpg pool (the issue's stretch: >= 0.5x raw on ``read``).
"""

from __future__ import annotations

from litestar import Litestar, Router, get
from litestar.exceptions import NotFoundException
from sqlalchemy import bindparam, select

from benchmarks.apps.litestar_db_app import config
from benchmarks.common import LIST_SIZE, Item, ItemOut, create_item, transfer
from benchmarks.gcstats import freeze_if_asked, gc_stats
from litestar_db.litestar import DatabasePlugin

__all__ = ("app",)

plugin = DatabasePlugin(config)
BY_ID = select(Item.id, Item.name, Item.price_cents).where(Item.id == bindparam("id"))
PAGE = (
    select(Item.id, Item.name, Item.price_cents).where(Item.id > bindparam("after")).order_by(Item.id).limit(LIST_SIZE)
)


@get("/items/{item_id:int}")
async def read_item(item_id: int) -> ItemOut:
    """Read one row by primary key."""
    item: ItemOut | None = await plugin.database.fetch_one(BY_ID, {"id": item_id}, into=ItemOut)
    if item is None:
        raise NotFoundException(f"item {item_id} not found")
    return item


@get("/items")
async def list_items(after: int = 0) -> list[ItemOut]:
    """The 20 rows after ``after`` in primary-key order (keyset paging)."""
    items: list[ItemOut] = await plugin.database.fetch_all(PAGE, {"after": after}, into=ItemOut)
    return items


app = Litestar(
    route_handlers=[Router(path="/", route_handlers=[read_item, list_items, create_item, transfer]), gc_stats],
    plugins=[plugin],
    on_startup=[freeze_if_asked],
)
