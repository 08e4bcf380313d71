"""Reading history by sensor and time range, raw or downsampled."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, is_dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import ServiceDep
from api.timeparse import parse_time_ms

router = APIRouter(prefix="/readings", tags=["readings"])


def _row(r: Any) -> Any:
    return asdict(r) if is_dataclass(r) and not isinstance(r, type) else r


@router.get("")
async def readings(
    svc: ServiceDep,
    enterprise_id: str,
    sensor_id: str,
    start: str = Query(description="epoch ms or RFC 3339"),
    end: str | None = Query(None, description="epoch ms or RFC 3339; default now"),
    limit: int = Query(10_000, ge=1, le=1_000_000),
    window_s: float | None = Query(None, gt=0, description="downsample: mean/min/max per window"),
) -> list[Any]:
    try:
        start_ms = parse_time_ms(start, "start")
        end_ms = parse_time_ms(end, "end") if end is not None else svc.clock()
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if end_ms < start_ms:
        raise HTTPException(422, "end: must not be before start")
    rows: list[Any]
    if window_s is None:
        rows = await asyncio.to_thread(svc.readings.query_readings, enterprise_id, sensor_id, start_ms, end_ms, limit)
    else:
        rows = await asyncio.to_thread(
            svc.readings.query_aggregate, enterprise_id, sensor_id, start_ms, end_ms, int(window_s * 1000))
    return [_row(r) for r in rows]
