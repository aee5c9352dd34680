"""What the four contender apps share: settings from the environment, the schema, the models, the payloads
and the three ORM route handlers' code.

The three SQLAlchemy contenders (litestar_db, advanced-alchemy, hand-written) serve *the same handler functions*
below; they differ only in who provides ``db_session`` and who commits. The raw asyncpg app runs the same SQL by
hand. Every app returns the same msgspec Structs, encoded by Litestar's msgspec serializer.
"""

from __future__ import annotations

import os

import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from sqlalchemy import BigInteger, ForeignKey, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = (
    "DATABASE_URL",
    "LIST_SIZE",
    "POOL_SIZE",
    "SCHEMA_SQL",
    "Account",
    "Item",
    "ItemIn",
    "ItemOut",
    "Transfer",
    "TransferIn",
    "TransferOut",
    "check_transfer",
    "orm_router",
)

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/litestar_db_bench")
"""Plain ``postgresql://`` URL of the benchmark database (each app adds its own driver)."""
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "10"))
"""Connections per app: the pool size and the maximum (no overflow) of every contender."""
LIST_SIZE = 20
"""Rows returned by the list endpoint."""

SCHEMA_SQL = """
CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name varchar(100) NOT NULL,
    price_cents bigint NOT NULL
);
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    balance bigint NOT NULL
);
CREATE TABLE transfers (
    id bigserial PRIMARY KEY,
    source_id bigint NOT NULL REFERENCES accounts (id),
    target_id bigint NOT NULL REFERENCES accounts (id),
    amount bigint NOT NULL
);
"""
"""DDL of the benchmark database (run once by the runner, never by the apps)."""


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int] = mapped_column(BigInteger)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)


class Transfer(Base):
    __tablename__ = "transfers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    target_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class ItemIn(msgspec.Struct, frozen=True):
    name: str
    price_cents: int


class ItemOut(msgspec.Struct, frozen=True):
    id: int
    name: str
    price_cents: int


class TransferIn(msgspec.Struct, frozen=True):
    source_id: int
    target_id: int
    amount: int


class TransferOut(msgspec.Struct, frozen=True):
    id: int
    source_id: int
    target_id: int
    amount: int


def check_transfer(data: TransferIn) -> tuple[tuple[int, int], tuple[int, int]]:
    """Validate a transfer and return its two ``(account_id, delta)`` updates in primary-key order.

    Updating in key order keeps concurrent transfers free of deadlocks (both lock the lower id first).

    Raises:
        ValidationException: same account twice, or a non-positive amount.
    """
    if data.source_id == data.target_id or data.amount <= 0:
        raise ValidationException("source_id and target_id must differ and amount must be > 0")
    first = (data.source_id, -data.amount)
    second = (data.target_id, data.amount)
    return (first, second) if data.source_id < data.target_id else (second, first)


@get("/items/{item_id:int}")
async def read_item(db_session: NamedDependency[AsyncSession], item_id: int) -> ItemOut:
    """Read one row by primary key."""
    item = await db_session.get(Item, item_id)
    if item is None:
        raise NotFoundException(f"item {item_id} not found")
    return ItemOut(id=item.id, name=item.name, price_cents=item.price_cents)


@get("/items")
async def list_items(db_session: NamedDependency[AsyncSession], after: int = 0) -> list[ItemOut]:
    """The 20 rows after ``after`` in primary-key order (keyset paging)."""
    rows = await db_session.scalars(select(Item).where(Item.id > after).order_by(Item.id).limit(LIST_SIZE))
    return [ItemOut(id=i.id, name=i.name, price_cents=i.price_cents) for i in rows]


@post("/items")
async def create_item(db_session: NamedDependency[AsyncSession], data: ItemIn) -> ItemOut:
    """Insert one row; the contender's request transaction commits it."""
    item = Item(name=data.name, price_cents=data.price_cents)
    db_session.add(item)
    await db_session.flush()
    return ItemOut(id=item.id, name=item.name, price_cents=item.price_cents)


@post("/transfers")
async def transfer(db_session: NamedDependency[AsyncSession], data: TransferIn) -> TransferOut:
    """Move ``amount`` between two accounts: two UPDATEs and one INSERT in the request transaction.

    An unknown account answers 404 after the first UPDATE ran: the contender must roll it back.
    """
    for account_id, delta in check_transfer(data):
        result = await db_session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(balance=Account.balance + delta)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFoundException(f"account {account_id} not found")
    row = Transfer(source_id=data.source_id, target_id=data.target_id, amount=data.amount)
    db_session.add(row)
    await db_session.flush()
    return TransferOut(id=row.id, source_id=row.source_id, target_id=row.target_id, amount=row.amount)


def orm_router() -> Router:
    """The four endpoints for the SQLAlchemy contenders (each provides ``db_session`` its own way)."""
    return Router(path="/", route_handlers=[read_item, list_items, create_item, transfer])
