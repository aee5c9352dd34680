"""Test helpers for the health/stats/metrics tests (the real server is :mod:`tests.server`).

:class:`ThrowawayPostgres` is a PostgreSQL 15 cluster in a temp dir on a free port, run as the ``postgres`` OS
user, that a test may stop and start (the shared server on 5432 is never touched).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path

from litestar_db import MigrationConfig
from tests.server import free_port

__all__ = ("NO_MIGRATIONS", "PG_BIN", "ThrowawayPostgres", "closed_port")


def _pg_bin() -> Path:
    """``LITESTAR_DB_PG_BIN``, else the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout)."""
    if "LITESTAR_DB_PG_BIN" in os.environ:
        return Path(os.environ["LITESTAR_DB_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
NO_MIGRATIONS = MigrationConfig(script_location=str(Path(__file__).parent / "no-migrations-directory"))
"""For apps under test that do not use migrations: the repository's ``migrations/`` (found relative to the working
directory by default) would otherwise make readiness report the fresh test database as behind its schema."""


def closed_port() -> int:
    """A loopback TCP port nobody listens on (a database that is down)."""
    return free_port()


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)


class ThrowawayPostgres:
    """A private PostgreSQL cluster (trust auth, ``pg_stat_statements`` preloaded) that tests may stop and start.

    Args:
        primary: Make this cluster a streaming standby of ``primary`` (``pg_basebackup -R``) instead of running
            ``initdb``.
    """

    def __init__(self, primary: ThrowawayPostgres | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ltdb-health-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        if primary is None:
            _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host replication all 127.0.0.1/32 trust\n")
        else:
            basebackup = [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]
            _as_postgres(*basebackup, "-D", str(self.data), "-R", "-X", "stream", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\nfsync = off\nmax_connections = 40\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
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
