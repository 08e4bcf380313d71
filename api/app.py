"""FastAPI application: /api/v1 routers, /metrics, OpenAPI at /docs.

``create_app(settings)`` owns the service through the app lifespan (MQTT client,
tasks, stores). ``create_app(service=...)`` attaches an already running service
(used by the demo, which runs the broker and simulators in the same loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import ServiceDep
from api.routers import alarms, enterprises, health, readings, sensors
from plantwatch import __version__

if TYPE_CHECKING:
    from plantwatch.service import Service
    from plantwatch.settings import Settings


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            app.state.service = service
            yield
            return
        from plantwatch.service import Service
        from plantwatch.settings import Settings as _Settings

        svc = Service(settings or _Settings())
        app.state.service = svc
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="plantwatch",
        version=__version__,
        description="Graded (red/orange/yellow/blue) early warning for gas, dust-explosion and power monitoring.",
        lifespan=lifespan,
    )

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    v1 = APIRouter(prefix="/api/v1")
    for r in (health.router, enterprises.router, sensors.router, readings.router, alarms.router):
        v1.include_router(r)
    app.include_router(v1)

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def metrics(svc: ServiceDep) -> Response:
        """Prometheus text exposition."""
        svc.metrics.queue_depth.set(getattr(svc.pipeline, "queue_depth", 0))
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
