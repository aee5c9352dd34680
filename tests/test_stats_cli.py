"""``litestar database stats`` run as a real subprocess against an app module using ``DatabasePlugin``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests._server_health import closed_port

APP_MODULE = """
import os
from litestar import Litestar
from litestar_db import DatabaseConfig, DatabasePlugin

app = Litestar(plugins=[DatabasePlugin(DatabaseConfig(url=os.environ["STATS_TEST_DB_URL"]))])
"""


async def run_stats(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    """Run the command in ``tmp_path`` (no migrations directory there); returns the exit code and stdout."""
    (tmp_path / "statsapp.py").write_text(APP_MODULE)
    env = {**os.environ, "STATS_TEST_DB_URL": url, "LITESTAR_APP": "statsapp:app", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "litestar", "--app-dir", str(tmp_path), "database", "stats", *args,
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert "cli-pw" not in err.decode()  # nor in logs
    return proc.returncode or 0, out.decode()


@pytest.mark.postgres
async def test_stats_command_json_and_table(pg_url: str, tmp_path: Path) -> None:
    url = make_url(pg_url).set(password="cli-pw-55").render_as_string(hide_password=False)
    code, out = await run_stats(tmp_path, url, "--json")
    assert code == 0, out
    payload = json.loads(out)
    assert payload["health"]["status"] == "pass"
    engine = payload["stats"]["engines"][0]
    assert (engine["name"], engine["role"]) == ("primary", "primary")
    assert engine["pool"]["connections_created"] == 1  # the pooled SELECT 1 after the probe
    assert engine["queries"] == 1
    assert engine["commits"] == 1
    assert "cli-pw-55" not in out
    assert "postgresql://" not in out

    code, out = await run_stats(tmp_path, url)
    assert code == 0, out
    assert "checked out" in out
    assert "primary (primary)" in out
    assert "cli-pw-55" not in out


async def test_stats_command_fails_when_primary_unreachable(tmp_path: Path) -> None:
    url = f"postgresql://app:cli-pw-66@127.0.0.1:{closed_port()}/app"
    code, out = await run_stats(tmp_path, url, "--json")
    assert code == 1
    payload = json.loads(out)
    assert payload["health"]["status"] == "fail"
    assert "cli-pw-66" not in out
