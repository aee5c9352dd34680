"""Test helpers for the health/stats/metrics tests: a real uvicorn server and a throwaway PostgreSQL cluster.

* :func:`serve` runs an ASGI app with ``uvicorn.Server`` as a task on the test's event loop, on a free port, so
  requests really run concurrently (Litestar's ``AsyncTestClient`` serialises them).
* :class:`ThrowawayPostgres` is a PostgreSQL 15 cluster in a temp dir on a free port, run as the ``postgres`` OS
  user, that a test may stop and start (the shared server on 5432 is never touched).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ("PG_BIN", "ThrowawayPostgres", "closed_port", "free_port", "serve")

PG_BIN = Path(os.environ.get("LITESTAR_DB_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


closed_port = free_port


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port> for the block; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", backlog=2048)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)


class ThrowawayPostgres:
    """A private PostgreSQL cluster (trust auth, ``pg_stat_statements`` preloaded) that tests may stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ltdb-health-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\nfsync = off\nmax_connections = 40\n"
            )
        self.start()

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = str(self.dir / "server.log")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are terminated)."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
