"""Load generation: the four endpoints' request mixes, ``wrk`` (preferred) and a Python fallback client.

``wrk`` runs one thread with N keep-alive connections; a Lua script picks a random id/body per request and prints
one JSON line (``BENCHJSON {...}``) with the count and latency percentiles. When ``wrk`` is not installed,
``python -m benchmarks.load`` is started in a separate process: an ``httpx.AsyncClient`` with N concurrent
connections, each running requests back to back (closed loop, like ``wrk``). It is itself CPU-bound at roughly
1-2k req/s on one core, so with it the fastest contenders are measured low; the runner records which generator
was used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ("ENDPOINTS", "Endpoint", "LoadResult", "run_load", "wrk_version")

_LUA_COMMON = """
local headers = {["Content-Type"] = "application/json"}
%(request)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,' ..
    '"non_2xx":%%d,"timeouts":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%f,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class Endpoint:
    """One benchmarked endpoint: its Lua ``request`` function for wrk and the same mix for the Python client."""

    name: str
    lua: str
    """Body of a Lua ``request()`` returning ``wrk.format(...)``; ``ITEMS``/``ACCOUNTS`` are substituted."""

    def lua_script(self, items: int, accounts: int) -> str:
        request = self.lua.replace("ITEMS", str(items)).replace("ACCOUNTS", str(accounts))
        return _LUA_COMMON % {"request": request}

    def python_request(self, rng: random.Random, items: int, accounts: int) -> tuple[str, str, bytes | None]:
        """``(method, path, json body)`` of one request, drawn like the Lua script draws it."""
        if self.name == "read":
            return "GET", f"/items/{rng.randint(1, items)}", None
        if self.name == "list":
            return "GET", f"/items?after={rng.randint(0, items - 20)}", None
        if self.name == "insert":
            body = {"name": f"bench-{rng.randint(1, 10**9)}", "price_cents": rng.randint(1, 100000)}
            return "POST", "/items", json.dumps(body).encode()
        source = rng.randint(1, accounts)
        target = rng.randint(1, accounts - 1)
        target += target >= source
        body = {"source_id": source, "target_id": target, "amount": rng.randint(1, 100)}
        return "POST", "/transfers", json.dumps(body).encode()


ENDPOINTS: dict[str, Endpoint] = {
    "read": Endpoint(
        "read",
        'request = function() return wrk.format("GET", "/items/" .. math.random(1, ITEMS)) end',
    ),
    "list": Endpoint(
        "list",
        'request = function() return wrk.format("GET", "/items?after=" .. math.random(0, ITEMS - 20)) end',
    ),
    "insert": Endpoint(
        "insert",
        """request = function()
  local body = string.format('{"name":"bench-%d","price_cents":%d}', math.random(1, 1000000000), math.random(1, 100000))
  return wrk.format("POST", "/items", headers, body)
end""",
    ),
    "transfer": Endpoint(
        "transfer",
        """request = function()
  local a = math.random(1, ACCOUNTS)
  local b = math.random(1, ACCOUNTS - 1)
  if b >= a then b = b + 1 end
  local body = string.format('{"source_id":%d,"target_id":%d,"amount":%d}', a, b, math.random(1, 100))
  return wrk.format("POST", "/transfers", headers, body)
end""",
    ),
}
"""read one row by primary key; list 20 rows; insert one row; transfer between two accounts."""


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    """Socket errors and timeouts."""
    non_2xx: int
    server_cpu_s: float = 0.0
    """CPU seconds (user + system) the server process used during the run; 0 when not measured."""
    gc_young_collections: int = 0
    """Young-generation (generation 0) garbage collections in the server during the run."""
    gc_full_collections: int = 0
    """Full (oldest-generation) garbage collections in the server during the run (:mod:`benchmarks.gcstats`)."""
    gc_seconds: float = 0.0
    """Seconds the server spent in garbage collection (all generations) during the run."""

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU microseconds per request: the cost of the stack, much less sensitive than req/s to other
        processes competing for the cores (it does not count the time a request waits)."""
        return round(1e6 * self.server_cpu_s / self.requests, 1) if self.requests else 0.0

    @property
    def gc_us_per_request(self) -> float:
        """Garbage-collection microseconds per request (part of :attr:`cpu_us_per_request`)."""
        return round(1e6 * self.gc_seconds / self.requests, 1) if self.requests else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            **asdict(self),
            "cpu_us_per_request": self.cpu_us_per_request,
            "gc_us_per_request": self.gc_us_per_request,
        }


def wrk_version() -> str | None:
    """``wrk``'s version line, or ``None`` when it is not installed."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def _parse(data: dict[str, float]) -> LoadResult:
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        requests=int(data["requests"]),
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=round(data["p50_us"] / 1000, 3),
        p90_ms=round(data["p90_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3),
        mean_ms=round(data["mean_us"] / 1000, 3),
        max_ms=round(data["max_us"] / 1000, 3),
        errors=int(data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]),
        non_2xx=int(data["non_2xx"]),
    )


def run_load(
    base_url: str,
    endpoint: Endpoint,
    *,
    connections: int,
    seconds: float,
    items: int,
    accounts: int,
    generator: str,
) -> LoadResult:
    """Load ``base_url`` with ``endpoint``'s mix for ``seconds`` (whole seconds with wrk).

    Args:
        generator: ``"wrk"`` or ``"python"``.

    Raises:
        RuntimeError: the load generator failed or printed no result.
    """
    if generator == "wrk":
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(endpoint.lua_script(items, accounts))
        duration = f"{max(int(seconds), 1)}s"
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--timeout", "10s", "-s", script.name, base_url]
    else:
        cmd = [sys.executable, "-m", "benchmarks.load", base_url, endpoint.name, str(connections), str(seconds)]
        cmd += [str(items), str(accounts)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 120)
    finally:
        if generator == "wrk":
            Path(script.name).unlink(missing_ok=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return _parse(json.loads(line.removeprefix("BENCHJSON ")))
    msg = f"{generator} printed no result (exit {out.returncode}): {out.stderr.strip()[-500:]}"
    raise RuntimeError(msg)


async def _python_client(
    base_url: str, endpoint: Endpoint, connections: int, seconds: float, items: int, accounts: int
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(client: httpx.AsyncClient, rng: random.Random) -> None:
        headers = {"content-type": "application/json"}
        while time.perf_counter() < deadline:
            method, path, body = endpoint.python_request(rng, items, accounts)
            t0 = time.perf_counter()
            try:
                resp = await client.request(method, path, content=body, headers=headers if body else None)
            except httpx.HTTPError:
                counts["errors"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            counts["non_2xx"] += not 200 <= resp.status_code < 300

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(worker(client, random.Random(i)) for i in range(connections)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "connect_errors": counts["errors"],
        "read_errors": 0,
        "write_errors": 0,
        "non_2xx": counts["non_2xx"],
        "timeouts": 0,
        "p50_us": q[49] * 1e6,
        "p90_us": q[89] * 1e6,
        "p99_us": q[98] * 1e6,
        "mean_us": statistics.fmean(latencies) * 1e6 if latencies else 0.0,
        "max_us": max(latencies, default=0.0) * 1e6,
    }


def main() -> None:
    """``python -m benchmarks.load URL ENDPOINT CONNECTIONS SECONDS ITEMS ACCOUNTS``."""
    parser = argparse.ArgumentParser(description="Python fallback load client (closed loop, keep-alive).")
    parser.add_argument("url")
    parser.add_argument("endpoint", choices=sorted(ENDPOINTS))
    parser.add_argument("connections", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("items", type=int)
    parser.add_argument("accounts", type=int)
    a = parser.parse_args()
    data = asyncio.run(_python_client(a.url, ENDPOINTS[a.endpoint], a.connections, a.seconds, a.items, a.accounts))
    sys.stdout.write("BENCHJSON " + json.dumps(data) + "\n")


if __name__ == "__main__":
    main()
