"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, WebSocket

if TYPE_CHECKING:
    from plantwatch.service import Service


def get_service(request: Request) -> Service:
    svc: Service | None = getattr(request.app.state, "service", None)
    if svc is None:
        raise HTTPException(503, "service is starting")
    return svc


def get_service_ws(websocket: WebSocket) -> Service:
    svc: Service = websocket.app.state.service
    return svc


ServiceDep = Annotated["Service", Depends(get_service)]
ServiceWsDep = Annotated["Service", Depends(get_service_ws)]
