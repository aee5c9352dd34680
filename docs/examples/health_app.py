"""Health endpoints and Prometheus metrics in a Litestar app."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.plugins.prometheus import PrometheusController

from litestar_db import DatabaseConfig, DatabasePlugin, HealthConfig


# [health]
def from_internal_network(request: Request[Any, Any, Any]) -> bool:
    """Show detail fields (pool figures, lag, server locations) only to callers on the private network."""
    client = request.client.host if request.client else ""
    return client.startswith(("10.", "127.", "192.168.")) or client == "testclient"


def create_app(url: str) -> Litestar:
    config = DatabaseConfig(
        url=url,
        health=HealthConfig(
            path="/health",  # GET /health/live and GET /health/ready
            cache_seconds=1.0,  # probe results are reused for 1 s: a probe flood sends one query per second
            probe_timeout_seconds=1.0,
            retry_after_seconds=5,
            show_details=from_internal_network,  # or "always", "never", "authenticated"
            fail_on_pending_migrations=False,
        ),
    )
    # PrometheusController serves GET /metrics; the plugin registers the database collector
    return Litestar(route_handlers=[PrometheusController], plugins=[DatabasePlugin(config)])


# [/health]
