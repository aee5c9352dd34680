"""The health controller: ``GET <path>/live`` and ``GET <path>/ready`` (Kubernetes liveness and readiness).

Registered by :class:`~litestar_db.litestar.plugin.DatabasePlugin` at ``HealthConfig.path`` (default ``/health``)
unless ``HealthConfig.enabled`` is ``False``; ``HealthConfig.guards`` apply to both routes.

* ``/live`` answers 200 ``{"status": "pass"}`` without touching the database: a database outage must not make an
  orchestrator restart healthy processes.
* ``/ready`` answers 200 (``pass``/``warn``) or 503 with ``Retry-After`` (``fail``) with the body of
  :class:`~litestar_db.health.HealthChecker` as ``application/health+json`` (IETF draft "Health Check Response
  Format for HTTP APIs"). Detail fields are shown according to ``HealthConfig.show_details``.

Neither route asks for ``db_session``, so the request-transaction middleware opens no session for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from litestar import Controller, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec

from litestar_db.config import HealthConfig
from litestar_db.health import HealthChecker, HealthResponse

__all__ = ("HEALTH_MEDIA_TYPE", "HealthController", "create_health_controller")

HEALTH_MEDIA_TYPE = "application/health+json"
"""Media type of the IETF draft health format."""
_NO_STORE = CacheControlHeader(no_store=True)


def _show_details(config: HealthConfig, request: Request[Any, Any, Any]) -> bool:
    mode = config.show_details
    if callable(mode):
        return bool(mode(request))
    if mode == "authenticated":
        return request.scope.get("user") is not None
    return mode == "always"


class HealthController(Controller):
    """Liveness and readiness; use :func:`create_health_controller` to bind it to a database."""

    path = "/health"
    tags = ["health"]
    health_config: ClassVar[HealthConfig] = HealthConfig()
    """Settings of this controller (``show_details``, ``retry_after_seconds``)."""
    checker: ClassVar[Callable[[], HealthChecker]]
    """Returns the running app's :class:`~litestar_db.health.HealthChecker`."""

    @get(
        "/live",
        media_type=HEALTH_MEDIA_TYPE,
        cache_control=_NO_STORE,
        summary="Liveness",
        description="Always 200 while the process serves requests; never touches the database.",
    )
    async def live(self) -> HealthResponse:
        """Liveness: the process is up.

        Returns:
            ``{"status": "pass"}``.
        """
        return HealthResponse(status="pass")

    @get(
        "/ready",
        media_type=HEALTH_MEDIA_TYPE,
        cache_control=_NO_STORE,
        summary="Readiness",
        description=(
            "200 when the primary answers (pass, or warn for replica trouble or an exhausted pool); 503 with "
            "Retry-After when the primary is down or migrations are pending. Probe results are cached briefly."
        ),
        responses={
            503: ResponseSpec(
                data_container=HealthResponse,
                media_type=HEALTH_MEDIA_TYPE,
                description="Not ready: the primary is unreachable, or migrations are pending",
                generate_examples=False,
            )
        },
    )
    async def ready(self, request: Request[Any, Any, Any]) -> Response[HealthResponse]:
        """Readiness: per-engine probe results and pool figures.

        Returns:
            The health report; status 503 with ``Retry-After`` (seconds) when it is ``fail``.
        """
        config = self.health_config
        report = await type(self).checker().check(details=_show_details(config, request))
        if report.status == "fail":
            headers = {"Retry-After": str(config.retry_after_seconds)}
            return Response(report, status_code=503, headers=headers, media_type=HEALTH_MEDIA_TYPE)
        return Response(report, status_code=200, media_type=HEALTH_MEDIA_TYPE)


def create_health_controller(config: HealthConfig, checker: Callable[[], HealthChecker]) -> type[HealthController]:
    """A :class:`HealthController` subclass at ``config.path`` with ``config.guards``.

    Args:
        config: The health settings.
        checker: Returns the running database's checker (raises ``RuntimeError`` before startup).

    Returns:
        The controller class to add to ``route_handlers``.
    """
    attrs: dict[str, Any] = {
        "path": config.path,
        "guards": list(config.guards),
        "health_config": config,
        "checker": staticmethod(checker),
    }
    return type("DatabaseHealthController", (HealthController,), attrs)
