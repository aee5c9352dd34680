"""Memory check: does litestar_db's server grow under a long run of requests?

    python -m benchmarks.memory                 # >= 100k requests in 10 s batches after a >= 10k warm-up
    python -m benchmarks.memory --requests 200000 --contender handwritten

One contender (litestar_db by default) is served as in the benchmark and loaded on the read endpoint with
32 connections. Its resident set size (RSS, from psutil or ``/proc/<pid>/status``) is sampled after the
warm-up and after every batch (wrk runs for a duration, so batches are timed and the run stops at the first sample
past ``--requests``). Reported: each sample, and the growth from the post-warm-up sample to the last one
(goal: within ±5 %). Exit status 1 when the growth is outside ``--tolerance``. A script, not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import CONTENDERS, served
from benchmarks.load import ENDPOINTS, run_load, wrk_version

__all__ = ("main", "rss_bytes")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (psutil when installed, else ``/proc/<pid>/status``)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise
    return int(psutil.Process(pid).memory_info().rss)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contender", choices=sorted(CONTENDERS), default="litestar_db")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="read")
    p.add_argument("--requests", type=int, default=100_000, help="measured requests (after the warm-up)")
    p.add_argument("--batch-seconds", type=float, default=10, help="load between two RSS samples (seconds)")
    p.add_argument("--warmup", type=int, default=10_000, help="requests before the baseline sample")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--tolerance", type=float, default=5.0, help="allowed growth, percent")
    args = p.parse_args(argv)
    generator = "wrk" if wrk_version() else "python"
    samples: list[tuple[int, int]] = []
    with served(args.contender) as server:
        samples.append((0, rss_bytes(server.pid)))
        print(f"{args.contender}: RSS at start {samples[0][1] / 2**20:.1f} MiB; load generator {generator}", flush=True)

        def load(seconds: float) -> int:
            result = run_load(
                server.base_url,
                ENDPOINTS[args.endpoint],
                connections=args.connections,
                seconds=seconds,
                items=10000,
                accounts=1000,
                generator=generator,
            )
            if result.errors or result.non_2xx:
                msg = f"{result.errors} errors and {result.non_2xx} non-2xx answers during the memory run"
                raise RuntimeError(msg)
            return result.requests

        warm = 0
        while warm < args.warmup:
            warm += load(5)
        baseline = rss_bytes(server.pid)
        samples.append((0, baseline))
        print(f"after {warm} warm-up requests: {baseline / 2**20:.1f} MiB (baseline)", flush=True)
        done = 0
        while done < args.requests:
            done += load(args.batch_seconds)
            rss = rss_bytes(server.pid)
            samples.append((done, rss))
            print(
                f"  +{done:>7} requests: {rss / 2**20:7.1f} MiB ({100 * (rss - baseline) / baseline:+.2f} %)",
                flush=True,
            )
    growth = 100 * (samples[-1][1] - baseline) / baseline
    peak = 100 * (max(s[1] for s in samples[1:]) - baseline) / baseline
    verdict = "OK" if abs(growth) <= args.tolerance else "OUTSIDE TOLERANCE"
    print(
        f"growth after warm-up over {done} requests: {growth:+.2f} % (peak {peak:+.2f} %), "
        f"tolerance ±{args.tolerance} %: {verdict}"
    )
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
