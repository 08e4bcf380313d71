"""Helpers for the alarm-engine tests: tiny registries, a fake clock, one-reading feeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from alerts.engine import AlarmEngine
from alerts.transitions import Transitions
from plantwatch.domain import Level, ProductionStatus
from plantwatch.registry import Enterprise, Sensor

T0 = 1_795_459_200_000  # a fixed epoch-ms start for fake clocks


def sensor(sid: str, kind: str, *, ent: str = "E1", device: str = "GW1", area: str = "A1",
           interval_s: float = 5.0, thresholds: dict[str, float] | None = None,
           **params: Any) -> Sensor:
    """A registered sensor; ``row`` is set by :func:`make_engine`."""
    return Sensor(enterprise_id=ent, id=sid, kind=kind, device_id=device, area=area,
                  interval_s=interval_s, thresholds=thresholds or {}, params=params)


def enterprises(status: ProductionStatus = ProductionStatus.NORMAL,
                capacity_kw: float | None = None, ent: str = "E1") -> dict[str, Enterprise]:
    return {ent: Enterprise(id=ent, production_status=status, capacity_kw=capacity_kw)}


def make_engine(sensors: list[Sensor], ents: dict[str, Enterprise] | None = None,
                **kw: Any) -> AlarmEngine:
    for i, s in enumerate(sensors):
        s.row = i
    kw.setdefault("anomaly", False)
    return AlarmEngine(sensors, ents or enterprises(), **kw)


def feed(engine: AlarmEngine, row: int | list[int], ts: int | list[int], value: float | list[float],
         now: int | None = None) -> Transitions:
    """Evaluate readings given as scalars or lists; ``now`` defaults to the newest ts."""
    r = np.atleast_1d(np.asarray(row, np.int32))
    t = np.atleast_1d(np.asarray(ts, np.int64))
    v = np.atleast_1d(np.asarray(value, np.float64))
    return engine.evaluate(r, t, v, int(t.max()) if now is None else now)


def events(engine: AlarmEngine, tr: Transitions) -> list[tuple[int, str, str, str]]:
    """Transitions as (row, rule, prev, level) tuples in emission order."""
    return [(int(r), engine.rule_names[int(u)], Level(int(p)).label, Level(int(lv)).label)
            for r, u, p, lv in zip(tr.row, tr.rule, tr.prev, tr.level, strict=True)]


def of_rule(engine: AlarmEngine, tr: Transitions, rule: str) -> list[tuple[int, str, str]]:
    return [(r, p, lv) for r, u, p, lv in events(engine, tr) if u == rule]


@pytest.fixture
def t0() -> int:
    return T0
