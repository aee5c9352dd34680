"""A real Litestar app on litestar_db carrying the users' guide's examples as endpoints (see ``app.py``)."""

from __future__ import annotations

__all__ = ()
