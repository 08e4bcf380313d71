"""Test helpers: run a scenario against a running service and get its alarms and the labels.

    alarms, labels = await run_against_service(load_scenario("gas"), broker.url, svc.base)
    report = score(alarms, labels)
    assert not report.missed

The scenario is published as fast as possible with timestamps ending at about now (so
the service accepts them); the helper then polls ``GET {base}/api/v1/alarms?limit=10000``
until the list stops changing for ``quiet_s`` (bounded by ``timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from plantwatch.domain import Level
from simulators.labels import Label
from simulators.publish import PublishStats, default_start_ms, run
from simulators.scenario import Scenario

if TYPE_CHECKING:
    from alerts.engine import AlarmEngine
    from alerts.transitions import Transitions
    from plantwatch.registry import Registry


def _get_json(url: str, timeout_s: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.loads(r.read())


def fetch_alarms(base_url: str, limit: int = 10_000, timeout_s: float = 10.0, *,
                 with_events: bool = False) -> list[dict[str, Any]]:
    """``GET {base}/api/v1/alarms?limit=N`` as a list of alarm objects; with ``with_events``
    each alarm also gets its ``events`` from ``GET {base}/api/v1/alarms/{id}``."""
    base = base_url.rstrip("/")
    url = f"{base}/api/v1/alarms?limit={limit}"
    data = _get_json(url, timeout_s)
    if not isinstance(data, list):
        raise ValueError(f"{url}: expected a JSON list, got {type(data).__name__}")
    if with_events:
        for a in data:
            detail = _get_json(f"{base}/api/v1/alarms/{a['id']}", timeout_s)
            a["events"] = detail.get("events", []) if isinstance(detail, dict) else []
    return data


@dataclass(slots=True)
class ServiceRun:
    """Outcome of :func:`run_scenario`: alarms seen, the labels, and what was published."""

    alarms: list[dict[str, Any]]
    labels: list[Label]
    stats: PublishStats


async def _settle(base_url: str, quiet_s: float, timeout_s: float, with_events: bool) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    last: list[dict[str, Any]] | None = None
    stable_since = time.monotonic()
    while True:
        alarms = await asyncio.to_thread(fetch_alarms, base_url)
        now = time.monotonic()
        if alarms != last:
            last, stable_since = alarms, now
        elif now - stable_since >= quiet_s or now >= deadline:
            break
        if now >= deadline:
            break
        await asyncio.sleep(0.1)  # polling a real server; no virtual clock applies here
    if with_events:
        return await asyncio.to_thread(fetch_alarms, base_url, with_events=True)
    return alarms


async def run_scenario(scenario: Scenario, mqtt_url: str, base_url: str, *, start_ms: int | None = None,
                       qos: int = 1, batch: bool = True, prefix: str = "plants", quiet_s: float = 1.0,
                       timeout_s: float = 30.0, announce_offline: bool = False, with_events: bool = True
                       ) -> ServiceRun:
    """Publish ``scenario`` as fast as possible, wait for the service to settle, return all.

    With ``with_events`` (default) every alarm carries its ``events`` (each transition
    with ``ts_ms`` and ``level``), which :func:`score` uses to place episodes in time.
    """
    start = start_ms if start_ms is not None else (
        scenario.start_ms if scenario.start_ms is not None else default_start_ms(scenario.duration_s, math.inf))
    sc = scenario.with_start(start)
    stats = await run(sc, mqtt_url, speed=math.inf, qos=qos, batch=batch, prefix=prefix, start_ms=start,
                      announce_offline=announce_offline)
    alarms = await _settle(base_url, quiet_s, timeout_s, with_events)
    return ServiceRun(alarms, sc.labels(), stats)


async def run_against_service(scenario: Scenario, mqtt_url: str, base_url: str, **kw: Any
                              ) -> tuple[list[dict[str, Any]], list[Label]]:
    """(alarms, labels) after publishing ``scenario`` (see :func:`run_scenario` for options)."""
    r = await run_scenario(scenario, mqtt_url, base_url, **kw)
    return r.alarms, r.labels


def run_against_service_sync(scenario: Scenario, mqtt_url: str, base_url: str, **kw: Any
                             ) -> tuple[list[dict[str, Any]], list[Label]]:
    """Blocking variant for synchronous tests (runs its own event loop)."""
    return asyncio.run(run_against_service(scenario, mqtt_url, base_url, **kw))


# -- scoring ---------------------------------------------------------------------------
@dataclass(slots=True)
class Score:
    """Labels detected (label id → matching alarm ids), missed, and unexplained alarms."""

    detected: dict[str, list[int]] = field(default_factory=dict)
    missed: list[Label] = field(default_factory=list)
    unexplained: list[dict[str, Any]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        n = len(self.detected) + len(self.missed)
        return len(self.detected) / n if n else 1.0


def _level(name: Any) -> Level:
    try:
        return Level.parse(str(name))
    except ValueError:
        return Level.NONE


def _episodes(a: dict[str, Any]) -> list[tuple[int, Level]]:
    """(ts_ms, level) of an alarm's level changes: its events if fetched, else raised_at/peak."""
    evs = a.get("events")
    if evs:
        return [(int(e["ts_ms"]), _level(e.get("level"))) for e in evs if isinstance(e.get("ts_ms"), int)]
    t = a.get("raised_at")
    lvl = max(_level(a.get("peak_level")), _level(a.get("level")))
    return [(int(t), lvl)] if isinstance(t, int | float) else []


def score(alarms: list[dict[str, Any]], labels: list[Label], *, use_time: bool = True,
          slack_ms: int = 120_000) -> Score:
    """Match alarms to labels.

    A label with ``min_level`` above none is detected when an alarm on one of its
    sensors reached at least that level and, with ``use_time``, did so inside
    [start − slack, settle + slack] (epoch ms). Times come from the alarm's events
    (one alarm per sensor and rule can carry several episodes), else from
    ``raised_at``/``peak_level``. An alarm whose episodes fall in no label's window (on
    one of that label's sensors) is ``unexplained``. Turn ``use_time`` off when the
    service stamps transitions with wall time while the stream ran faster.
    """
    out = Score()
    explained: set[int] = set()
    for lab in labels:
        hits = []
        lo, hi = lab.start_ms - slack_ms, lab.settle_ms + slack_ms
        for a in alarms:
            if a.get("enterprise_id") != lab.enterprise_id or a.get("sensor_id") not in lab.sensors:
                continue
            eps = _episodes(a)
            inside = [lvl for t, lvl in eps if not use_time or lo <= t <= hi]
            if not inside:
                continue
            explained.add(int(a["id"]))
            if max(inside) >= lab.min_level > Level.NONE:
                hits.append(int(a["id"]))
        if lab.min_level > Level.NONE:
            if hits:
                out.detected[lab.id] = hits
            else:
                out.missed.append(lab)
    out.unexplained = [a for a in alarms if int(a["id"]) not in explained]
    return out


def replay_through_engine(scenario: Scenario, start_ms: int,
                          take: Callable[[AlarmEngine, Registry, Transitions], None]) -> tuple[AlarmEngine, int]:
    """Feed ``scenario`` (starting at ``start_ms``) through a fresh alarm engine built as the
    service builds it (default rules, anomaly scorer on), without MQTT: readings tick by tick
    with ``now_ms`` = the reading time, gateway last wills to ``gateway_status``, ``tick`` on
    every simulator tick; every call's transitions go to ``take``. Returns the engine and
    the last tick's time (epoch ms)."""
    from alerts.engine import AlarmEngine
    from plantwatch.registry import Registry

    reg = Registry()
    reg.load(scenario.registry())
    eng = AlarmEngine(reg.sensors, reg.enterprises)
    plant = scenario.plant(start_ms)
    col_row = np.array([reg.row_of(s.enterprise_id, s.id) for s in plant.sensors], np.int32)
    status = list(plant.status)
    take(eng, reg, eng.tick(start_ms))
    last = start_ms
    for blk in plant.blocks():
        for k in range(len(blk.t_ms)):
            t = int(blk.t_ms[k])
            while status and status[0][0] <= t:
                st, (ent, dev), online = status.pop(0)
                take(eng, reg, eng.gateway_status(ent, dev, online, st))
            due = blk.due[k]
            if due.any():
                rows = col_row[blk.cols[due]]
                take(eng, reg, eng.evaluate(rows, np.full(len(rows), t, np.int64), blk.values[k, due], t))
            take(eng, reg, eng.tick(t))
            last = t
    return eng, last
