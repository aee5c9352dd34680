"""advanced-alchemy repositories of the sample models, and their dependency providers."""

from __future__ import annotations

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from sample_project.models import Account, Product, Sale, User

__all__ = (
    "AccountRepository",
    "ProductRepository",
    "SaleRepository",
    "UserRepository",
    "provide_accounts",
    "provide_products",
    "provide_sales",
    "provide_users",
)


class UserRepository(SQLAlchemyAsyncRepository[User]):
    """Users."""

    model_type = User


class AccountRepository(SQLAlchemyAsyncRepository[Account]):
    """Accounts."""

    model_type = Account


class ProductRepository(SQLAlchemyAsyncRepository[Product]):
    """Products."""

    model_type = Product


class SaleRepository(SQLAlchemyAsyncRepository[Sale]):
    """Sales."""

    model_type = Sale


async def provide_users(db_session: NamedDependency[AsyncSession]) -> UserRepository:
    """The request's :class:`UserRepository` (on the request transaction's session)."""
    return UserRepository(session=db_session)


async def provide_accounts(db_session: NamedDependency[AsyncSession]) -> AccountRepository:
    """The request's :class:`AccountRepository`."""
    return AccountRepository(session=db_session)


async def provide_products(db_session: NamedDependency[AsyncSession]) -> ProductRepository:
    """The request's :class:`ProductRepository`."""
    return ProductRepository(session=db_session)


async def provide_sales(db_session: NamedDependency[AsyncSession]) -> SaleRepository:
    """The request's :class:`SaleRepository`."""
    return SaleRepository(session=db_session)
