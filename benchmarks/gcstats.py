"""Garbage-collector figures of a contender's server process, and the optional ``gc.freeze()`` at startup.

CPython's cyclic collector runs when the young generation has grown by 700 tracked objects; objects that survive
two collections are promoted to the oldest generation, and once enough have been promoted a *full* collection
walks every tracked object in the process (tens of milliseconds for a ~100k-object Litestar app on this
machine). Under a closed-loop load with more clients than pooled connections, requests parked at the pool keep
their objects alive across collections, so how often full collections run depends on the stack *and* on where
requests wait. Every app serves ``GET /_bench/gc`` (not loaded by the benchmark) so the runner can report the
collections and the time spent in them per round.

``BENCH_GC_FREEZE=1`` (``--gc-freeze``) moves every object that exists after startup to the permanent generation
(``gc.freeze()``, CPython's documented call for long-lived servers), so full collections only walk what requests
allocate. It applies to every contender alike.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from litestar import get

__all__ = ("freeze_if_asked", "gc_stats")

_collections = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        generation = info["generation"]
        _collections[generation] += 1
        _seconds[generation] += time.perf_counter() - _started[0]


gc.callbacks.append(_on_gc)


@get("/_bench/gc", include_in_schema=False)
async def gc_stats() -> dict[str, list[float]]:
    """Collections per generation (0, 1, 2) since start, and the seconds spent in them."""
    return {"collections": [float(n) for n in _collections], "seconds": list(_seconds)}


async def freeze_if_asked() -> None:
    """``gc.freeze()`` after startup when ``BENCH_GC_FREEZE=1`` (a Litestar ``on_startup`` hook)."""
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()
