"""Replay a recorded series through exactly the service's detectors (pure; no I/O).

One :class:`~alerts.engine.AlarmEngine` with one registered sensor sees the readings in
the order given, each as the service would: the wall-clock timers (``tick``) run at the
reading's timestamp whenever at least ``tick_ms`` passed since the last tick, then the
reading is evaluated with ``now_ms`` = its timestamp. After each reading the output row
holds the sensor's anomaly score (0 before the scorer has seen an in-order reading) and
its highest level over all rules at that moment. A non-finite value is not evaluated
(the service rejects it) and its row repeats the current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.engine import AlarmEngine
from plantwatch.domain import Level, kind_spec
from plantwatch.registry import Registry

REPLAY_ENTERPRISE = "replay"
REPLAY_SENSOR = "replay"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Per input row: ``score`` in [0, 1], ``level`` (int8 :class:`Level`), and which rule
    decided the level (``rule``, "" at none). ``interval_s`` is the reporting interval used."""

    score: npt.NDArray[np.float64]
    level: npt.NDArray[np.int8]
    rule: list[str]
    interval_s: float


def infer_interval_s(ts_ms: npt.NDArray[np.int64], kind: str) -> float:
    """The kind's default reporting interval, or the series' median spacing when that is
    longer (a series recorded every 5 min must not look dead between its readings)."""
    default = kind_spec(kind).interval_s
    if len(ts_ms) < 2:
        return default
    d = np.diff(np.sort(ts_ms))
    d = d[d > 0]
    return max(default, float(np.median(d)) / 1000.0) if len(d) else default


def build_registry(kind: str, rules: dict[str, Any] | None, interval_s: float) -> Registry:
    """A registry of one enterprise and one sensor of ``kind``; ``rules`` holds optional
    ``sensor`` (thresholds, params, interval_s, unit) and ``enterprise`` (capacity_kw,
    production_status) tables, validated like the service's config file."""
    rules = dict(rules or {})
    unknown = set(rules) - {"sensor", "enterprise"}
    if unknown:
        raise ValueError(f"rules: unknown table(s) {sorted(unknown)}; expected [sensor] and/or [enterprise]")
    sensor = {"interval_s": interval_s, **dict(rules.get("sensor") or {}),
              "enterprise_id": REPLAY_ENTERPRISE, "id": REPLAY_SENSOR, "kind": kind}
    enterprise = {**dict(rules.get("enterprise") or {}), "id": REPLAY_ENTERPRISE}
    reg = Registry()
    reg.load({"enterprise": [enterprise], "sensor": [sensor]}, where="rules")
    return reg


def replay(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64], kind: str,
           rules: dict[str, Any] | None = None, *, tick_ms: int = 1000) -> ReplayResult:
    """Run one series through the alarm engine, reading by reading (see module docstring)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if ts.shape != v.shape or ts.ndim != 1:
        raise ValueError(f"timestamps and values must be 1-D of equal length, got {ts.shape} and {v.shape}")
    interval = infer_interval_s(ts, kind)
    reg = build_registry(kind, rules, interval)
    engine = AlarmEngine(reg.sensors, reg.enterprises)
    row = np.zeros(1, np.int32)
    n = len(ts)
    score = np.zeros(n)
    level = np.zeros(n, np.int8)
    rule: list[str] = [""] * n
    names = engine.rule_names
    last_tick: int | None = None
    for i in range(n):
        t = int(ts[i])
        if last_tick is None or t - last_tick >= tick_ms:
            engine.tick(t)
            last_tick = t
        if np.isfinite(v[i]):  # the service rejects non-finite readings; they change nothing
            engine.evaluate(row, ts[i:i + 1], v[i:i + 1], t)
        lv = engine.levels()[0]
        j = int(np.argmax(lv))
        level[i] = lv[j]
        if lv[j] > 0:
            rule[i] = names[j]
        s = float(engine.anomaly_scores(row)[0])
        score[i] = min(max(s, 0.0), 1.0) if np.isfinite(s) else 0.0
    return ReplayResult(score, level, rule, interval)


def level_label(level: int) -> str:
    """Wire name of an int level (``none`` .. ``red``)."""
    return Level(int(level)).label
