"""The "Testing your app" chapter's replica example, run as written (fixtures of litestar_db.testing)."""

from __future__ import annotations

import pytest

from docs.examples.testing_replicas import (  # noqa: F401 - imported tests are collected here
    test_own_write_is_visible_despite_replica_lag,
)

pytestmark = pytest.mark.postgres
__all__ = ()
