"""The "Testing your app" chapter's example is a pytest module: its fixtures and tests run here as written."""

from __future__ import annotations

from docs.examples.testing_example import (  # noqa: F401 - imported fixtures and tests are collected here
    client,
    postgres_url,
    sqlite_url,
    test_duplicate_email_is_409,
    test_failed_transfer_leaves_nothing,
)

__all__ = ()
