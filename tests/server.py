"""Serve an ASGI app with a real uvicorn server on a free loopback port (for concurrency tests).

Litestar's AsyncTestClient handles one request at a time, so parallel requests through it prove nothing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

__all__ = ("free_port", "serve")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(app: Any, **config: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop; yields its base URL; shuts down (lifespan included) at exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config)
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()  # raise the startup error
            await asyncio.sleep(0.01)
        else:  # pragma: no cover
            msg = "uvicorn did not start within 5 seconds"
            raise RuntimeError(msg)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
