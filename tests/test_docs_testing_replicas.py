"""The "Testing your app" chapter's replica example, run as written (needs the read/write routing modules)."""

from __future__ import annotations

import pytest

pytest.importorskip("litestar_db.testing", reason="litestar_db.testing is not merged yet")

from docs.examples.testing_replicas import (  # noqa: F401 - imported tests are collected here
    test_own_write_is_visible_despite_replica_lag,
)

pytestmark = pytest.mark.postgres
__all__ = ()
