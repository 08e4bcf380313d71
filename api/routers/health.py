"""Liveness/readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(svc: ServiceDep, response: Response) -> dict[str, Any]:
    """200 with ``status: ok`` when the MQTT ingest is connected, 503 ``degraded`` otherwise."""
    h = svc.health()
    if h["status"] != "ok":
        response.status_code = 503
    return h
