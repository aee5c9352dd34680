"""``litestar database …`` on real databases: click's CliRunner in-process and the installed CLI as subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from litestar.cli._utils import LitestarEnv
from litestar.cli.main import litestar_group

from litestar_db.migrations import MIGRATION_LOCK_KEY
from sample_project.app import create_app
from tests.conftest import pg_execute
from tests.test_migrations import FAILING_REVISION, SAMPLE_TABLES, copy_migrations, head_revision, sample_config

ROOT = Path(__file__).resolve().parent.parent
LITESTAR = str(Path(sys.executable).with_name("litestar"))
SECRET = "s3cr3t-pw"


async def cli(url: str, *args: str, script_location: str | None = None) -> Result:
    """Run ``litestar database <args>`` in-process for an app on ``url`` (off the event loop's thread)."""
    extra = {} if script_location is None else {"script_location": script_location}
    app = create_app(sample_config(url, **extra))
    env = LitestarEnv(app_path="sample_project.app:create_app", app=app, cwd=ROOT)
    return await asyncio.to_thread(CliRunner().invoke, litestar_group, ["database", *args], obj=env)


async def run(url: str, *args: str, cwd: Path = ROOT, pythonpath: Path | None = None) -> tuple[int, str, str]:
    """Run ``litestar --app sample_project.app:app database <args>`` as a subprocess with ``DATABASE_URL=url``."""
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(pythonpath or ROOT)}
    proc = await asyncio.create_subprocess_exec(
        LITESTAR, "--app", "sample_project.app:app", "database", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.postgres
async def test_status_exit_codes_follow_upgrade_and_downgrade(pg_url: str) -> None:
    head = head_revision()
    empty = await cli(pg_url, "status")
    assert empty.exit_code == 1, empty.output
    assert f"{head}  initial schema" in empty.output
    assert "Pending migrations (1)" in empty.output

    upgraded = await cli(pg_url, "upgrade", "--no-prompt")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"Applied {head}" in upgraded.output
    current = await cli(pg_url, "status")
    assert current.exit_code == 0, current.output
    assert f"Current revision: {head}" in current.output

    downgraded = await cli(pg_url, "downgrade", "-1", "--no-prompt")
    assert downgraded.exit_code == 0, downgraded.output
    assert (await cli(pg_url, "status")).exit_code == 1


@pytest.mark.postgres
async def test_ten_concurrent_upgrades_apply_each_migration_once(pg_url: str) -> None:
    results = await asyncio.gather(*(run(pg_url, "upgrade", "--no-prompt") for _ in range(10)))
    assert [code for code, _, _ in results] == [0] * 10, [err for _, _, err in results]
    applied = [out for _, out, _ in results if f"Applied {head_revision()}" in out]
    assert len(applied) == 1  # one process migrated, nine waited and found nothing to do
    assert sum("Nothing to do" in out for _, out, _ in results) == 9
    versions = await pg_execute(pg_url, "SELECT version_num FROM alembic_version")
    assert [r[0] for r in versions] == [head_revision()]
    tables = await pg_execute(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {r[0] for r in tables} >= SAMPLE_TABLES


@pytest.mark.postgres
async def test_failing_migration_exits_nonzero_naming_the_revision(pg_url: str, tmp_path: Path) -> None:
    location = str(copy_migrations(tmp_path, failing=True))
    result = await cli(pg_url, "upgrade", "--no-prompt", script_location=location)
    assert result.exit_code == 1, result.output
    assert f"migration {FAILING_REVISION} (boom) failed" in result.output
    assert "Traceback" not in result.output
    assert await pg_execute(pg_url, "SELECT * FROM pg_locks WHERE locktype = 'advisory'") == []
    assert (await pg_execute(pg_url, "SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY))[0][0] is True
    versions = await pg_execute(pg_url, "SELECT version_num FROM alembic_version")
    assert [r[0] for r in versions] == [head_revision()]  # at the revision before the failing one


def _broken_env(tmp_path: Path) -> str:
    target = copy_migrations(tmp_path)
    (target / "env.py").write_text("this is not python(\n")
    return str(target)


@pytest.mark.parametrize(
    ("make_location", "expected"),
    [
        pytest.param(lambda tmp: str(tmp / "nowhere"), "migrations directory {tmp}/nowhere is missing", id="missing"),
        pytest.param(_broken_env, "{tmp}/migrations/env.py failed: SyntaxError", id="broken-env"),
    ],
)
async def test_missing_or_broken_migrations_directory(
    sqlite_url: str, tmp_path: Path, make_location: object, expected: str
) -> None:
    location = make_location(tmp_path)  # type: ignore[operator]
    for command in (["status"], ["upgrade", "--no-prompt"]):
        result = await cli(sqlite_url, *command, script_location=location)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1, result.output  # one line
        assert expected.format(tmp=tmp_path) in result.output
    verbose = await cli(sqlite_url, "--verbose", "upgrade", "--no-prompt", script_location=location)
    assert verbose.exit_code == 2
    assert "Traceback" in verbose.output


@pytest.mark.parametrize(
    ("host", "reason", "commands"),
    [
        ("127.0.0.1:1", "Connect call failed", ("status", "upgrade", "show-current-revision")),
        ("no-such-host.invalid", "Name or service not known", ("upgrade",)),
    ],
)
async def test_unreachable_database_is_one_line_without_password(host: str, reason: str, commands: tuple[str]) -> None:
    url = f"postgresql://postgres:{SECRET}@{host}/app"
    for command in ([c, "--no-prompt"] if c == "upgrade" else [c] for c in commands):
        code, out, err = await run(url, *command)
        assert code == 2, (out, err)
        error = [line for line in err.splitlines() if line.startswith("Error:")]
        assert error == [error[0]]
        assert f"cannot connect to the database at {host.split(':')[0]}" in error[0]
        assert reason in error[0]
        assert SECRET not in out + err
        assert "Traceback" not in out + err


@pytest.mark.postgres
async def test_upgrade_sql_prints_ddl_and_changes_nothing(pg_url: str) -> None:
    result = await cli(pg_url, "upgrade", "--sql")
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE users" in result.output
    assert "CONSTRAINT ck_accounts_balance_non_negative CHECK (balance >= 0)" in result.output
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{head_revision()}')" in result.output
    assert await pg_execute(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []


async def test_upgrade_then_show_current_revision_prints_head(db_url: str) -> None:
    code, out, err = await run(db_url, "upgrade", "--no-prompt")
    assert code == 0, err
    code, out, err = await run(db_url, "show-current-revision")
    assert code == 0, err
    assert f"{head_revision()} (head)" in out


@pytest.mark.postgres
async def test_autogenerate_after_adding_a_column(pg_url: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "sample_project", tmp_path / "sample_project", ignore=shutil.ignore_patterns("__pycache__"))
    copy_migrations(tmp_path)
    models = tmp_path / "sample_project" / "models.py"
    source = models.read_text()
    anchor = "    is_active: Mapped[bool] = mapped_column(default=True)\n"
    assert anchor in source
    models.write_text(source.replace(anchor, anchor + "    nickname: Mapped[str | None] = mapped_column(String(40))\n"))

    async def database(*args: str) -> tuple[int, str, str]:
        return await run(pg_url, *args, cwd=tmp_path, pythonpath=tmp_path)

    assert (await database("upgrade", "--no-prompt"))[0] == 0
    code, out, err = await database("check")
    assert code == 1, (out, err)
    assert "add_column" in err
    assert "nickname" in err
    code, out, err = await database("make-migrations", "--autogenerate", "-m", "add nickname", "--no-prompt")
    assert code == 0, err
    [new] = [p for p in (tmp_path / "migrations" / "versions").glob("*.py") if "add_nickname" in p.name]
    text = new.read_text()
    assert re.search(r"add_column\(sa\.Column\('nickname', sa\.String\(length=40\)", text), text
    assert f"down_revision = '{head_revision()}'" in text
    assert (await database("upgrade", "--no-prompt"))[0] == 0
    assert (await database("check"))[0] == 0
    columns = await pg_execute(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
    assert "nickname" in {r[0] for r in columns}
