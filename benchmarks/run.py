"""``make bench``: serve the four contenders side by side, verify them, then load them in alternating rounds.

Order of one run: create and seed the database; start every contender (one uvicorn worker each, own process,
own port, same pool size); verify each one's answers against the database; one discarded warm-up load per
contender and endpoint; then ``--rounds`` rounds, each loading every endpoint on every contender in turn
(``A B C D`` per endpoint, so the contenders alternate within seconds of each other and share whatever else the
machine is doing). Results: a table on stdout and ``benchmarks/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.harness import ACCOUNT_BALANCE, CONTENDERS, ROOT, BenchDatabase, Server
from benchmarks.load import ENDPOINTS, LoadResult, run_load, wrk_version
from benchmarks.verify import total_balance, verify

__all__ = ("main", "summarize")

PAIRS = (("litestar_db", "aa"), ("litestar_db", "handwritten"), ("litestar_db", "raw"), ("ldb_fetch", "raw"))
"""The ratios printed: the first contender's req/s over the second's."""


def machine() -> dict[str, Any]:
    """Where the numbers come from: CPUs, memory, Python and the libraries' versions."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "git_commit": commit.stdout.strip(),
        "versions": {
            p: version(p) for p in ("litestar", "advanced_alchemy", "sqlalchemy", "asyncpg", "msgspec", "uvicorn")
        },
    }


def summarize(rounds: dict[str, dict[str, list[LoadResult]]]) -> dict[str, Any]:
    """Median req/s and latencies per contender and endpoint, and the ratios of :data:`PAIRS`.

    Args:
        rounds: ``endpoint → contender → one LoadResult per measured round``.

    Returns:
        ``{endpoint: {"contenders": {...}, "ratios": {...}}}``; ``ratio`` is the median req/s of the pair's first
        contender over the baseline's, with the range of the per-round (paired, adjacent in time) ratios beside it;
        ``cpu_ratio`` is the baseline's median server CPU per request over the first's (> 1: the first costs less).
    """
    out: dict[str, Any] = {}
    for endpoint, by_contender in rounds.items():
        stats = {
            name: {
                "rps": round(statistics.median(r.rps for r in results), 1),
                "rps_min": min(r.rps for r in results),
                "rps_max": max(r.rps for r in results),
                "p50_ms": round(statistics.median(r.p50_ms for r in results), 2),
                "p99_ms": round(statistics.median(r.p99_ms for r in results), 2),
                "cpu_us_per_request": round(statistics.median(r.cpu_us_per_request for r in results), 1),
                "gc_us_per_request": round(statistics.median(r.gc_us_per_request for r in results), 1),
                "gc_full_collections": sum(r.gc_full_collections for r in results),
                "errors": sum(r.errors + r.non_2xx for r in results),
            }
            for name, results in by_contender.items()
        }
        ratios: dict[str, Any] = {}
        for name, base in PAIRS:
            ours, theirs = by_contender.get(name), by_contender.get(base)
            if ours and theirs and stats[base]["rps"]:
                paired = [a.rps / b.rps for a, b in zip(ours, theirs, strict=True) if b.rps]
                cpu_ours = stats[name]["cpu_us_per_request"]
                ratios[f"{name}/{base}"] = {
                    "ratio": round(stats[name]["rps"] / stats[base]["rps"], 3),
                    "paired_min": round(min(paired), 3),
                    "paired_max": round(max(paired), 3),
                    "cpu_ratio": round(stats[base]["cpu_us_per_request"] / cpu_ours, 3) if cpu_ours else None,
                }
        out[endpoint] = {"contenders": stats, "ratios": ratios}
    return out


def print_table(summary: dict[str, Any]) -> None:
    """The human-readable table: req/s (median and range over rounds), latency, server CPU per request, ratios."""
    head = f"{'endpoint':<9} {'contender':<12} {'req/s':>7} {'(min-max)':>13} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"\n{head} {'CPU us/req':>10} {'GC us/req':>9} {'full GCs':>8} {'err':>4}")
    for endpoint, data in summary.items():
        for name, s in data["contenders"].items():
            spread = f"({s['rps_min']:.0f}-{s['rps_max']:.0f})"
            print(
                f"{endpoint:<9} {name:<12} {s['rps']:>7.0f} {spread:>13} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f}"
                f" {s['cpu_us_per_request']:>10.0f} {s['gc_us_per_request']:>9.0f} {s['gc_full_collections']:>8}"
                f" {s['errors']:>4}"
            )
        for label, r in data["ratios"].items():
            cpu = f"{r['cpu_ratio']:.2f}x" if r["cpu_ratio"] else "-"
            print(
                f"{'':<9} {label:<24} req/s {r['ratio']:>5.2f}x (per round {r['paired_min']:.2f}-"
                f"{r['paired_max']:.2f}); CPU/request {cpu}"
            )
        print()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4, help="measured rounds (default 4)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per contender, endpoint and round")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up per contender/endpoint")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma-separated subset of " + ",".join(ENDPOINTS))
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--pre-ping", action="store_true", help="litestar_db with pool.pre_ping=True (its default)")
    p.add_argument("--gc-freeze", action="store_true", help="every contender calls gc.freeze() after startup")
    p.add_argument(
        "--gc-disable", action="store_true", help="every contender calls gc.disable() after startup (no collector)"
    )
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    generator = args.loadgen
    if generator == "auto":
        generator = "wrk" if wrk_version() else "python"
    endpoints = args.endpoints.split(",")
    contenders = args.contenders.split(",")
    db = BenchDatabase(items=args.items, accounts=args.accounts)
    started = datetime.now(UTC)
    info = machine()
    print(
        f"load generator: {generator} ({wrk_version() or 'python -m benchmarks.load'}), "
        f"{args.connections} connections; nproc={info['nproc']}; loadavg={info['loadavg_at_start']}",
        flush=True,
    )
    asyncio.run(db.create())
    info["postgresql"] = asyncio.run(db.server_version())
    env = {"BENCH_DATABASE_URL": db.url, "BENCH_POOL_SIZE": str(args.pool_size)}
    if args.pre_ping:
        env["BENCH_PRE_PING"] = "1"
    if args.gc_freeze:
        env["BENCH_GC_FREEZE"] = "1"
    if args.gc_disable:
        env["BENCH_GC_DISABLE"] = "1"
    servers = {name: Server(name, CONTENDERS[name], env) for name in contenders}
    rounds: dict[str, dict[str, list[LoadResult]]] = {e: {c: [] for c in contenders} for e in endpoints}
    try:
        with ExitStack() as stack:
            for server in servers.values():
                server.start()
                stack.callback(server.stop)
                asyncio.run(verify(server.name, server.base_url, db, args.accounts))
                print(f"verified {server.name} on {server.base_url}", flush=True)

            def load(server: Server, endpoint: str, seconds: float) -> LoadResult:
                cpu_before, gc_before = server.cpu_seconds(), server.gc_stats()
                result = run_load(
                    server.base_url,
                    ENDPOINTS[endpoint],
                    connections=args.connections,
                    seconds=seconds,
                    items=args.items,
                    accounts=args.accounts,
                    generator=generator,
                )
                cpu_after, gc_after = server.cpu_seconds(), server.gc_stats()
                return dataclasses.replace(
                    result,
                    server_cpu_s=round(cpu_after - cpu_before, 3),
                    gc_young_collections=int(gc_after["collections"][0] - gc_before["collections"][0]),
                    gc_full_collections=int(gc_after["collections"][2] - gc_before["collections"][2]),
                    gc_seconds=round(sum(gc_after["seconds"]) - sum(gc_before["seconds"]), 4),
                )

            for endpoint in endpoints:
                for server in servers.values():
                    load(server, endpoint, args.warmup)
            for n in range(1, args.rounds + 1):
                for endpoint in endpoints:
                    for server in servers.values():
                        result = load(server, endpoint, args.duration)
                        rounds[endpoint][server.name].append(result)
                        print(
                            f"round {n} {endpoint:<8} {server.name:<12} {result.rps:8.1f} req/s "
                            f"cpu {result.cpu_us_per_request:6.0f} us/req (gc {result.gc_us_per_request:4.0f}) "
                            f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms "
                            f"errors {result.errors + result.non_2xx}",
                            flush=True,
                        )
        total = asyncio.run(total_balance(db))
        expected = args.accounts * ACCOUNT_BALANCE
        print(f"total balance after the run: {total} (expected {expected})")
        if total != expected:
            print("ERROR: transfers did not conserve the total balance", file=sys.stderr)
            return 1
    finally:
        asyncio.run(db.drop())
    summary = summarize(rounds)
    print_table(summary)
    if not args.no_save:
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        doc = {
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "machine": info,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "load_generator": generator,
            "summary": summary,
            "rounds": {e: {c: [r.as_dict() for r in rs] for c, rs in d.items()} for e, d in rounds.items()},
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
