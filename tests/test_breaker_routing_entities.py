"""Plain-read check on ORM entities and bundles: a side-effect column hidden behind an entity is not a plain read."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, func, select, text
from sqlalchemy.orm import Bundle, DeclarativeBase, Mapped, aliased, column_property, mapped_column

from litestar_db import Database, DatabaseConfig
from litestar_db.config import ReadWriteConfig, ReplicaConfig
from litestar_db.routing import is_plain_read


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "b2_ticket"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = column_property(func.nextval("b2_seq"))


def test_entity_with_a_nextval_column_property_is_not_a_plain_read() -> None:
    assert not is_plain_read(select(Ticket.number))  # held before: the attribute alone
    assert not is_plain_read(select(Ticket))
    assert not is_plain_read(select(aliased(Ticket)))


def test_bundle_with_a_nextval_column_is_not_a_plain_read() -> None:
    assert not is_plain_read(select(Bundle("b", func.nextval("b2_seq"))))


@pytest.mark.postgres
async def test_entity_with_nextval_column_property_is_routed_to_the_primary(pg_url: str) -> None:
    config = DatabaseConfig(
        url=pg_url,
        read_write=ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url=pg_url, name="r0"),)),
    )
    db = Database(config)
    try:
        async with db.session() as session:
            await session.execute(text("CREATE SEQUENCE b2_seq"))
            await session.execute(text("CREATE TABLE b2_ticket (id int primary key)"))
            await session.execute(text("INSERT INTO b2_ticket VALUES (1)"))
            await session.commit()
        assert db.router is not None
        session = db.router.session("replica", "breaker2")
        try:
            ticket = (await session.execute(select(Ticket))).scalar_one()
            assert ticket.number == 1
        finally:
            await session.close()
    finally:
        await db.dispose()
