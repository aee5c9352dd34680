"""Benchmarks of litestar_db against advanced-alchemy's plugin, a hand-written session and raw asyncpg.

Run with ``make bench`` (see ``benchmarks/README.md``); nothing here is imported by the package or the tests.
"""

from __future__ import annotations

__all__: list[str] = []
