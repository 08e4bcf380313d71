"""Enterprises: registry entries with production status and the derived risk colour."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import ServiceDep
from api.schemas import EnterpriseIn, EnterprisePatch
from plantwatch.domain import Level
from plantwatch.registry import Enterprise, RegistryError

router = APIRouter(prefix="/enterprises", tags=["enterprises"])


async def _risks(svc: ServiceDep) -> dict[str, Level]:
    return svc.enterprise_risks(await asyncio.to_thread(svc.recent_alarms))


def _to_json(svc: ServiceDep, e: Enterprise, risks: dict[str, Level]) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "region": e.region,
        "production_status": str(e.production_status),
        "capacity_kw": e.capacity_kw,
        "sensors": svc.registry.count_of(e.id),  # was a scan of the fleet per enterprise (O(E x N))
        "risk_colour": risks.get(e.id, Level.BLUE).label,
    }


@router.get("")
async def list_enterprises(svc: ServiceDep) -> list[dict[str, Any]]:
    risks = await _risks(svc)
    return [_to_json(svc, e, risks) for e in svc.registry.enterprises.values()]


@router.get("/{enterprise_id}")
async def get_enterprise(enterprise_id: str, svc: ServiceDep) -> dict[str, Any]:
    e = svc.registry.enterprises.get(enterprise_id)
    if e is None:
        raise HTTPException(404, f"enterprise {enterprise_id!r} is not registered")
    return _to_json(svc, e, await _risks(svc))


@router.post("", status_code=201)
async def add_enterprises(body: EnterpriseIn | list[EnterpriseIn], svc: ServiceDep) -> list[dict[str, Any]]:
    """Register one enterprise or a list of them (existing ids are replaced); all are validated
    before any is added. Saved across restarts."""
    items = body if isinstance(body, list) else [body]
    try:
        out = svc.register_enterprises([item.model_dump() for item in items])
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None
    risks = await _risks(svc)
    return [_to_json(svc, e, risks) for e in out]


@router.patch("/{enterprise_id}")
async def patch_enterprise(enterprise_id: str, body: EnterprisePatch, svc: ServiceDep) -> dict[str, Any]:
    """Change name, region, capacity or production status (e.g. a suspension order); saved
    across restarts."""
    if enterprise_id not in svc.registry.enterprises:
        raise HTTPException(404, f"enterprise {enterprise_id!r} is not registered")
    try:
        updated = svc.update_enterprise(enterprise_id, body.model_dump(exclude_unset=True))
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None
    return _to_json(svc, updated, await _risks(svc))
