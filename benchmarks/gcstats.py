"""Garbage-collector figures of a contender's server process, and the optional ``gc.freeze()`` at startup.

CPython's cyclic collector runs when the young generation has grown by 700 tracked objects; objects that survive
two collections are promoted to the oldest generation, and once enough have been promoted a *full* collection
walks every tracked object in the process (tens of milliseconds for a ~100k-object Litestar app on this
machine). Under a closed-loop load with more clients than pooled connections, requests parked at the pool keep
their objects alive across collections, so how often full collections run depends on the stack *and* on where
requests wait. Every app serves ``GET /_bench/gc`` (not loaded by the benchmark) so the runner can report the
collections and the time spent in them per round.

``BENCH_GC_TRACE=1`` (``python -m benchmarks.gctrace``) also records, for every young collection, where the
allocation that triggered it ran (the innermost three Python frames), returned as ``sites`` by the same endpoint.

``BENCH_GC_FREEZE=1`` (``--gc-freeze``) moves every object that exists after startup to the permanent generation
(``gc.freeze()``, CPython's documented call for long-lived servers), so full collections only walk what requests
allocate. It applies to every contender alike.

``BENCH_GC_DISABLE=1`` (``--gc-disable``) turns the cyclic collector off after startup, in every contender: not a
setting to deploy, but the measurement of what each stack costs with no collector at all, which bounds what any
work on garbage collection could gain. Read, list and insert requests leave no cyclic garbage (``gc.collect()``
after 1,000 in-process requests finds none in any contender; a server's RSS stays flat under load); a transfer
leaves 10 objects in reference cycles in every SQLAlchemy contender (the ``BindParameter`` and comparator that
SQLAlchemy builds for ``Account.balance + delta``), about 1.6 KB per request, so a server grows by a few MB over
a ``--gc-disable`` run.
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import time
from types import FrameType
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
_sites: collections.Counter[str] = collections.Counter()


def _short(path: str) -> str:
    for marker in ("site-packages/", "/benchmarks/", "/litestar_db/", "/lib/python"):
        _, found, tail = path.rpartition(marker)
        if found:
            return (marker.strip("/") + "/" if marker != "site-packages/" else "") + tail
    return path


def _on_young_gc(phase: str, info: dict[str, Any]) -> None:
    if phase != "start" or info["generation"] != 0:
        return
    try:
        frame: FrameType | None = sys._getframe(1)  # the Python frame whose allocation crossed the threshold
    except ValueError:  # triggered from C with no Python frame
        _sites["(no Python frame)"] += 1
        return
    names: list[str] = []
    while frame is not None and len(names) < 3:
        names.append(f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}")
        frame = frame.f_back
    _sites[" < ".join(names)] += 1


if os.environ.get("BENCH_GC_TRACE") == "1":
    gc.callbacks.append(_on_young_gc)


@get("/_bench/gc", include_in_schema=False)
async def gc_stats() -> dict[str, Any]:
    """Collections per generation (0, 1, 2) since start, the seconds spent in them and, with
    ``BENCH_GC_TRACE=1``, the 15 most frequent young-collection trigger sites (``[site, count]``)."""
    sites = [[site, count] for site, count in _sites.most_common(15)]
    return {"collections": [float(n) for n in _collections], "seconds": list(_seconds), "sites": sites}


async def freeze_if_asked() -> None:
    """``gc.freeze()`` after startup when ``BENCH_GC_FREEZE=1``, ``gc.disable()`` when ``BENCH_GC_DISABLE=1``
    (a Litestar ``on_startup`` hook)."""
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()
    if os.environ.get("BENCH_GC_DISABLE") == "1":
        gc.collect()
        gc.disable()
