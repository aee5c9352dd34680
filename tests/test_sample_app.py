"""The sample project's endpoints on SQLite and PostgreSQL (schema created by the migrations, never create_all)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from litestar_db import DatabaseConfig, PoolConfig
from litestar_db.migrations import Migrations
from sample_project.app import create_app
from tests.conftest import pg_execute
from tests.server import serve
from tests.test_migrations import sample_config

UNKNOWN = "00000000-0000-0000-0000-000000000000"


async def migrated(url: str, **overrides: Any) -> DatabaseConfig:
    config = sample_config(url)
    if overrides:
        config = DatabaseConfig(url=url, migrations=config.migrations, **overrides)
    await Migrations(config).upgrade()
    return config


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(await migrated(db_url))) as test_client:
        yield test_client


async def test_create_user_duplicate_email_is_409_and_no_second_row(client: AsyncTestClient[Any]) -> None:
    created = await client.post("/users", json={"email": "ada@example.com", "name": "Ada"})
    assert created.status_code == 201, created.text
    duplicate = await client.post("/users", json={"email": "ada@example.com", "name": "Other"})
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["error"] == "ConflictError"
    users = (await client.get("/users")).json()
    assert [(u["email"], u["name"]) for u in users] == [("ada@example.com", "Ada")]
    found = await client.get("/users/by-email", params={"email": "ada@example.com"})
    assert found.status_code == 200
    assert found.json()["id"] == created.json()["id"]
    assert (await client.get("/users/by-email", params={"email": "nobody@example.com"})).status_code == 404


async def test_transfer_is_atomic_and_validated(client: AsyncTestClient[Any]) -> None:
    a = (await client.post("/accounts", json={"balance": 100})).json()["id"]
    b = (await client.post("/accounts", json={"balance": 5})).json()["id"]

    async def transfer(source: str, target: str, amount: int) -> httpx.Response:
        return await client.post(
            "/transfers", json={"from_account_id": source, "to_account_id": target, "amount": amount}
        )

    async def balances() -> tuple[int, int]:
        return tuple([(await client.get(f"/accounts/{i}")).json()["balance"] for i in (a, b)])  # type: ignore[return-value]

    done = await transfer(a, b, 30)
    assert done.status_code == 201, done.text
    assert (done.json()["from_balance"], done.json()["to_balance"]) == (70, 35)
    assert await balances() == (70, 35)
    for amount in (0, -5):
        assert (await transfer(a, b, amount)).status_code == 422
    insufficient = await transfer(b, a, 36)
    assert insufficient.status_code == 422
    assert insufficient.json()["detail"] == "insufficient funds"
    assert (await transfer(a, a, 1)).status_code == 422
    assert (await transfer(a, UNKNOWN, 1)).status_code == 404
    assert (await transfer(UNKNOWN, b, 1)).status_code == 404
    assert await balances() == (70, 35)  # nothing moved by the rejected transfers
    assert (await transfer(b, a, 35)).status_code == 201  # down to exactly zero is fine
    assert await balances() == (105, 0)


async def test_product_search_filters_and_paging(client: AsyncTestClient[Any]) -> None:
    kinds = ("Tea", "Coffee")
    products = [{"name": f"{k} {i}", "category": k.lower(), "price": i * 100} for k in kinds for i in range(1, 13)]
    bulk = await client.post("/products/bulk", json=products)
    assert bulk.status_code == 201, bulk.text
    assert bulk.json()["inserted"] == 24
    assert len(set(bulk.json()["ids"])) == 24

    async def search(**params: Any) -> dict[str, Any]:
        response = await client.get("/products", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    assert (await search())["total"] == 24
    tea = await search(name="TEA", limit=5)
    assert (tea["total"], len(tea["items"])) == (12, 5)
    assert all(p["category"] == "tea" for p in tea["items"])
    page = await search(category="coffee", min_price=300, max_price=900, limit=3, offset=3)
    assert page["total"] == 7  # 300..900
    assert [p["price"] for p in page["items"]] == [600, 700, 800]
    assert (await search(name="1_"))["total"] == 0  # the wildcard is escaped: no name contains a literal "1_"
    assert (await client.get("/products", params={"limit": 0})).status_code == 400


async def test_bulk_insert_is_all_or_nothing(client: AsyncTestClient[Any]) -> None:
    assert (await client.post("/products/bulk", json=[])).status_code == 422
    invalid = [{"name": "ok", "category": "x", "price": 1}, {"name": "bad", "category": "x", "price": -1}]
    assert (await client.post("/products/bulk", json=invalid)).status_code == 400
    assert (await client.get("/products")).json()["total"] == 0


async def test_sales_statistics_raw_sql(client: AsyncTestClient[Any]) -> None:
    pen_and_ink = [{"name": "Pen", "category": "c", "price": 150}, {"name": "Ink", "category": "c", "price": 900}]
    ids = (await client.post("/products/bulk", json=pen_and_ink)).json()["ids"]
    customers = []
    for i in range(3):
        user = await client.post("/users", json={"email": f"c{i}@example.com", "name": f"C{i}"})
        customers.append(user.json()["id"])
    sales = [
        (ids[0], customers[0], 2, "2024-03-01T10:00:00Z"),
        (ids[0], customers[1], 1, "2024-03-02T10:00:00Z"),
        (ids[0], customers[1], 3, "2024-03-03T10:00:00+02:00"),
        (ids[1], customers[2], 1, "2024-03-04T10:00:00Z"),
        (ids[1], None, 1, "2024-04-01T00:00:00Z"),  # after the period
    ]
    for product_id, customer_id, quantity, sold_at in sales:
        body = {"product_id": product_id, "customer_id": customer_id, "quantity": quantity, "sold_at": sold_at}
        assert (await client.post("/sales", json=body)).status_code == 201
    assert (await client.post("/sales", json={"product_id": 999999, "quantity": 1})).status_code == 404
    stats = await client.get("/stats/sales", params={"start": "2024-03-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"})
    assert stats.status_code == 200, stats.text
    assert stats.json() == [  # equal revenue: ordered by product id
        {"product_id": ids[0], "product_name": "Pen", "total_sold": 6, "revenue": 900, "unique_customers": 2},
        {"product_id": ids[1], "product_name": "Ink", "total_sold": 1, "revenue": 900, "unique_customers": 1},
    ]
    period = {"start": "2024-03-02T00:00:00Z", "end": "2024-05-01T00:00:00Z", "limit": 1}
    top = await client.get("/stats/sales", params=period)
    assert top.json() == [
        {"product_id": ids[1], "product_name": "Ink", "total_sold": 2, "revenue": 1800, "unique_customers": 1}
    ]


@pytest.mark.postgres
async def test_200_concurrent_transfers_keep_the_total(pg_url: str) -> None:
    config = await migrated(pg_url, pool=PoolConfig(min_size=5, max_size=20))
    rng = random.Random(4)
    async with serve(create_app(config)) as base_url, httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        accounts = [(await http.post("/accounts", json={"balance": 1000})).json()["id"] for _ in range(10)]
        pairs = [rng.sample(accounts, 2) for _ in range(200)]
        responses = await asyncio.gather(
            *(
                http.post("/transfers", json={"from_account_id": s, "to_account_id": t, "amount": rng.randint(1, 400)})
                for s, t in pairs
            )
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 422}, [r.text for r in responses if r.status_code not in (201, 422)]
        assert statuses.count(201) > 100
        balances = {i: (await http.get(f"/accounts/{i}")).json()["balance"] for i in accounts}
    assert sum(balances.values()) == 10 * 1000  # each balance >= 0 is the schema's CHECK, not asserted here
    ledger = await pg_execute(pg_url, "SELECT from_account_id::text, to_account_id::text, amount FROM transfers")
    assert len(ledger) == statuses.count(201)
    for account in accounts:  # every balance is exactly its opening balance plus the ledger's movements
        moved = sum(r[2] for r in ledger if r[1] == account) - sum(r[2] for r in ledger if r[0] == account)
        assert balances[account] == 1000 + moved
