"""Plumbing shared by the runner, the memory check and the profiler: the benchmark database and the servers.

Every contender runs as its own ``uvicorn`` process (one worker, access log off, uvloop + httptools when
installed) on a free port of 127.0.0.1, against a dedicated database created here and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.common import SCHEMA_SQL

__all__ = (
    "ACCOUNT_BALANCE",
    "CONTENDERS",
    "ROOT",
    "BenchDatabase",
    "Server",
    "free_port",
    "served",
)

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (servers run with it as working directory)."""
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""A PostgreSQL login that may create databases (the shared server on 127.0.0.1:5432 by default)."""
ACCOUNT_BALANCE = 1_000_000
"""Initial balance of every seeded account (the total must stay ``accounts * ACCOUNT_BALANCE``)."""
CONTENDERS: dict[str, str] = {
    "litestar_db": "benchmarks.apps.litestar_db_app:app",
    "aa": "benchmarks.apps.aa_app:app",
    "handwritten": "benchmarks.apps.handwritten_app:app",
    "raw": "benchmarks.apps.raw_app:app",
    "ldb_fetch": "benchmarks.apps.litestar_db_fetch_app:app",
}
"""Contender name → ASGI app import path, in the order each round runs them."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BenchDatabase:
    """A throwaway database ``litestar_db_bench_<pid>`` seeded with items and accounts."""

    items: int
    accounts: int
    name: str = field(default_factory=lambda: f"litestar_db_bench_{os.getpid()}")

    @property
    def url(self) -> str:
        """Plain ``postgresql://`` URL of the benchmark database."""
        base, _, _ = ADMIN_URL.rpartition("/")
        return f"{base}/{self.name}"

    async def create(self) -> None:
        """Create, migrate and seed the database (ids 1..items, 1..accounts), then ANALYZE it."""
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(SCHEMA_SQL)
            await conn.execute(
                "INSERT INTO items (name, price_cents)"
                " SELECT 'item-' || g, g * 7 % 100000 FROM generate_series(1, $1) g",
                self.items,
            )
            await conn.execute(
                "INSERT INTO accounts (id, balance) SELECT g, $2 FROM generate_series(1, $1) g",
                self.accounts,
                ACCOUNT_BALANCE,
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    async def drop(self) -> None:
        """Drop the database, disconnecting whatever still uses it."""
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Run one statement on a separate connection (an observer that only sees committed data)."""
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def server_version(self) -> str:
        """``SELECT version()`` of the server."""
        rows = await self.fetch("SELECT version()")
        return str(rows[0][0])


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass
class Server:
    """One contender served by ``uvicorn`` in a child process."""

    name: str
    app: str
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the uvicorn process (for RSS sampling and profilers)."""
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (``/proc/<pid>/stat``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def gc_stats(self) -> dict[str, Any]:
        """The server's garbage-collector counters (``GET /_bench/gc``, :mod:`benchmarks.gcstats`)."""
        with urllib.request.urlopen(f"{self.base_url}/_bench/gc", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def command(self) -> list[str]:
        """The uvicorn command line (uvloop/httptools when installed, else uvicorn's pure-Python defaults)."""
        cmd = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--no-access-log", "--log-level", "warning"]
        cmd += ["--loop", "uvloop" if _has("uvloop") else "asyncio"]
        cmd += ["--http", "httptools" if _has("httptools") else "h11"]
        return cmd

    def start(self, prefix: list[str] | None = None, timeout: float = 30.0) -> None:
        """Start the server (optionally under a wrapper such as ``py-spy record --``) and wait until it answers.

        Raises:
            RuntimeError: it exited or did not answer ``GET /items/1`` within ``timeout`` seconds.
        """
        self.port = free_port()
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([*(prefix or []), *self.command()], cwd=ROOT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"{self.name}: server exited with {self.process.returncode}"
                raise RuntimeError(msg)
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/items/1", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        msg = f"{self.name}: server did not answer within {timeout} s"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown, runs the lifespan), then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def served(contender: str, **env: str) -> Iterator[Server]:
    """``contender`` served (as in ``make bench``) on a fresh seeded database: 10,000 items, 1,000 accounts.

    Args:
        contender: A key of :data:`CONTENDERS`.
        env: More environment for the server (``BENCH_POOL_SIZE``, ``BENCH_GC_TRACE``, ...).

    Yields:
        The started server; it is stopped and the database dropped on exit.
    """
    db = BenchDatabase(items=10000, accounts=1000)
    asyncio.run(db.create())
    server = Server(contender, CONTENDERS[contender], {"BENCH_DATABASE_URL": db.url, **env})
    try:
        server.start()
        yield server
    finally:
        server.stop()
        asyncio.run(db.drop())
