"""Breaker findings on configuration from the environment (each test fails on the current code; xfail strict)."""

from __future__ import annotations

import pytest

from litestar_db import ConfigurationError, DatabaseConfig


@pytest.mark.xfail(
    strict=True,
    reason="DATABASE_URL set but empty (a missing secret) silently falls back to a local SQLite file",
)
def test_empty_database_url_is_an_error_not_sqlite() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        DatabaseConfig.from_env({"DATABASE_URL": ""})


@pytest.mark.xfail(
    strict=True,
    reason="a trailing newline in DATABASE_URL (Kubernetes secret from a file) becomes part of the database name",
)
def test_database_url_surrounding_whitespace_is_ignored() -> None:
    config = DatabaseConfig.from_env({"DATABASE_URL": "postgresql://app:pw@db.internal:5432/app\n"})
    assert config.sqlalchemy_url().database == "app"  # the other DATABASE_* values are stripped already
