"""Alarm records: the wire form and copies are field-by-field, and equal what
``dataclasses.asdict`` / ``replace`` gave."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

from alerts.model import Alarm, AlarmEvent
from plantwatch.domain import AlarmStatus, Level


def _alarm() -> Alarm:
    return Alarm(id=7, enterprise_id="E1", sensor_id="GT-1", device_id="GW1", area="tanks", kind="gas.combustible",
                 rule="high", level=Level.ORANGE, status=AlarmStatus.ACKNOWLEDGED, value=math.nan, raised_at=1,
                 updated_at=2, peak_level=Level.RED, acked_by="Li", extra={"row": 3, "notes": [{"by": "Li"}]})


def test_alarm_wire_form_equals_asdicts() -> None:
    a = _alarm()
    want = asdict(a)
    want.update(level="orange", peak_level="red", status=str(AlarmStatus.ACKNOWLEDGED), value=None)
    got = a.to_json()
    assert got == want
    got["extra"]["notes"][0]["by"] = "changed"  # a copy: the alarm is untouched
    assert a.extra["notes"][0]["by"] == "Li"


def test_event_wire_form_equals_asdicts() -> None:
    e = AlarmEvent(alarm_id=7, ts_ms=5, type="escalated", level=Level.RED, prev_level=Level.ORANGE,
                   status=AlarmStatus.ACTIVE, value=61.5, by=None, comment=None, id=12)
    want = asdict(e)
    want.update(level="red", prev_level="orange", status=str(AlarmStatus.ACTIVE))
    assert e.to_json() == want


def test_alarm_copy_equals_replace_and_is_independent() -> None:
    a = _alarm()
    c = a.copy()
    assert c.to_json() == replace(a, extra=dict(a.extra)).to_json()
    c.extra["row"] = 9
    c.level = Level.BLUE
    assert (a.extra["row"], a.level) == (3, Level.ORANGE)
