"""Breaker findings on configuration from the environment: regression tests (each failed before its fix)."""

from __future__ import annotations

import pytest

from litestar_db import ConfigurationError, DatabaseConfig


def test_empty_database_url_is_an_error_not_sqlite() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        DatabaseConfig.from_env({"DATABASE_URL": ""})


def test_database_url_surrounding_whitespace_is_ignored() -> None:
    config = DatabaseConfig.from_env({"DATABASE_URL": "postgresql://app:pw@db.internal:5432/app\n"})
    assert config.sqlalchemy_url().database == "app"  # the other DATABASE_* values are stripped already
