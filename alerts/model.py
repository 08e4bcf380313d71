"""Alarm records shared by the lifecycle, the stores and the API (plain data, no I/O).

Times are epoch milliseconds. ``level`` is the current level; ``peak_level`` the
highest reached. Event types: raised, escalated, deescalated, cleared, reactivated,
acknowledged, closed, shelved, unshelved, overdue (an escalation to the next tier).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, fields
from typing import Any

from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import copy_json


@dataclass(slots=True)
class Alarm:
    """One alarm per (sensor, rule) episode; its level moves up and down until closed."""

    id: int
    enterprise_id: str
    sensor_id: str
    device_id: str
    area: str
    kind: str
    rule: str
    level: Level
    status: AlarmStatus
    value: float
    raised_at: int
    updated_at: int
    peak_level: Level = Level.NONE
    message: str = ""
    cleared_at: int | None = None
    acked_by: str | None = None
    acked_at: int | None = None
    ack_comment: str | None = None
    closed_by: str | None = None
    closed_at: int | None = None
    close_comment: str | None = None
    shelved_until: int | None = None
    shelve_reason: str | None = None
    tier: int = 0  # administrative tier: 0 enterprise, 1 county, 2 city ...
    extra: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> Alarm:
        """An independent copy (``extra`` copied too): what ``dataclasses.replace`` gave, a
        tenth of its cost."""
        c = Alarm(*_alarm_values(self))
        c.extra = dict(self.extra)
        return c

    def to_json(self) -> dict[str, Any]:
        """Wire form: levels as colour names, statuses as strings, times as epoch ms. (Field by
        field: ``dataclasses.asdict``'s generic deep copy was most of the cost of an alarm
        storm, ~150 us an alarm; docs/benchmarks.md.)"""
        d = dict(zip(_ALARM_FIELDS, _alarm_values(self), strict=True))
        d["extra"] = copy_json(self.extra)
        d["level"] = self.level.label
        d["peak_level"] = self.peak_level.label
        d["status"] = str(self.status)
        d["value"] = _finite_or_none(self.value)
        return d


def _finite_or_none(v: float | None) -> float | None:
    """JSON has no NaN: timer-driven alarms (deadman) carry no reading, shown as null."""
    return v if v is not None and math.isfinite(v) else None


@dataclass(slots=True)
class AlarmEvent:
    """One transition of an alarm (what the WebSocket pushes and the store appends)."""

    alarm_id: int
    ts_ms: int
    type: str
    level: Level
    prev_level: Level
    status: AlarmStatus
    value: float | None = None
    by: str | None = None
    comment: str | None = None
    id: int | None = None  # assigned by the store

    def to_json(self) -> dict[str, Any]:
        d = dict(zip(_EVENT_FIELDS, _event_values(self), strict=True))
        d["level"] = self.level.label
        d["prev_level"] = self.prev_level.label
        d["status"] = str(self.status)
        d["value"] = _finite_or_none(self.value)
        return d


_ALARM_FIELDS = tuple(f.name for f in fields(Alarm))
_EVENT_FIELDS = tuple(f.name for f in fields(AlarmEvent))
# every field's value in declaration order, in one C call (an alarm storm copies and encodes
# each alarm several times; a getattr per field was a third of that)
_alarm_values = operator.attrgetter(*_ALARM_FIELDS)
_event_values = operator.attrgetter(*_EVENT_FIELDS)

Change = tuple[Alarm, AlarmEvent]
