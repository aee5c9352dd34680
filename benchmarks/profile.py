"""Sample a contender's server under load with py-spy and summarise where its CPU time goes.

    python -m benchmarks.profile --contender litestar_db --endpoint read --seconds 15

The server runs as in the benchmark (one uvicorn worker); ``py-spy record --pid`` samples it (idle frames
excluded, so the figures are shares of busy CPU time) while wrk loads one endpoint. Printed: the total samples,
the inclusive share of chosen frames (the request-transaction middleware, commit, close, the stats listeners,
...) and the functions with the most own (leaf) time. ``--raw PATH`` keeps the collapsed stacks (flamegraph
input).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchmarks.harness import CONTENDERS, served
from benchmarks.load import ENDPOINTS, run_load, wrk_version

__all__ = ("main", "summarize_stacks")

WATCH = {
    "request middleware (_RequestTransactionApp.__call__, own+below)": r"__call__ \(litestar_db/litestar/request",
    "request finish (_finish: commit + close)": r"_finish \(litestar_db/litestar/request",
    "litestar_db.transactions.commit": r"commit \(litestar_db/transactions",
    "provide_session (litestar_db)": r"provide_session \(litestar_db",
    "statement statistics (timed do_execute)": r"run \(litestar_db/instrument",
    "AsyncSession.commit": r"commit \(sqlalchemy/ext/asyncio/session",
    "AsyncSession.close": r"close \(sqlalchemy/ext/asyncio/session",
    "AsyncSession.get": r"get \(sqlalchemy/ext/asyncio/session",
    "AsyncSession.execute/scalars": r"(execute|scalars) \(sqlalchemy/ext/asyncio/session",
    "AsyncSession.flush": r"flush \(sqlalchemy/ext/asyncio/session",
    "pool checkout": r"_checkout \(sqlalchemy/pool",
    "pool checkin / reset": r"(_finalize_fairy|_checkin|_reset) \(sqlalchemy/pool",
    "asyncpg adapter BEGIN": r"_start_transaction \(sqlalchemy/dialects/postgresql/asyncpg",
    "event dispatch (sqlalchemy/event/attr.py)": r"__call__ \(sqlalchemy/event/attr",
    "handler (benchmarks)": r"\(benchmarks/(common|apps)",
    "msgspec/litestar response encoding": r"(to_asgi_response|encode_json|_encode_json)",
    "logging": r"\(logging/__init__",
}
"""Label → regex on a frame (``function (path:line)``) whose inclusive share is reported."""


def summarize_stacks(raw: str, top: int = 25) -> str:
    """Summarise py-spy's collapsed stacks (``frame;frame;... count`` lines).

    Returns:
        A plain-text report: inclusive percentages of :data:`WATCH` frames and the top own-time functions.
    """
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    patterns = {label: re.compile(rx) for label, rx in WATCH.items()}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[re.sub(r":\d+\)$", ")", frames[-1])] += count
        for label, rx in patterns.items():
            if any(rx.search(f) for f in frames):
                inclusive[label] += count
    lines = [f"samples: {total}", "", "inclusive share of busy CPU time:"]
    lines += [f"  {100 * inclusive[label] / max(total, 1):5.1f} %  {label}" for label in WATCH]
    lines += ["", f"top {top} functions by own time:"]
    lines += [f"  {100 * n / max(total, 1):5.1f} %  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contender", choices=sorted(CONTENDERS), default="litestar_db")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="read")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--raw", type=Path, help="keep the collapsed stacks here")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    generator = "wrk" if wrk_version() else "python"
    out = args.raw or Path(tempfile.mkdtemp()) / "stacks.txt"
    with served(args.contender, BENCH_POOL_SIZE=str(args.pool_size)) as server:

        def load(seconds: float) -> None:
            run_load(
                server.base_url,
                ENDPOINTS[args.endpoint],
                connections=args.connections,
                seconds=seconds,
                items=10000,
                accounts=1000,
                generator=generator,
            )

        load(3)  # warm-up, not sampled
        loader = threading.Thread(target=load, args=(args.seconds + 1,))
        loader.start()
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
        loader.join()
    print(f"{args.contender} / {args.endpoint}, {args.seconds} s under {args.connections} connections")
    print(summarize_stacks(out.read_text(), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
