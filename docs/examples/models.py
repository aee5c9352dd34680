"""Models shared by the guide's examples: users, accounts, transfers, products and sales.

Money is in integer cents, so sums are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ("Account", "Base", "Product", "Sale", "Transfer", "User", "create_tables")


class Base(DeclarativeBase):
    """Declarative base of the examples."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_accounts_balance"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    from_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    to_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    category: Mapped[str] = mapped_column(String(50))
    price: Mapped[int] = mapped_column(BigInteger)


class Sale(Base):
    __tablename__ = "sales"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    quantity: Mapped[int]
    unit_price: Mapped[int] = mapped_column(BigInteger)
    sold_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


async def create_tables(engine: AsyncEngine) -> None:
    """Create the example tables (real projects use migrations, see the Migrations chapter)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
