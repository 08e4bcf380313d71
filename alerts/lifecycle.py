"""Alarm lifecycle: turns the engine's level transitions into alarms people handle.

Pure Python (no I/O, no asyncio): alarms are rare, so one object per alarm is fine.
All times are epoch milliseconds and are passed in (``now_ms``), never read from a
clock. Every mutation returns :data:`alerts.model.Change` tuples ``(alarm, event)``;
the alarm in a change is a snapshot taken right after that event, so later
mutations never alter what was already handed out. The rules are documented in
``docs/lifecycle.md``.

Bookkeeping that has no column on :class:`Alarm` lives in ``Alarm.extra`` (JSON
scalars, so a store that persists ``extra`` restores running timers exactly):

``row``, ``rule_index``  sensor row and engine rule index of the last transition (informational)
``cond_level``       level the engine currently reports (0 = condition ended)
``floor``            level forced by overdue escalation; the shown level never drops below it
``latched``          red alarm whose condition ended, held active until acknowledged
``latch_armed``      the alarm was red while unacknowledged (a clear will latch)
``ended_at``         when a latched alarm's condition ended (ms)
``ack_due_ms``       acknowledgement deadline (ms) or None
``feedback_due_ms``  disposal-feedback deadline after acknowledgement (ms) or None
``orange_at``        when the alarm first reached orange or above (ms; for the risk colour)
``shelved_by``       who shelved it
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.model import Alarm, AlarmEvent, Change
from alerts.transitions import Transitions
from plantwatch.domain import KINDS, AlarmStatus, Level
from plantwatch.registry import Sensor

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS

TIER_NAMES: tuple[str, ...] = ("enterprise", "county", "city", "province")
"""Administrative tier names by ``Alarm.tier``."""

EVENT_TYPES: frozenset[str] = frozenset({
    "raised", "escalated", "deescalated", "cleared", "reactivated", "acknowledged",
    "note", "closed", "shelved", "unshelved", "overdue",
})


SENSOR_CONDITIONS: dict[str, str] = {
    "out_of_service": "out of service (maintenance): readings stored, not evaluated",
    "removed": "removed from service",
}
"""Sensor alarms the service raises itself (:meth:`AlarmBook.apply_sensor`), with their message."""


# -- errors ------------------------------------------------------------------------------
class LifecycleError(Exception):
    """Base of lifecycle errors; carries the alarm id, its status and the offending field."""

    def __init__(self, message: str, *, alarm_id: int | None = None, status: AlarmStatus | None = None,
                 action: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.alarm_id = alarm_id
        self.status = status
        self.action = action
        self.field = field


class AlarmNotFound(LifecycleError):
    """No open alarm with this id (never existed, or already closed)."""


class InvalidTransition(LifecycleError):
    """The action is not allowed in the alarm's state, or an argument (``field``) is invalid."""


# -- configuration -----------------------------------------------------------------------
def _default_ack() -> dict[Level, int]:
    return {Level.RED: 5 * MINUTE_MS, Level.ORANGE: 15 * MINUTE_MS, Level.YELLOW: HOUR_MS}


def _default_feedback() -> dict[Level, int]:
    return {Level.RED: 2 * HOUR_MS, Level.ORANGE: 4 * HOUR_MS, Level.YELLOW: 24 * HOUR_MS}


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Lifecycle policy (DOMAIN.md "Handling loop and deadlines"); durations in ms.

    ack_ms: acknowledge-within per level (a level missing = no deadline, e.g. blue).
    feedback_ms: disposal feedback (a note or the close) within, counted from the ack.
    level_up: an overdue acknowledgement also raises the level one grade (capped at red).
    max_tier: highest administrative tier (0 enterprise, 1 county, 2 city).
    rearm_on_rise: a level rise on an acknowledged alarm makes it active (to be acked) again.
    latch_red: an unacknowledged alarm that reached red stays active after its condition ends.
    max_shelve_ms: longest allowed shelving; shelve_red: whether red alarms may be shelved.
    """

    ack_ms: Mapping[Level, int] = field(default_factory=_default_ack)
    feedback_ms: Mapping[Level, int] = field(default_factory=_default_feedback)
    level_up: bool = True
    max_tier: int = 2
    rearm_on_rise: bool = True
    latch_red: bool = True
    max_shelve_ms: int = 24 * HOUR_MS
    shelve_red: bool = False

    def __post_init__(self) -> None:
        for name, table in (("ack_ms", self.ack_ms), ("feedback_ms", self.feedback_ms)):
            for lv, ms in table.items():
                if not isinstance(lv, Level) or lv is Level.NONE:
                    raise ValueError(f"Deadlines.{name}: key {lv!r} is not an alarm level")
                if not isinstance(ms, int) or ms <= 0:
                    raise ValueError(f"Deadlines.{name}[{lv.label}]: expected a positive int of ms, got {ms!r}")
        if self.max_tier < 0:
            raise ValueError(f"Deadlines.max_tier: expected >= 0, got {self.max_tier}")
        if self.max_shelve_ms <= 0:
            raise ValueError(f"Deadlines.max_shelve_ms: expected > 0, got {self.max_shelve_ms}")


ThresholdOf = Callable[[int, int, Level], tuple[str, float] | None]
"""(row, rule index, level) -> (operator, threshold) for messages, e.g. ``("≥", 50.0)``."""


def suppressed(alarm: Alarm) -> bool:
    """True while the alarm is shelved: store and stream its changes, but notify nobody."""
    return alarm.shelved_until is not None


def _snap(a: Alarm) -> Alarm:
    return a.copy()


def _tier_name(tier: int) -> str:
    return TIER_NAMES[tier] if 0 <= tier < len(TIER_NAMES) else f"tier {tier}"


def _minutes(ms: int) -> str:
    return f"{ms / MINUTE_MS:g} min"


# -- the book ----------------------------------------------------------------------------
class AlarmBook:
    """All non-closed alarms, one per (enterprise, sensor, rule) key.

    ``sensor_of(row)`` returns the registry sensor of a row (or None: the alarm is
    then keyed ``("", "row:<n>")`` rather than lost); ``rule_names[i]`` names rule
    index ``i`` of :class:`Transitions`. ``next_id`` is the first id to hand out
    (the service passes ``store.max_alarm_id() + 1``).
    """

    def __init__(self, sensor_of: Callable[[int], Sensor | None], rule_names: Sequence[str],
                 next_id: int = 1, deadlines: Deadlines | None = None,
                 threshold_of: ThresholdOf | None = None) -> None:
        self._sensor_of = sensor_of
        self._rule_names = list(rule_names)
        self._next_id = int(next_id)
        self.deadlines = deadlines if deadlines is not None else Deadlines()
        self._threshold_of = threshold_of
        self._alarms: dict[int, Alarm] = {}
        self._by_key: dict[tuple[str, str, str], int] = {}

    # -- queries -----------------------------------------------------------------------
    @property
    def next_id(self) -> int:
        """The id the next raised alarm will get."""
        return self._next_id

    def get(self, alarm_id: int) -> Alarm | None:
        """A snapshot of the open alarm, or None if unknown or closed."""
        a = self._alarms.get(alarm_id)
        return _snap(a) if a is not None else None

    def open_alarms(self) -> list[Alarm]:
        """Snapshots of every non-closed alarm, by id."""
        return [_snap(self._alarms[i]) for i in sorted(self._alarms)]

    def open_counts(self) -> dict[Level, int]:
        """Number of non-closed alarms per current level (cheap: no snapshots)."""
        counts = dict.fromkeys((Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED), 0)
        for a in self._alarms.values():
            counts[a.level] = counts.get(a.level, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._alarms)

    # -- engine transitions --------------------------------------------------------------
    def apply(self, tr: Transitions, now_ms: int) -> list[Change]:
        """Apply engine transitions in array order; duplicates and no-ops yield nothing."""
        out: list[Change] = []
        for row, rule, lvl, val, ts in zip(tr.row.tolist(), tr.rule.tolist(), tr.level.tolist(),
                                           tr.value.tolist(), tr.ts_ms.tolist(), strict=True):
            level = Level(min(max(int(lvl), 0), int(Level.RED)))  # never lose a batch to a bad level
            out.extend(self._apply_one(int(row), int(rule), level, float(val), int(ts), now_ms))
        return out

    def apply_system(self, source: str, rule_name: str, level: Level, value: float, ts_ms: int,
                     now_ms: int) -> list[Change]:
        """A condition of the service itself (e.g. the outage buffer nearing full), not of a sensor.

        Keyed ``("", source, rule_name)`` with kind ``system``; ``level`` NONE ends the
        condition. Same lifecycle as sensor alarms (ack deadlines, latching, closing).
        """
        return self._apply_key(("", source, rule_name), -1, -1, None, level, value, ts_ms, now_ms)

    def apply_sensor(self, sensor: Sensor, rule_name: str, level: Level, ts_ms: int, now_ms: int) -> list[Change]:
        """A condition of a sensor that no engine rule computes (``out_of_service``,
        ``removed``: see :data:`SENSOR_CONDITIONS`), keyed like the engine's alarms;
        ``level`` NONE ends it. Same lifecycle as every alarm."""
        return self._apply_key((sensor.enterprise_id, sensor.id, rule_name), sensor.row, -1, sensor, level,
                               math.nan, ts_ms, now_ms)

    def open_for(self, enterprise_id: str, sensor_id: str, rule_name: str) -> Alarm | None:
        """A snapshot of the open alarm of this (sensor, rule), or None."""
        aid = self._by_key.get((enterprise_id, sensor_id, rule_name))
        return self.get(aid) if aid is not None else None

    def _apply_one(self, row: int, rule: int, level: Level, value: float, ts: int, now: int) -> list[Change]:
        sensor = self._sensor_of(row)
        rule_name = self._rule_names[rule] if 0 <= rule < len(self._rule_names) else f"rule#{rule}"
        ent = sensor.enterprise_id if sensor is not None else ""
        sid = sensor.id if sensor is not None else f"row:{row}"
        return self._apply_key((ent, sid, rule_name), row, rule, sensor, level, value, ts, now)

    def _apply_key(self, key: tuple[str, str, str], row: int, rule: int, sensor: Sensor | None,
                   level: Level, value: float, ts: int, now: int) -> list[Change]:
        aid = self._by_key.get(key)
        a = self._alarms.get(aid) if aid is not None else None
        if a is None:
            if level is Level.NONE:
                return []
            return [self._raise(key, row, rule, sensor, level, value, ts, now)]
        cond = Level(int(a.extra.get("cond_level", 0)))
        if level is Level.NONE:
            return [] if cond is Level.NONE else [self._condition_ended(a, value, ts)]
        a.extra["row"] = row
        a.extra["rule_index"] = rule
        if cond is Level.NONE:
            return self._reactivate(a, rule, level, value, ts, now)
        if level == cond:
            return []
        return self._move(a, rule, level, value, ts, now)

    def _unit(self, sensor: Sensor | None) -> str:
        if sensor is None:
            return ""
        if sensor.unit:
            return sensor.unit
        spec = KINDS.get(sensor.kind)
        return spec.unit if spec is not None else ""

    def _message(self, a: Alarm, rule: int, cond: Level, value: float) -> str:
        row = int(a.extra.get("row", -1))
        text = SENSOR_CONDITIONS.get(a.rule) if rule < 0 else None
        if text is not None:
            return f"{a.sensor_id} {a.kind} {text} ({a.level.label}, {a.rule})"
        sensor = self._sensor_of(row) if row >= 0 else None
        unit = self._unit(sensor)
        shown = f"{value:.1f} {unit}".rstrip() if math.isfinite(value) else "no data"
        thr = ""
        if self._threshold_of is not None and cond is not Level.NONE and row >= 0 and rule >= 0:
            t = self._threshold_of(row, rule, cond)
            if t is not None:
                thr = f" {t[0]} {t[1]:g}"
        return f"{a.sensor_id} {a.kind} {shown}{thr} ({a.level.label}, {a.rule})"

    def _ack_due(self, level: Level, start: int) -> int | None:
        ms = self.deadlines.ack_ms.get(level)
        return start + ms if ms is not None else None

    def _fb_due(self, level: Level, start: int) -> int | None:
        ms = self.deadlines.feedback_ms.get(level)
        return start + ms if ms is not None else None

    def _set_level(self, a: Alarm, level: Level, ts: int) -> None:
        a.level = level
        if level > a.peak_level:
            a.peak_level = level
        if level >= Level.ORANGE and "orange_at" not in a.extra:
            a.extra["orange_at"] = ts
        if level is Level.RED and a.status is AlarmStatus.ACTIVE:
            a.extra["latch_armed"] = True

    def _raise(self, key: tuple[str, str, str], row: int, rule: int, sensor: Sensor | None,
               level: Level, value: float, ts: int, now: int) -> Change:
        a = Alarm(
            id=self._next_id, enterprise_id=key[0], sensor_id=key[1],
            device_id=sensor.device_id if sensor is not None else "",
            area=sensor.area if sensor is not None else "",
            kind=sensor.kind if sensor is not None else ("system" if row < 0 else ""),
            rule=key[2], level=level, status=AlarmStatus.ACTIVE, value=value,
            raised_at=ts, updated_at=ts, peak_level=level,
            extra={"row": row, "rule_index": rule, "cond_level": int(level), "floor": 0, "latched": False,
                   "latch_armed": False, "ack_due_ms": self._ack_due(level, now), "feedback_due_ms": None},
        )
        self._next_id += 1
        self._set_level(a, level, ts)
        a.message = self._message(a, rule, level, value)
        self._alarms[a.id] = a
        self._by_key[key] = a.id
        return self._emit(a, "raised", level, Level.NONE, ts, value=value)

    def _move(self, a: Alarm, rule: int, cond: Level, value: float, ts: int, now: int) -> list[Change]:
        old = a.level
        a.extra["cond_level"] = int(cond)
        if math.isfinite(value):
            a.value = value
        a.updated_at = max(a.updated_at, ts)
        new = max(cond, Level(int(a.extra.get("floor", 0))))
        if new == old:
            return []  # hidden below the overdue floor: nothing visible changed
        out: list[Change] = []
        if new > old:
            if a.status is AlarmStatus.ACKNOWLEDGED and self.deadlines.rearm_on_rise:
                self._clear_ack(a)
                a.status = AlarmStatus.ACTIVE
            if a.status is AlarmStatus.ACTIVE:
                a.extra["ack_due_ms"] = _min_opt(a.extra.get("ack_due_ms"), self._ack_due(new, now))
        self._set_level(a, new, ts)
        a.message = self._message(a, rule, cond, value)
        out.append(self._emit(a, "escalated" if new > old else "deescalated", new, old, ts, value=value))
        out.extend(self._auto_unshelve(a, ts))
        return out

    def _condition_ended(self, a: Alarm, value: float, ts: int) -> Change:
        a.extra["cond_level"] = 0
        if math.isfinite(value):
            a.value = value
        a.updated_at = max(a.updated_at, ts)
        if self.deadlines.latch_red and a.status is AlarmStatus.ACTIVE and a.extra.get("latch_armed"):
            a.extra["latched"] = True
            a.extra["ended_at"] = ts
            return self._emit(a, "cleared", a.level, a.level, ts, value=value,
                              comment="condition ended; red alarm latched until acknowledged")
        prev = a.level
        a.status = AlarmStatus.CLEARED
        a.cleared_at = ts
        a.extra["floor"] = 0
        a.extra["ack_due_ms"] = None
        return self._emit(a, "cleared", Level.NONE, prev, ts, value=value)

    def _reactivate(self, a: Alarm, rule: int, cond: Level, value: float, ts: int, now: int) -> list[Change]:
        latched = bool(a.extra.get("latched"))
        prev = a.level if latched else Level.NONE
        a.extra["cond_level"] = int(cond)
        a.extra["latched"] = False
        a.extra.pop("ended_at", None)
        if math.isfinite(value):
            a.value = value
        a.updated_at = max(a.updated_at, ts)
        new = max(cond, Level(int(a.extra.get("floor", 0))))
        if latched:  # still active and unacknowledged; its ack deadline keeps running
            a.extra["ack_due_ms"] = _min_opt(a.extra.get("ack_due_ms"), self._ack_due(new, now))
        else:  # a new occurrence: it must be acknowledged again
            a.status = AlarmStatus.ACTIVE
            a.cleared_at = None
            self._clear_ack(a)
            a.extra["ack_due_ms"] = self._ack_due(new, now)
        self._set_level(a, new, ts)
        a.message = self._message(a, rule, cond, value)
        out = [self._emit(a, "reactivated", new, prev, ts, value=value)]
        out.extend(self._auto_unshelve(a, ts))
        return out

    def _auto_unshelve(self, a: Alarm, ts: int) -> list[Change]:
        if a.shelved_until is not None and a.level is Level.RED and not self.deadlines.shelve_red:
            return [self._do_unshelve(a, ts, None, "reached red; red alarms may not stay shelved")]
        return []

    @staticmethod
    def _clear_ack(a: Alarm) -> None:
        a.acked_by = a.acked_at = a.ack_comment = None
        a.extra["feedback_due_ms"] = None

    # -- operator actions ----------------------------------------------------------------
    def _open(self, alarm_id: int, action: str) -> Alarm:
        a = self._alarms.get(alarm_id)
        if a is None:
            raise AlarmNotFound(f"no open alarm {alarm_id} (unknown or already closed)",
                                alarm_id=alarm_id, action=action)
        return a

    @staticmethod
    def _require(a: Alarm, action: str, **fields: str | None) -> None:
        for name, v in fields.items():
            if v is None or not v.strip():
                raise InvalidTransition(f"{action} alarm {a.id}: {name!r} is required and must not be empty",
                                        alarm_id=a.id, status=a.status, action=action, field=name)

    def acknowledge(self, alarm_id: int, by: str, comment: str, now_ms: int) -> Change:
        """Acknowledge by a named person with a comment (stops the ack deadline).

        Active → acknowledged; a latched red alarm whose condition ended → cleared;
        a cleared, unacknowledged alarm stays cleared and records the acknowledgement.
        """
        a = self._open(alarm_id, "acknowledge")
        self._require(a, "acknowledge", by=by, comment=comment)
        if a.acked_by is not None:
            raise InvalidTransition(f"alarm {a.id} is already acknowledged by {a.acked_by}",
                                    alarm_id=a.id, status=a.status, action="acknowledge")
        if a.status is AlarmStatus.ACTIVE and a.extra.get("latched"):
            a.status = AlarmStatus.CLEARED
            a.cleared_at = int(a.extra.pop("ended_at", now_ms))
            a.extra["latched"] = False
            a.extra["floor"] = 0
        elif a.status is AlarmStatus.ACTIVE:
            a.status = AlarmStatus.ACKNOWLEDGED
        a.acked_by, a.acked_at, a.ack_comment = by.strip(), now_ms, comment
        a.extra["ack_due_ms"] = None
        a.extra["latch_armed"] = False
        a.extra["feedback_due_ms"] = self._fb_due(a.level, now_ms)
        a.updated_at = max(a.updated_at, now_ms)
        return self._emit(a, "acknowledged", a.level, a.level, now_ms, by=a.acked_by, comment=comment)

    def add_note(self, alarm_id: int, by: str, comment: str, now_ms: int) -> Change:
        """Record a disposal note (核实/处置/反馈); satisfies the feedback deadline."""
        a = self._open(alarm_id, "note")
        self._require(a, "note", by=by, comment=comment)
        a.extra["feedback_due_ms"] = None
        a.extra["last_note_at"] = now_ms
        a.updated_at = max(a.updated_at, now_ms)
        return self._emit(a, "note", a.level, a.level, now_ms, by=by.strip(), comment=comment)

    def close(self, alarm_id: int, by: str, comment: str, now_ms: int) -> Change:
        """Close with a disposal record; only once the condition has ended (see docs)."""
        a = self._open(alarm_id, "close")
        self._require(a, "close", by=by, comment=comment)
        if a.extra.get("latched"):
            raise InvalidTransition(
                f"alarm {a.id} is a latched {a.level.label} alarm: acknowledge it before closing",
                alarm_id=a.id, status=a.status, action="close")
        if a.status is not AlarmStatus.CLEARED:
            raise InvalidTransition(
                f"alarm {a.id} cannot be closed while its condition is still present "
                f"({a.level.label}, {a.status}); acknowledge it and close it once it has cleared",
                alarm_id=a.id, status=a.status, action="close")
        a.status = AlarmStatus.CLOSED
        a.closed_by, a.closed_at, a.close_comment = by.strip(), now_ms, comment
        a.shelved_until = None
        a.extra["ack_due_ms"] = None
        a.extra["feedback_due_ms"] = None
        a.updated_at = max(a.updated_at, now_ms)
        del self._alarms[a.id]
        key = (a.enterprise_id, a.sensor_id, a.rule)
        if self._by_key.get(key) == a.id:
            del self._by_key[key]
        return self._emit(a, "closed", a.level, a.level, now_ms, by=a.closed_by, comment=comment)

    def shelve(self, alarm_id: int, by: str, reason: str, until_ms: int, now_ms: int) -> Change:
        """Shelve until ``until_ms`` (ms) with a reason: timers pause, notifications stop."""
        a = self._open(alarm_id, "shelve")
        self._require(a, "shelve", by=by, reason=reason)
        if until_ms <= now_ms:
            raise InvalidTransition(f"shelve alarm {a.id}: until_ms must be in the future",
                                    alarm_id=a.id, status=a.status, action="shelve", field="until_ms")
        if until_ms - now_ms > self.deadlines.max_shelve_ms:
            raise InvalidTransition(
                f"shelve alarm {a.id}: at most {_minutes(self.deadlines.max_shelve_ms)} allowed",
                alarm_id=a.id, status=a.status, action="shelve", field="until_ms")
        if a.level is Level.RED and not self.deadlines.shelve_red:
            raise InvalidTransition(f"alarm {a.id} is red: red alarms may not be shelved",
                                    alarm_id=a.id, status=a.status, action="shelve")
        a.shelved_until = until_ms
        a.shelve_reason = reason
        a.extra["shelved_by"] = by.strip()
        a.updated_at = max(a.updated_at, now_ms)
        return self._emit(a, "shelved", a.level, a.level, now_ms, by=by.strip(), comment=reason)

    def unshelve(self, alarm_id: int, by: str, comment: str, now_ms: int) -> Change:
        """End shelving early; paused deadlines restart from ``now_ms``."""
        a = self._open(alarm_id, "unshelve")
        self._require(a, "unshelve", by=by)
        if a.shelved_until is None:
            raise InvalidTransition(f"alarm {a.id} is not shelved", alarm_id=a.id, status=a.status,
                                    action="unshelve")
        return self._do_unshelve(a, now_ms, by.strip(), comment or None)

    def _do_unshelve(self, a: Alarm, ts: int, by: str | None, comment: str | None) -> Change:
        a.shelved_until = None
        a.shelve_reason = None
        a.extra.pop("shelved_by", None)
        if a.status is AlarmStatus.ACTIVE:
            a.extra["ack_due_ms"] = self._ack_due(a.level, ts)
        if a.extra.get("feedback_due_ms") is not None:
            a.extra["feedback_due_ms"] = self._fb_due(a.level, ts)
        a.updated_at = max(a.updated_at, ts)
        return self._emit(a, "unshelved", a.level, a.level, ts, by=by, comment=comment)

    # -- timers --------------------------------------------------------------------------
    def tick(self, now_ms: int, skip: Callable[[Alarm], bool] | None = None) -> list[Change]:
        """Fire every timer due at or before ``now_ms``: shelving expiry, overdue ack/feedback.

        Events carry the instant the timer fell due (not ``now_ms``), so the outcome
        does not depend on how often tick runs or on a restart in between. ``skip(alarm)``
        true (asked only of alarms with a timer due): leave its timers to a later tick (the
        service's alarms whose engine changes still wait in a storm's backlog: a clear on its
        way must not be preceded by an overdue escalation).
        """
        out: list[Change] = []
        for aid in sorted(self._alarms):
            a = self._alarms[aid]
            asked = skip is None
            while True:
                due, what = self._next_timer(a)
                if due is None or due > now_ms:
                    break
                if not asked:
                    asked = True
                    if skip is not None and skip(a):
                        break
                if what == "shelve":
                    out.append(self._do_unshelve(a, due, None, "shelving expired"))
                elif what == "ack":
                    out.append(self._overdue_ack(a, due))
                else:
                    out.append(self._overdue_feedback(a, due))
        out.sort(key=lambda c: (c[1].ts_ms, c[1].alarm_id))
        return out

    def next_due(self) -> int | None:
        """Earliest pending timer over all alarms (ms), or None."""
        dues = [d for d in (self._next_timer(a)[0] for a in self._alarms.values()) if d is not None]
        return min(dues) if dues else None

    @staticmethod
    def _next_timer(a: Alarm) -> tuple[int | None, str]:
        if a.shelved_until is not None:
            return a.shelved_until, "shelve"
        ack = a.extra.get("ack_due_ms") if a.status is AlarmStatus.ACTIVE else None
        fb = a.extra.get("feedback_due_ms") if a.acked_by is not None else None
        if ack is not None and (fb is None or ack <= fb):
            return int(ack), "ack"
        if fb is not None:
            return int(fb), "feedback"
        return None, ""

    def _overdue_ack(self, a: Alarm, due: int) -> Change:
        old = a.level
        waited = self.deadlines.ack_ms.get(old, 0)
        if a.tier < self.deadlines.max_tier:
            a.tier += 1
        new = old
        if self.deadlines.level_up and old < Level.RED:
            new = Level(old + 1)
            a.extra["floor"] = max(int(a.extra.get("floor", 0)), int(new))
            self._set_level(a, new, due)
        if a.tier >= self.deadlines.max_tier and (new is Level.RED or not self.deadlines.level_up):
            a.extra["ack_due_ms"] = None  # nothing left to escalate to
        else:
            a.extra["ack_due_ms"] = self._ack_due(new, due)
        a.updated_at = max(a.updated_at, due)
        if new != old:
            cond = Level(int(a.extra.get("cond_level", 0)))
            a.message = self._message(a, int(a.extra.get("rule_index", -1)), cond, a.value)
        return self._emit(a, "overdue", new, old, due,
                          comment=f"not acknowledged within {_minutes(waited)}; "
                                  f"escalated to {_tier_name(a.tier)}")

    def _overdue_feedback(self, a: Alarm, due: int) -> Change:
        waited = self.deadlines.feedback_ms.get(a.level, 0)
        if a.tier < self.deadlines.max_tier:
            a.tier += 1
        a.extra["feedback_due_ms"] = None
        a.updated_at = max(a.updated_at, due)
        return self._emit(a, "overdue", a.level, a.level, due,
                          comment=f"no disposal feedback within {_minutes(waited)} of acknowledgement; "
                                  f"escalated to {_tier_name(a.tier)}")

    # -- restart -------------------------------------------------------------------------
    def load(self, alarms: Iterable[Alarm]) -> None:
        """Restore non-closed alarms (e.g. ``store.load_open_alarms()``) after a restart.

        Running deadlines come from the stored ``extra`` times, so an escalation falls
        due at the same wall time as without the restart. Alarms stored without that
        bookkeeping get deadlines derived from ``raised_at`` / ``acked_at``.
        """
        for src in alarms:
            a = _snap(src)
            a.status = AlarmStatus(a.status)  # tolerate raw values from a store
            a.level, a.peak_level = Level(int(a.level)), Level(int(a.peak_level))
            if a.status is AlarmStatus.CLOSED:
                continue
            ex: dict[str, Any] = a.extra
            present = a.status in (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)
            ex.setdefault("latched", False)
            ex.setdefault("cond_level", int(a.level) if present and not ex["latched"] else 0)
            ex.setdefault("floor", 0)
            ex.setdefault("latch_armed", a.status is AlarmStatus.ACTIVE and a.peak_level is Level.RED)
            if "ack_due_ms" not in ex:
                ex["ack_due_ms"] = self._ack_due(a.level, a.raised_at) if a.status is AlarmStatus.ACTIVE else None
            if "feedback_due_ms" not in ex:
                ex["feedback_due_ms"] = (self._fb_due(a.level, a.acked_at)
                                         if a.acked_at is not None and "last_note_at" not in ex else None)
            self._alarms[a.id] = a
            key = (a.enterprise_id, a.sensor_id, a.rule)
            if self._by_key.get(key, -1) < a.id:
                self._by_key[key] = a.id
            self._next_id = max(self._next_id, a.id + 1)

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _emit(a: Alarm, typ: str, level: Level, prev: Level, ts: int, *, value: float | None = None,
              by: str | None = None, comment: str | None = None) -> Change:
        ev = AlarmEvent(alarm_id=a.id, ts_ms=int(ts), type=typ, level=level, prev_level=prev,
                        status=a.status, value=value if value is not None and math.isfinite(value) else None,
                        by=by, comment=comment)
        return (_snap(a), ev)


def _min_opt(a: Any, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return int(a)
    return min(int(a), b)


__all__ = [
    "EVENT_TYPES", "TIER_NAMES", "AlarmBook", "AlarmNotFound", "Deadlines", "InvalidTransition",
    "LifecycleError", "suppressed",
]
