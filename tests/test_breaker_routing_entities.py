"""Plain-read check on ORM entities and bundles: a side-effect column hidden behind an entity is not a plain read."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.orm import (
    Bundle,
    DeclarativeBase,
    Mapped,
    aliased,
    column_property,
    mapped_column,
    query_expression,
    with_expression,
)

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


class Pet(Base):
    __tablename__ = "b3_pet"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String)
    extra: Mapped[int | None] = query_expression()
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "pet", "with_polymorphic": "*"}


class Dog(Pet):
    __mapper_args__ = {"polymorphic_identity": "dog"}
    tag: Mapped[str] = column_property(func.set_config("application_name", "dog", False))


def test_side_effects_hidden_in_orm_loading_are_not_a_plain_read() -> None:
    # found by a breaker: none of these show in the statement's own columns; all are in the SQL it compiles to
    assert not is_plain_read(select(Pet))  # a polymorphic subclass's column_property
    plain = select(Pet.id, Pet.kind)
    assert is_plain_read(plain)
    assert not is_plain_read(plain.add_columns(func.pg_advisory_lock(1)))
    assert not is_plain_read(select(Pet).options(with_expression(Pet.extra, func.nextval("b2_seq"))))


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
