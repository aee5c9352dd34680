"""The Litestar layer: the only part of litestar_db that imports litestar."""

from __future__ import annotations

from litestar_db.litestar.plugin import DatabasePlugin
from litestar_db.litestar.provider import OPT_AUTOCOMMIT, OPT_ISOLATION_LEVEL

__all__ = ("OPT_AUTOCOMMIT", "OPT_ISOLATION_LEVEL", "DatabasePlugin")
