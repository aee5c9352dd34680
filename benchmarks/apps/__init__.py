"""The four contender apps; each serves the same four endpoints (see :mod:`benchmarks.common`)."""

from __future__ import annotations

__all__: list[str] = []
