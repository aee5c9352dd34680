"""HTTP endpoints carrying the users' guide's examples.

Every handler runs in the request transaction of :class:`~litestar_db.litestar.DatabasePlugin`: it commits when
the response is 2xx and rolls back otherwise, so handlers never call ``commit()``.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

from advanced_alchemy.filters import LimitOffset, OrderBy, SearchFilter
from advanced_alchemy.types import DateTimeUTC
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy import BigInteger, ColumnElement, Integer, String, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sample_project.models import Account, Product, Sale, Transfer, User
from sample_project.repositories import (
    AccountRepository,
    ProductRepository,
    SaleRepository,
    UserRepository,
    provide_accounts,
    provide_products,
    provide_sales,
    provide_users,
)
from sample_project.schemas import (
    AccountIn,
    AccountOut,
    BulkInsertOut,
    ProductIn,
    ProductOut,
    ProductPage,
    SaleIn,
    SaleOut,
    SalesStatsRow,
    TransferIn,
    TransferOut,
    UserIn,
    UserOut,
)

__all__ = ("AccountController", "ProductController", "SalesController", "TransferController", "UserController")

Limit = Annotated[int, QueryParameter(ge=1, le=100)]
Offset = Annotated[int, QueryParameter(ge=0)]
MAX_BULK = 1000
"""Most products one ``POST /products/bulk`` accepts."""


def _user_out(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name, is_active=user.is_active, created_at=user.created_at)


def _product_out(product: Product) -> ProductOut:
    return ProductOut(id=product.id, name=product.name, category=product.category, price=product.price)


class UserController(Controller):
    """Users: list, get by id or email, create (409 on a duplicate email)."""

    path = "/users"
    tags = ["users"]
    dependencies = {"users": Provide(provide_users)}

    @get("/")
    async def list_users(
        self, users: NamedDependency[UserRepository], limit: Limit = 50, offset: Offset = 0
    ) -> list[UserOut]:
        """Users ordered by email."""
        rows = await users.get_many(LimitOffset(limit, offset), OrderBy("email"))
        return [_user_out(u) for u in rows]

    @get("/by-email")
    async def get_user_by_email(self, users: NamedDependency[UserRepository], email: FromQuery[str]) -> UserOut:
        """The user with ``email`` (exact match); 404 when there is none."""
        user = await users.get_one_or_none(email=email)
        if user is None:
            raise NotFoundException(f"no user with email {email!r}")
        return _user_out(user)

    @get("/{user_id:uuid}")
    async def get_user(self, users: NamedDependency[UserRepository], user_id: FromPath[uuid.UUID]) -> UserOut:
        """One user by id; 404 when unknown."""
        user = await users.get_one_or_none(id=user_id)
        if user is None:
            raise NotFoundException("no such user")
        return _user_out(user)

    @post("/")
    async def create_user(self, users: NamedDependency[UserRepository], data: JSONBody[UserIn]) -> UserOut:
        """Create a user; 409 when the email is taken.

        No check-then-insert: the unique constraint ``uq_users_email`` decides, so two concurrent requests for one
        email can't both succeed. The violation surfaces at flush (or at commit) and becomes 409.
        """
        user = await users.add(User(email=data.email, name=data.name))
        return _user_out(user)


class AccountController(Controller):
    """Accounts with a balance in cents."""

    path = "/accounts"
    tags = ["accounts"]
    dependencies = {"accounts": Provide(provide_accounts)}

    @post("/")
    async def create_account(
        self, accounts: NamedDependency[AccountRepository], data: JSONBody[AccountIn]
    ) -> AccountOut:
        """Open an account with an initial balance."""
        account = await accounts.add(Account(owner_id=data.owner_id, balance=data.balance))
        return AccountOut(id=account.id, balance=account.balance, owner_id=account.owner_id)

    @get("/{account_id:uuid}")
    async def get_account(
        self, accounts: NamedDependency[AccountRepository], account_id: FromPath[uuid.UUID]
    ) -> AccountOut:
        """One account; 404 when unknown."""
        account = await accounts.get_one_or_none(id=account_id)
        if account is None:
            raise NotFoundException("no such account")
        return AccountOut(id=account.id, balance=account.balance, owner_id=account.owner_id)


class TransferController(Controller):
    """Funds transfers (the guide's atomic transaction example)."""

    path = "/transfers"
    tags = ["accounts"]

    @post("/")
    async def transfer(self, db_session: NamedDependency[AsyncSession], data: JSONBody[TransferIn]) -> TransferOut:
        """Move ``amount`` cents between two accounts, atomically.

        Both rows are locked with ``SELECT … FOR UPDATE`` in ascending id order, so two opposite transfers wait for
        each other instead of deadlocking. 404 for an unknown account, 422 for a non-positive amount, identical
        accounts or insufficient funds; the CHECK constraint ``ck_accounts_balance_non_negative`` backs the balance
        rule in the database itself.
        """
        if data.amount <= 0:
            raise HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="amount must be positive")
        if data.from_account_id == data.to_account_id:
            raise HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="accounts must differ")
        ids = sorted((data.from_account_id, data.to_account_id))
        stmt = (
            select(Account)
            .where(Account.id.in_(ids))
            .order_by(Account.id)
            .with_for_update()
            .execution_options(populate_existing=True)  # the locked, current balance, never a cached one
        )
        locked = {a.id: a for a in (await db_session.execute(stmt)).scalars().all()}
        source, target = locked.get(data.from_account_id), locked.get(data.to_account_id)
        if source is None or target is None:
            raise NotFoundException("no such account")
        if source.balance < data.amount:
            raise HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="insufficient funds")
        source.balance -= data.amount
        target.balance += data.amount
        record = Transfer(from_account_id=source.id, to_account_id=target.id, amount=data.amount)
        db_session.add(record)
        await db_session.flush()
        return TransferOut(
            id=record.id,
            from_account_id=source.id,
            to_account_id=target.id,
            amount=data.amount,
            from_balance=source.balance,
            to_balance=target.balance,
        )


class ProductController(Controller):
    """Product search with filters and paging, and bulk insert."""

    path = "/products"
    tags = ["products"]
    dependencies = {"products": Provide(provide_products)}

    @get("/")
    async def search_products(
        self,
        products: NamedDependency[ProductRepository],
        name: FromQuery[str | None] = None,
        category: FromQuery[str | None] = None,
        min_price: Annotated[int | None, QueryParameter(ge=0)] = None,
        max_price: Annotated[int | None, QueryParameter(ge=0)] = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> ProductPage:
        """Products whose name contains ``name`` (case-insensitive), in ``category``, priced within
        ``[min_price, max_price]`` cents; ordered by price then id; ``total`` counts all matches."""
        filters: list[ColumnElement[bool] | SearchFilter | LimitOffset | OrderBy] = []
        if name:
            filters.append(SearchFilter(field_name="name", value=name, ignore_case=True, escape_wildcards=True))
        if category:
            filters.append(Product.category == category)
        if min_price is not None:
            filters.append(Product.price >= min_price)
        if max_price is not None:
            filters.append(Product.price <= max_price)
        filters += [OrderBy("price"), OrderBy("id"), LimitOffset(limit, offset)]
        rows, total = await products.get_many_and_count(*filters)
        return ProductPage(items=[_product_out(p) for p in rows], total=total, limit=limit, offset=offset)

    @post("/")
    async def create_product(
        self, products: NamedDependency[ProductRepository], data: JSONBody[ProductIn]
    ) -> ProductOut:
        """Create one product."""
        product = await products.add(Product(name=data.name, category=data.category, price=data.price))
        return _product_out(product)

    @post("/bulk")
    async def bulk_insert_products(
        self, products: NamedDependency[ProductRepository], data: JSONBody[list[ProductIn]]
    ) -> BulkInsertOut:
        """Insert up to 1000 products in one statement batch (all or nothing); 422 when the list is too long."""
        if not data or len(data) > MAX_BULK:
            raise HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail=f"send 1 to {MAX_BULK} products")
        rows = await products.add_many([Product(name=p.name, category=p.category, price=p.price) for p in data])
        return BulkInsertOut(inserted=len(rows), ids=[p.id for p in rows])


_SALES_STATS = (
    text(
        """
        SELECT p.id AS product_id,
               p.name AS product_name,
               SUM(s.quantity) AS total_sold,
               SUM(s.quantity * s.unit_price) AS revenue,
               COUNT(DISTINCT s.customer_id) AS unique_customers
        FROM sales AS s
        JOIN products AS p ON p.id = s.product_id
        WHERE s.sold_at >= :start AND s.sold_at < :end
        GROUP BY p.id, p.name
        ORDER BY revenue DESC, p.id
        LIMIT :limit
        """
    )
    # Bind the bounds with the column's own type, so SQLite compares them in the stored text format.
    .bindparams(
        bindparam("start", type_=DateTimeUTC(timezone=True)),
        bindparam("end", type_=DateTimeUTC(timezone=True)),
        bindparam("limit", type_=Integer()),
    )
    .columns(product_id=BigInteger(), product_name=String(), total_sold=BigInteger(), revenue=BigInteger())
)


class SalesController(Controller):
    """Sales and their statistics (raw SQL)."""

    tags = ["sales"]
    dependencies = {"sales": Provide(provide_sales), "products": Provide(provide_products)}

    @post("/sales")
    async def record_sale(
        self,
        sales: NamedDependency[SaleRepository],
        products: NamedDependency[ProductRepository],
        data: JSONBody[SaleIn],
    ) -> SaleOut:
        """Record a sale at the given or current price; 404 for an unknown product."""
        product = await products.get_one_or_none(id=data.product_id)
        if product is None:
            raise NotFoundException("no such product")
        sale = Sale(
            product_id=product.id,
            customer_id=data.customer_id,
            quantity=data.quantity,
            unit_price=product.price if data.unit_price is None else data.unit_price,
        )
        if data.sold_at is not None:
            sale.sold_at = data.sold_at
        sale = await sales.add(sale)
        return SaleOut(
            id=sale.id,
            product_id=sale.product_id,
            customer_id=sale.customer_id,
            quantity=sale.quantity,
            unit_price=sale.unit_price,
            sold_at=sale.sold_at,
        )

    @get("/stats/sales")
    async def sales_statistics(
        self,
        db_session: NamedDependency[AsyncSession],
        start: FromQuery[datetime.datetime],
        end: FromQuery[datetime.datetime],
        limit: Limit = 10,
    ) -> list[SalesStatsRow]:
        """Top products by revenue (cents) with units sold and distinct customers in ``[start, end)``.

        Raw SQL through ``text()`` that runs unchanged on PostgreSQL and SQLite; naive datetimes are taken as UTC.
        """
        bounds = [d if d.tzinfo else d.replace(tzinfo=datetime.UTC) for d in (start, end)]
        result = await db_session.execute(_SALES_STATS, {"start": bounds[0], "end": bounds[1], "limit": limit})
        return [
            SalesStatsRow(
                product_id=int(r.product_id),
                product_name=r.product_name,
                total_sold=int(r.total_sold),
                revenue=int(r.revenue),
                unique_customers=int(r.unique_customers),
            )
            for r in result
        ]
