"""Route ``opt`` keys are checked when the app starts, not on every request (found by a breaker)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from litestar_db import ConfigurationError, DatabaseConfig, DatabasePlugin


@pytest.mark.parametrize(
    ("opt", "key"),
    [
        ({"db_isolation_level": "SERIALISABLE"}, "db_isolation_level"),  # a typo: every request would be a 500
        ({"db_autocommit": "false"}, "db_autocommit"),  # a truthy string: the route would commit
        ({"db_routing": "replicas"}, "db_routing"),  # ignored without the read/write split
    ],
)
async def test_a_wrong_route_option_stops_the_app_at_startup(sqlite_url: str, opt: dict[str, Any], key: str) -> None:
    @get("/report", opt=opt)
    async def report() -> str:
        return "ok"

    app = Litestar([report], plugins=[DatabasePlugin(DatabaseConfig(url=sqlite_url))])
    with pytest.raises(BaseException) as info:  # the test client reports lifespan errors in an exception group
        async with AsyncTestClient(app):
            pass
    err: BaseException = info.value
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    assert isinstance(err, ConfigurationError)
    assert f"opt[{key!r}]" in str(err)
    assert "/report" in str(err)


async def test_valid_route_options_start(sqlite_url: str) -> None:
    @get("/report", opt={"db_isolation_level": "repeatable_read", "db_autocommit": False, "db_routing": "read_only"})
    async def report() -> str:
        return "ok"

    app = Litestar([report], plugins=[DatabasePlugin(DatabaseConfig(url=sqlite_url))])
    async with AsyncTestClient(app) as client:
        assert (await client.get("/report")).status_code == 200
