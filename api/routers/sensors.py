"""Sensors: registration (one or a list), listing, maintenance and removal, and readings from
unregistered sensors."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response

from api.deps import ServiceDep
from api.schemas import ActionIn, OutOfServiceIn, RemoveIn, SensorIn
from plantwatch.registry import RegistryError, sensor_mapping
from plantwatch.service import SensorStateError

router = APIRouter(prefix="/sensors", tags=["sensors"])


@router.get("")
async def list_sensors(
    response: Response, svc: ServiceDep, enterprise_id: str | None = None, kind: str | None = None,
    removed: bool = False, limit: int = Query(1000, ge=1, le=100_000), offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    """Registered sensors in registration order (``out_of_service`` set while in maintenance);
    removed ones only with ``removed=true``. A page of ``limit`` from ``offset``; the
    ``X-Total-Count`` header says how many match. (Unpaged, listing 100k sensors took seconds
    on the service's event loop.)"""
    pool = svc.registry.sensors_of(enterprise_id) if enterprise_id is not None else svc.registry.sensors
    match = [s for s in pool if (kind is None or s.kind == kind)
             and (removed or s.out_of_service is None or not s.out_of_service.removed)]
    response.headers["X-Total-Count"] = str(len(match))
    return [sensor_mapping(s) for s in match[offset:offset + limit]]


@router.get("/unregistered")
async def unregistered(svc: ServiceDep) -> list[dict[str, Any]]:
    """Sensors that sent readings but are not registered (their readings are stored)."""
    rows = await asyncio.to_thread(svc.readings.unregistered_sensors)
    return [r if isinstance(r, dict) else asdict(r) for r in rows]


@router.get("/{enterprise_id}/{sensor_id}")
async def get_sensor(enterprise_id: str, sensor_id: str, svc: ServiceDep) -> dict[str, Any]:
    s = svc.registry.sensor(enterprise_id, sensor_id)
    if s is None:
        raise HTTPException(404, f"sensor {enterprise_id}/{sensor_id} is not registered")
    return sensor_mapping(s)


@router.post("", status_code=201)
async def add_sensors(body: SensorIn | list[SensorIn], svc: ServiceDep) -> list[dict[str, Any]]:
    """Register one sensor or a list of them (an existing id is replaced and keeps its row).

    Every item is validated first, including its rule parameters; on an error nothing is
    added and the 422 names the field (``body[i].params.baseline``). Saved across restarts.
    """
    items = body if isinstance(body, list) else [body]
    try:
        out = svc.register_sensors([item.as_mapping() for item in items])
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None
    return [sensor_mapping(s) for s in out]


def _state_call(svc: Any, enterprise_id: str, sensor_id: str, fn: Any, *args: Any) -> dict[str, Any]:
    """404 for an unknown sensor, 409 for a state the action does not fit, 422 (the app's
    ValueError handler) for a blank name or reason or a duration out of range."""
    if svc.registry.sensor(enterprise_id, sensor_id) is None:
        raise HTTPException(404, f"sensor {enterprise_id}/{sensor_id} is not registered")
    try:
        return sensor_mapping(fn(enterprise_id, sensor_id, *args))
    except SensorStateError as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/{enterprise_id}/{sensor_id}/out-of-service")
async def out_of_service(enterprise_id: str, sensor_id: str, body: OutOfServiceIn, svc: ServiceDep) -> dict[str, Any]:
    """Maintenance for ``duration_s``: readings are stored but not evaluated, levels and timers
    freeze, and a blue ``out_of_service`` alarm names who and why until it ends (by itself,
    or ``in-service``). Again while held: moves the end. 409 if the sensor was removed."""
    until = svc.clock() + int(body.duration_s * 1000)
    return _state_call(svc, enterprise_id, sensor_id, svc.take_out_of_service, body.by, body.reason, until)


@router.post("/{enterprise_id}/{sensor_id}/in-service")
async def in_service(enterprise_id: str, sensor_id: str, body: ActionIn, svc: ServiceDep) -> dict[str, Any]:
    """End maintenance now (deadman and flatline timers restart); 409 unless in maintenance."""
    return _state_call(svc, enterprise_id, sensor_id, svc.return_to_service, body.by, body.comment)


@router.post("/{enterprise_id}/{sensor_id}/remove")
async def remove(enterprise_id: str, sensor_id: str, body: RemoveIn, svc: ServiceDep) -> dict[str, Any]:
    """Decommission: no longer evaluated or expected to report; its alarms clear, a cleared
    blue ``removed`` alarm records who and why. Registering it again reinstates it."""
    return _state_call(svc, enterprise_id, sensor_id, svc.remove_sensor, body.by, body.reason)
