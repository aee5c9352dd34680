"""Correctness checks run against every contender before it is measured (a fast wrong contender is worthless).

Each check talks HTTP to the running server and reads the outcome back through a *separate* PostgreSQL
connection, which sees only committed data.
"""

from __future__ import annotations

import asyncio
import random

import httpx

from benchmarks.common import LIST_SIZE
from benchmarks.harness import BenchDatabase

__all__ = ("VerificationError", "total_balance", "verify")


class VerificationError(AssertionError):
    """A contender answered wrongly; the run stops before measuring it."""


def _expect(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise VerificationError(f"{name}: {what}")


async def total_balance(db: BenchDatabase) -> int:
    """Sum of all balances (transfers must conserve it)."""
    rows = await db.fetch("SELECT sum(balance) FROM accounts")
    return int(rows[0][0])


async def _check_reads(name: str, client: httpx.AsyncClient, db: BenchDatabase) -> None:
    resp = await client.get("/items/7")
    row = (await db.fetch("SELECT id, name, price_cents FROM items WHERE id = 7"))[0]
    _expect(resp.status_code == 200, name, f"GET /items/7 answered {resp.status_code}")
    _expect(resp.json() == dict(row), name, f"GET /items/7 returned {resp.json()}, the table has {dict(row)}")
    resp = await client.get("/items/999999999")
    _expect(resp.status_code == 404, name, f"GET of a missing item answered {resp.status_code}, not 404")
    resp = await client.get("/items", params={"after": 100})
    rows = await db.fetch("SELECT id, name, price_cents FROM items WHERE id > 100 ORDER BY id LIMIT $1", LIST_SIZE)
    _expect(resp.status_code == 200, name, f"GET /items answered {resp.status_code}")
    _expect(resp.json() == [dict(r) for r in rows], name, "GET /items?after=100 differs from the table")


async def _check_insert(name: str, client: httpx.AsyncClient, db: BenchDatabase) -> None:
    body = {"name": f"verify-{name}", "price_cents": 4242}
    resp = await client.post("/items", json=body)
    _expect(resp.status_code == 201, name, f"POST /items answered {resp.status_code}")
    new_id = resp.json()["id"]
    rows = await db.fetch("SELECT name, price_cents FROM items WHERE id = $1", new_id)
    _expect([dict(r) for r in rows] == [body], name, f"inserted item {new_id} is not committed: {rows}")


async def _check_transfers(name: str, client: httpx.AsyncClient, db: BenchDatabase, accounts: int) -> None:
    total = await total_balance(db)
    before = {r[0]: r[1] for r in await db.fetch("SELECT id, balance FROM accounts")}
    rng = random.Random(name)
    pairs = [rng.sample(range(1, min(accounts, 20) + 1), 2) for _ in range(40)]  # few accounts: real contention
    sem = asyncio.Semaphore(8)

    async def one(source: int, target: int) -> httpx.Response:
        async with sem:
            return await client.post("/transfers", json={"source_id": source, "target_id": target, "amount": 3})

    responses = await asyncio.gather(*(one(s, t) for s, t in pairs))
    _expect(
        all(r.status_code == 201 for r in responses), name, f"transfers answered {[r.status_code for r in responses]}"
    )
    expected = dict(before)
    for source, target in pairs:
        expected[source] -= 3
        expected[target] += 3
    after = {r[0]: r[1] for r in await db.fetch("SELECT id, balance FROM accounts")}
    _expect(after == expected, name, "balances after 40 concurrent transfers are not the expected ones")
    _expect(await total_balance(db) == total, name, "transfers did not conserve the total balance")
    ids = [r.json()["id"] for r in responses]
    rows = await db.fetch("SELECT count(*) FROM transfers WHERE id = ANY($1::bigint[])", ids)
    _expect(rows[0][0] == len(ids), name, "not every transfer row is committed")

    # An unknown target after the source's UPDATE ran: 404, and the UPDATE must be rolled back.
    count = (await db.fetch("SELECT count(*) FROM transfers"))[0][0]
    resp = await client.post("/transfers", json={"source_id": 1, "target_id": accounts + 1000, "amount": 5})
    _expect(resp.status_code == 404, name, f"transfer to an unknown account answered {resp.status_code}, not 404")
    balance = (await db.fetch("SELECT balance FROM accounts WHERE id = 1"))[0][0]
    _expect(balance == after[1], name, "a failed transfer left its first UPDATE committed (no rollback)")
    _expect((await db.fetch("SELECT count(*) FROM transfers"))[0][0] == count, name, "a failed transfer left a row")


async def verify(name: str, base_url: str, db: BenchDatabase, accounts: int) -> None:
    """Check reads, list, committed insert, concurrent transfers (conservation) and rollback on 404.

    Raises:
        VerificationError: naming the contender and what was wrong.
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        await _check_reads(name, client, db)
        await _check_insert(name, client, db)
        await _check_transfers(name, client, db, accounts)
