"""C04: behind PgBouncer in transaction mode (a real pgbouncer started by the test)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import Database, DatabaseConfig, DatabasePlugin, PoolConfig
from tests.server import free_port, serve

pytestmark = pytest.mark.postgres

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def pgbouncer(pg_url: str) -> Iterator[str]:
    """pgbouncer in ``pool_mode=transaction`` in front of the test database; yields its URL."""
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed (.ci/run installs the Debian package)")
    url = make_url(pg_url)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ltdb-pgbouncer-"))
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{url.database} = host={url.host} port={url.port or 5432} dbname={url.database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,application_name,statement_timeout
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""
    )
    (workdir / "users.txt").write_text(f'"{url.username or "postgres"}" ""\n')
    shutil.chown(workdir, "postgres")
    for child in workdir.iterdir():
        shutil.chown(child, "postgres")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([*run_as, PGBOUNCER, str(workdir / "pgbouncer.ini")])
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"pgbouncer exited: {(workdir / 'pgbouncer.log').read_text()}")
                time.sleep(0.05)
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@get("/items/{n:int}")
async def items(n: FromPath[int], db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    # a parameterised statement: asyncpg prepares it; different shapes per request widen the collision window
    row = await db_session.execute(
        text("SELECT CAST(:n AS int) + count(*) AS v FROM pg_class WHERE relpages >= :p"), {"n": n, "p": n % 3}
    )
    return {"v": int(row.scalar_one())}


async def hammer(url: str, *, pgbouncer_mode: bool) -> list[int]:
    config = DatabaseConfig(url=url, pool=PoolConfig(min_size=10, max_size=20))
    if pgbouncer_mode:
        config = DatabaseConfig(url=f"{url}?pgbouncer=true", pool=PoolConfig(min_size=10, max_size=20))
    app = Litestar([items], plugins=[DatabasePlugin(config)])
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(50)))
        responses += await asyncio.gather(*(client.get(f"/items/{i}") for i in range(50)))
    return [r.status_code for r in responses]


async def test_c04_pgbouncer_transaction_mode(pgbouncer: str) -> None:
    statuses = await hammer(pgbouncer, pgbouncer_mode=True)
    assert statuses == [200] * 100


async def test_c04_without_pgbouncer_mode_the_failure_is_real(pgbouncer: str) -> None:
    """Control: the same load without the setting breaks on prepared statements (so the test above can fail)."""
    statuses = await hammer(pgbouncer, pgbouncer_mode=False)
    assert any(s >= 500 for s in statuses)


async def test_health_check_through_pgbouncer(pgbouncer: str) -> None:
    db = Database(DatabaseConfig(url=f"{pgbouncer}?pgbouncer=true"))
    try:
        assert await db.health_check() is True
    finally:
        await db.dispose()
