"""Sensors: registration (one or a list), listing, and readings from unregistered sensors."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import ServiceDep
from api.schemas import SensorIn
from plantwatch.registry import RegistryError, Sensor

router = APIRouter(prefix="/sensors", tags=["sensors"])


def _to_json(s: Sensor) -> dict[str, Any]:
    d = asdict(s)
    d.pop("row", None)
    return d


@router.get("")
async def list_sensors(
    svc: ServiceDep, enterprise_id: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    return [
        _to_json(s) for s in svc.registry.sensors
        if (enterprise_id is None or s.enterprise_id == enterprise_id) and (kind is None or s.kind == kind)
    ]


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
    return _to_json(s)


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
    return [_to_json(s) for s in out]
