"""The sample project's tables: users, accounts (with transfers), products and sales.

Money is stored in integer minor units (cents) so sums are exact on every backend. Constraint names follow
advanced-alchemy's naming convention (``uq_users_email``, ``ck_accounts_balance_non_negative``, …), which the
migrations rely on.
"""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.base import IdentityAuditBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("Account", "Product", "Sale", "Transfer", "User")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class User(UUIDAuditBase):
    """A user; ``email`` is unique (the database decides, see ``POST /users``)."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True)


class Account(UUIDAuditBase):
    """A money account; ``balance`` (cents) can never go below zero (CHECK constraint)."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_non_negative"),)

    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class Transfer(UUIDAuditBase):
    """One completed transfer between two accounts (the ledger)."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("from_account_id <> to_account_id", name="distinct_accounts"),
    )

    from_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    to_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Product(IdentityAuditBase):
    """A product for sale; ``price`` in cents."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        Index("ix_products_category_price", "category", "price"),
    )

    name: Mapped[str] = mapped_column(String(200), index=True)
    category: Mapped[str] = mapped_column(String(50))
    price: Mapped[int] = mapped_column(BigInteger)


class Sale(IdentityAuditBase):
    """One sale line: ``quantity`` units of a product at ``unit_price`` cents, optionally to a known customer."""

    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
    )

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    quantity: Mapped[int]
    unit_price: Mapped[int] = mapped_column(BigInteger)
    sold_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True), default=_utcnow, index=True)
