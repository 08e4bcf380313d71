"""Alarms: listing with filters, acknowledge/close/notes/shelve, and the live event stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, HTTPException, Query, WebSocket, WebSocketDisconnect

from alerts.lifecycle import AlarmNotFound, InvalidTransition, LifecycleError
from alerts.model import Alarm
from api.deps import ServiceDep, ServiceWsDep
from api.schemas import ActionIn, ShelveIn
from plantwatch.domain import AlarmStatus, Level

router = APIRouter(prefix="/alarms", tags=["alarms"])

LevelName = Query(None, pattern="^(red|orange|yellow|blue)$")
StatusName = Query(None, pattern="^(active|acknowledged|cleared|closed|open)$",
                   description="'open' = anything not closed")


@router.get("")
async def list_alarms(
    svc: ServiceDep,
    enterprise_id: str | None = None,
    status: str | None = StatusName,
    level: str | None = LevelName,
    limit: int = Query(1000, ge=1, le=100_000),
    offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    """Newest first. ``status=open`` returns every alarm that is not closed."""
    if status == "open":
        lv = Level.parse(level) if level else None
        alarms = [a for a in svc.book.open_alarms()
                  if (enterprise_id is None or a.enterprise_id == enterprise_id) and (lv is None or a.level == lv)]
        alarms.sort(key=lambda a: a.id, reverse=True)
        return [a.to_json() for a in alarms[offset:offset + limit]]
    rows: list[Alarm] = await asyncio.to_thread(
        svc.alarms.list_alarms, enterprise_id=enterprise_id,
        status=AlarmStatus(status) if status else None,
        level=Level.parse(level) if level else None, limit=limit, offset=offset)
    return [a.to_json() for a in rows]


async def _get(svc: ServiceDep, alarm_id: int) -> Alarm:
    alarm = svc.open_alarm(alarm_id) or await asyncio.to_thread(svc.alarms.get_alarm, alarm_id)
    if alarm is None:
        raise HTTPException(404, f"alarm {alarm_id} not found")
    return alarm


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: int, svc: ServiceDep) -> dict[str, Any]:
    alarm = await _get(svc, alarm_id)
    events = await asyncio.to_thread(svc.alarms.alarm_events, alarm_id)
    return {**alarm.to_json(), "events": [e.to_json() for e in events]}


def _lifecycle_http(exc: LifecycleError) -> HTTPException:
    if isinstance(exc, AlarmNotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, InvalidTransition):
        # an invalid argument (field named) is the client's input; otherwise the alarm's state forbids it
        return HTTPException(422 if exc.field else 409, str(exc))
    return HTTPException(400, str(exc))


@router.post("/{alarm_id}/ack")
async def acknowledge(alarm_id: int, body: ActionIn, svc: ServiceDep) -> dict[str, Any]:
    """Acknowledge (确认) by a named person with a comment."""
    try:
        return svc.acknowledge(alarm_id, body.by, body.comment).to_json()
    except LifecycleError as exc:
        raise _lifecycle_http(exc) from None


@router.post("/{alarm_id}/notes")
async def add_note(alarm_id: int, body: ActionIn, svc: ServiceDep) -> dict[str, Any]:
    """Record verification/disposal/feedback (核实/处置/反馈) on an open alarm."""
    try:
        return svc.add_note(alarm_id, body.by, body.comment).to_json()
    except LifecycleError as exc:
        raise _lifecycle_http(exc) from None


@router.post("/{alarm_id}/close")
async def close(alarm_id: int, body: ActionIn, svc: ServiceDep) -> dict[str, Any]:
    """Close (消警) with a disposal record; refused (409) while the condition is still present."""
    try:
        return svc.close_alarm(alarm_id, body.by, body.comment).to_json()
    except LifecycleError as exc:
        raise _lifecycle_http(exc) from None


@router.post("/{alarm_id}/shelve")
async def shelve(alarm_id: int, body: ShelveIn, svc: ServiceDep) -> dict[str, Any]:
    """Shelve for ``duration_s`` with a reason (no escalation while shelved; expires by itself)."""
    try:
        until = svc.clock() + int(body.duration_s * 1000)
        return svc.shelve(alarm_id, body.by, body.reason, until).to_json()
    except LifecycleError as exc:
        raise _lifecycle_http(exc) from None


@router.post("/{alarm_id}/unshelve")
async def unshelve(alarm_id: int, body: ActionIn, svc: ServiceDep) -> dict[str, Any]:
    """End shelving early."""
    try:
        return svc.unshelve(alarm_id, body.by, body.comment).to_json()
    except LifecycleError as exc:
        raise _lifecycle_http(exc) from None


@router.websocket("/stream")
async def stream(
    websocket: WebSocket, svc: ServiceWsDep, enterprise_id: str | None = None, min_level: str | None = None,
    include_shelved: bool = True,
) -> None:
    """Push every alarm event as ``{"event": {...}, "alarm": {...}, "notify": bool}``;
    ``notify`` is false for changes of a shelved alarm (stored and shown, nobody paged).

    Optional filters: ``enterprise_id``, ``min_level`` (blue|yellow|orange|red),
    ``include_shelved=false`` (only events that notify). A client
    too slow to keep up (10,000 queued events) is closed with code 1013 and should
    reconnect and re-read ``GET /api/v1/alarms?status=open``.
    """
    try:
        lv = Level.parse(min_level) if min_level else Level.NONE
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    sub = svc.hub.subscribe(enterprise_id, lv, include_shelved)
    receiver = asyncio.create_task(websocket.receive())
    try:
        while True:
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                msg = receiver.result()
                if msg.get("type") == "websocket.disconnect":
                    return
                receiver = asyncio.create_task(websocket.receive())
                continue
            item = getter.result()
            if item is None:
                await websocket.close(code=1013 if sub.overflowed else 1001)
                return
            await websocket.send_json(item)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        svc.hub.unsubscribe(sub)
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver
