"""A throwaway PostgreSQL primary with streaming standbys, for tests of read-replica routing.

The cluster is real: ``initdb`` creates the primary, ``pg_basebackup -R`` clones each standby (which then streams
WAL from the primary as a hot standby), and every server runs as the ``postgres`` OS user when the tests run as
root (PostgreSQL refuses to run as root). Everything lives in one temporary directory removed by :meth:`stop`.
Durability is switched off (``fsync=off``, ``initdb --no-sync``) because the data is thrown away; startup takes
a few seconds.

Example:
    ``with ReplicatedCluster(replicas=1) as cluster: url = cluster.create_database("t1")``
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ("PostgresServer", "ReplicatedCluster", "find_pg_bin", "free_port")

_OS_USER = "postgres"


def find_pg_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``pg_basebackup``.

    Looks at ``PATH`` first, then ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu; newest version wins).

    Raises:
        RuntimeError: no PostgreSQL server binaries are installed.
    """
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        msg = "PostgreSQL server binaries not found (install the 'postgresql' package or put initdb on PATH)"
        raise RuntimeError(msg)
    return Path(candidates[-1]).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so it runs as the ``postgres`` OS user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", _OS_USER, "--", *cmd]
    return cmd


def _run(cmd: list[str], *, timeout: float = 60.0) -> str:
    # The commands are built here from fixed tool names and our own paths; no shell is involved.
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    if proc.returncode != 0:
        msg = f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        raise RuntimeError(msg)
    return proc.stdout


@dataclass
class PostgresServer:
    """One server of the cluster (the primary or a standby)."""

    name: str
    """``"primary"`` or ``"replica1"``, ``"replica2"``, …"""
    data_dir: Path
    port: int
    bin_dir: Path
    running: bool = field(default=False)

    @property
    def log_file(self) -> Path:
        """The server log (``pg_ctl -l``); errors and their statements are logged there."""
        return self.data_dir.parent / f"{self.name}.log"

    def url(self, database: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:<port>/<database>`` (trust authentication, no password)."""
        return f"postgresql://{_OS_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        _run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate``, as ``pg_ctl stop -m``)."""
        if self.running:
            _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])
            self.running = False

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with ``psql`` and return its unaligned, tuples-only output (stripped)."""
        cmd = [str(self.bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port), "-U", _OS_USER, "-d", database, "-c", statement]
        return _run(cmd, timeout=30).strip()

    def read_log(self) -> str:
        """The server log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class ReplicatedCluster:
    """A primary and ``replicas`` streaming hot standbys on free ports, in a temporary directory.

    Args:
        replicas: Number of standbys.
        base_dir: Parent of the temporary directory (must be writable by the ``postgres`` user); default the
            system temp dir.
        bin_dir: PostgreSQL binaries; found with :func:`find_pg_bin` when ``None``.
        settings: Extra ``postgresql.conf`` lines for every server, e.g. ``{"log_min_duration_statement": "0"}``.
    """

    def __init__(
        self,
        replicas: int = 1,
        *,
        base_dir: str | None = None,
        bin_dir: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        if replicas < 1:
            msg = f"replicas must be >= 1, got {replicas}"
            raise ValueError(msg)
        self.bin_dir = bin_dir or find_pg_bin()
        self._replica_count = replicas
        self._base_dir = base_dir
        self._settings = settings or {}
        self.root: Path | None = None
        self.primary: PostgresServer | None = None
        self.replicas: list[PostgresServer] = []

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> ReplicatedCluster:
        """Create and start the primary and the standbys; wait until every standby has replayed the primary.

        Returns:
            ``self``.

        Raises:
            RuntimeError: a PostgreSQL tool failed (its stderr is in the message).
        """
        self.root = Path(tempfile.mkdtemp(prefix="litestar_db_pg_", dir=self._base_dir))
        if os.geteuid() == 0:
            shutil.chown(self.root, _OS_USER, _OS_USER)
        try:
            self._start_primary()
            for index in range(1, self._replica_count + 1):
                self._clone_replica(index)
            self.wait_for_catchup()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_primary(self) -> None:
        assert self.root is not None
        data = self.root / "primary"
        _run([str(self.bin_dir / "initdb"), "-D", str(data), "-U", _OS_USER, "-A", "trust", "-E", "UTF8", "--no-sync"])
        self.primary = PostgresServer("primary", data, free_port(), self.bin_dir)
        settings = {
            "wal_level": "replica",
            "max_wal_senders": "10",
            "wal_keep_size": "'128MB'",
            "hot_standby": "on",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "on",
            "wal_receiver_status_interval": "1",
            "max_connections": "100",
            "shared_buffers": "'32MB'",
            **self._settings,
        }
        self._write_conf(self.primary, settings)
        self.primary.start()

    def _write_conf(self, server: PostgresServer, settings: dict[str, str]) -> None:
        assert self.root is not None
        lines = [
            f"port = {server.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            *(f"{key} = {value}" for key, value in settings.items()),
        ]
        conf = server.data_dir / "postgresql.conf"
        text = conf.read_text() if conf.exists() else ""
        conf.write_text(text + "\n# litestar_db.testing\n" + "\n".join(lines) + "\n")

    def add_replica(self) -> int:
        """Clone one more standby from the running primary and start it.

        Returns:
            The new standby's 0-based index.
        """
        self._clone_replica(len(self.replicas) + 1)
        self.wait_for_catchup(replicas=[self.replicas[-1]])
        return len(self.replicas) - 1

    def _clone_replica(self, index: int) -> None:
        assert self.root is not None
        assert self.primary is not None
        data = self.root / f"replica{index}"
        cmd = [str(self.bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", _OS_USER]
        _run([*cmd, "-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        server = PostgresServer(f"replica{index}", data, free_port(), self.bin_dir)
        self._write_conf(server, {"hot_standby_feedback": "on"})
        server.start()
        self.replicas.append(server)

    def stop(self) -> None:
        """Stop every server (``immediate``) and remove the temporary directory. Safe to call twice."""
        for server in [*self.replicas, *([self.primary] if self.primary else [])]:
            with contextlib.suppress(RuntimeError):
                server.stop("immediate")
        self.replicas = []
        self.primary = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> ReplicatedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers for tests ---------------------------------------------------------------------------------
    def _primary(self) -> PostgresServer:
        if self.primary is None:
            msg = "the cluster is not started"
            raise RuntimeError(msg)
        return self.primary

    def replica(self, index: int = 0) -> PostgresServer:
        """The ``index``-th standby (0-based)."""
        return self.replicas[index]

    def wait_for_catchup(self, timeout: float = 30.0, replicas: list[PostgresServer] | None = None) -> None:
        """Wait until every running standby has replayed the primary's current WAL position.

        Raises:
            TimeoutError: a standby did not catch up within ``timeout`` seconds.
        """
        target = self._primary().sql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        for server in replicas if replicas is not None else self.replicas:
            if not server.running:
                continue
            query = f"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{target}') >= 0"
            while True:
                try:
                    if server.sql(query) == "t":
                        break
                except RuntimeError:
                    pass  # still starting up
                if time.monotonic() > deadline:
                    msg = f"{server.name} did not replay {target} within {timeout}s"
                    raise TimeoutError(msg)
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """Create database ``name`` on the primary and wait until it exists on every running standby.

        Returns:
            The primary URL of the new database (``postgresql://…``).
        """
        self._primary().sql(f'CREATE DATABASE "{name}"')
        self.wait_for_catchup()
        return self._primary().url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` on the primary (connections to it are terminated)."""
        self._primary().sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pause_replay(self, index: int = 0) -> None:
        """Stop applying WAL on a standby (``pg_wal_replay_pause()``); it keeps receiving."""
        self.replica(index).sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self, index: int = 0) -> None:
        """Resume applying WAL on a standby (``pg_wal_replay_resume()``)."""
        self.replica(index).sql("SELECT pg_wal_replay_resume()")

    def set_apply_delay(self, seconds: float, index: int = 0) -> None:
        """Set ``recovery_min_apply_delay`` on a standby (0 removes it) and reload its configuration.

        Commits are applied no earlier than ``seconds`` after they happened on the primary, which makes the
        standby lag on purpose (PostgreSQL's delayed standby).
        """
        server = self.replica(index)
        server.sql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(seconds * 1000)}ms'")
        server.sql("SELECT pg_reload_conf()")
        expected = f"{int(seconds * 1000)}ms" if seconds else "0"
        deadline = time.monotonic() + 5
        while server.sql("SHOW recovery_min_apply_delay") not in (expected, f"{int(seconds)}s"):
            if time.monotonic() > deadline:
                msg = f"recovery_min_apply_delay did not change on {server.name}"
                raise TimeoutError(msg)
            time.sleep(0.02)

    def stop_replica(self, index: int = 0, mode: str = "fast") -> None:
        """Stop a standby (``pg_ctl stop -m mode``)."""
        self.replica(index).stop(mode)

    def start_replica(self, index: int = 0) -> None:
        """Start a stopped standby; it reconnects to the primary and resumes streaming."""
        server = self.replica(index)
        if not server.running:
            server.start()

    def restore(self) -> None:
        """Bring every standby back to normal: running, replay resumed, no apply delay, caught up."""
        for index, server in enumerate(self.replicas):
            self.start_replica(index)
            if server.sql("SELECT pg_is_wal_replay_paused()") == "t":
                self.resume_replay(index)
            if server.sql("SHOW recovery_min_apply_delay") != "0":
                self.set_apply_delay(0, index)
        self.wait_for_catchup()
