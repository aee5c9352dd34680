"""Request and response payloads (msgspec Structs). Money is in integer cents."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec

__all__ = (
    "AccountIn",
    "AccountOut",
    "BulkInsertOut",
    "ProductIn",
    "ProductOut",
    "ProductPage",
    "SaleIn",
    "SaleOut",
    "SalesStatsRow",
    "TransferIn",
    "TransferOut",
    "UserIn",
    "UserOut",
)

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Cents = Annotated[int, msgspec.Meta(ge=0)]


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /users`` body."""

    email: Email
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class UserOut(msgspec.Struct):
    """A user."""

    id: uuid.UUID
    email: str
    name: str
    is_active: bool
    created_at: datetime.datetime


class AccountIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /accounts`` body: an opening balance in cents."""

    balance: Cents = 0
    owner_id: uuid.UUID | None = None


class AccountOut(msgspec.Struct):
    """An account and its balance (cents)."""

    id: uuid.UUID
    balance: int
    owner_id: uuid.UUID | None


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /transfers`` body. ``amount`` must be positive (422 otherwise) and at most the source balance."""

    from_account_id: uuid.UUID
    to_account_id: uuid.UUID
    amount: int


class TransferOut(msgspec.Struct):
    """A completed transfer with both balances after it."""

    id: uuid.UUID
    from_account_id: uuid.UUID
    to_account_id: uuid.UUID
    amount: int
    from_balance: int
    to_balance: int


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    """One product to create."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    price: Cents


class ProductOut(msgspec.Struct):
    """A product."""

    id: int
    name: str
    category: str
    price: int


class ProductPage(msgspec.Struct):
    """One page of a product search: ``total`` counts every match, ``items`` holds at most ``limit``."""

    items: list[ProductOut]
    total: int
    limit: int
    offset: int


class BulkInsertOut(msgspec.Struct):
    """Result of ``POST /products/bulk``."""

    inserted: int
    ids: list[int]


class SaleIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /sales`` body; ``unit_price`` defaults to the product's current price."""

    product_id: int
    quantity: Annotated[int, msgspec.Meta(gt=0)]
    customer_id: uuid.UUID | None = None
    unit_price: Cents | None = None
    sold_at: datetime.datetime | None = None


class SaleOut(msgspec.Struct):
    """A recorded sale."""

    id: int
    product_id: int
    customer_id: uuid.UUID | None
    quantity: int
    unit_price: int
    sold_at: datetime.datetime


class SalesStatsRow(msgspec.Struct):
    """Sales of one product in the requested period (``GET /stats/sales``)."""

    product_id: int
    product_name: str
    total_sold: int
    revenue: int
    unique_customers: int
