"""The DOMAIN.md default rules a single sensor's readings can be checked against.

Only rules with clear numbers are listed; rules that need learning (P95 of load),
cross-sensor context (two detectors, fan running) or vague durations ("held") are
left out, so a label never claims more than the defaults clearly imply. The one
compound rule kept is a critical feeder at 0 A while the enterprise produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from plantwatch.domain import Level
from simulators.gas import O2_NORMAL
from simulators.shapes import F64
from simulators.spec import EnterpriseSpec, SensorSpec

Op = Literal["ge", "gt", "le", "lt", "absdev_ge", "reldev_ge"]


@dataclass(frozen=True, slots=True)
class Rule:
    """``value op threshold`` held for ``hold_s`` seconds raises ``level``.

    ``absdev_ge``: |value − ref| ≥ threshold; ``reldev_ge``: |value/ref − 1| ≥ threshold.
    ``needs_production``: only while the enterprise's production factor is ≥ 0.5.
    """

    level: Level
    op: Op
    threshold: float
    name: str
    ref: float = 0.0
    hold_s: float = 0.0
    needs_production: bool = False

    def test(self, v: F64, margin: F64 | float = 0.0) -> npt.NDArray[np.bool_]:
        """Where the rule's condition holds with ``margin`` (unit of the value) to spare."""
        thr = self.threshold
        if self.op == "ge":
            return v - margin >= thr
        if self.op == "gt":
            return v - margin > thr
        if self.op == "le":
            return v + margin <= thr
        if self.op == "lt":
            return v + margin < thr
        if self.op == "absdev_ge":
            return np.abs(v - self.ref) - margin >= thr
        return np.abs(v - self.ref) - margin >= thr * abs(self.ref)


def _high(kind: str, levels: dict[Level, float], s: SensorSpec) -> list[Rule]:
    out = []
    for lv, thr in levels.items():
        thr = float(s.thresholds.get(lv.label, thr))
        out.append(Rule(lv, "ge", thr, f"{kind}.{lv.label}"))
    return out


def rules_for(s: SensorSpec, ent: EnterpriseSpec) -> list[Rule]:
    """Rules for a sensor whose params are filled in (see ``model.fill_sensor``)."""
    k, p = s.kind, s.params
    B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED  # noqa: E741
    if k == "gas.combustible":
        return [*_high(k, {B: 10.0, Y: 25.0, O: 50.0}, s),
                Rule(R, "ge", float(s.thresholds.get("orange", 50.0)), "stage2_held_60s", hold_s=60.0)]
    if k == "gas.hydrogen":
        return _high(k, {B: 10.0, Y: 25.0, O: 50.0}, s)
    if k == "gas.toxic":
        oel = float(p["oel_ppm"])
        return _high(k, {B: 0.5 * oel, Y: oel, O: 2.0 * oel}, s)
    if k == "gas.oxygen":
        return [Rule(B, "absdev_ge", 0.5, "o2.drift", ref=O2_NORMAL), Rule(Y, "lt", 19.5, "o2.low"),
                Rule(Y, "gt", 23.5, "o2.high"), Rule(O, "lt", 18.0, "o2.low2"), Rule(R, "lt", 16.0, "o2.low3"),
                Rule(R, "gt", 25.0, "o2.high3")]
    if k in ("dust.hopper_temperature", "dust.inlet_temperature"):
        return _high(k, {B: float(p["baseline"]) + 15.0, Y: 60.0, O: 70.0}, s)
    if k == "dust.pressure_diff":
        b = float(p["baseline"])
        return [Rule(B, "reldev_ge", 0.10, "dp.10pct", ref=b), Rule(Y, "reldev_ge", 0.20, "dp.20pct_5min", ref=b,
                                                                      hold_s=300.0),
                Rule(O, "reldev_ge", 0.40, "dp.40pct", ref=b)]
    if k == "dust.spark":
        return [Rule(Y, "ge", 1.0, "spark"), Rule(O, "ge", 3.0, "spark.3_per_min")]
    if k in ("dust.rotary_valve", "dust.isolation_valve"):
        return [Rule(O, "ge", 0.5, "valve.fault"), Rule(R, "ge", 0.5, "valve.fault_10min", hold_s=600.0)]
    if k in ("dust.water_level", "dust.water_flow"):
        lim = float(p["low_limit"])
        return [Rule(Y, "lt", lim, "water.low"), Rule(O, "lt", lim, "water.low_2min", hold_s=120.0)]
    if k == "power.residual_current":
        return _high(k, {B: 200.0, Y: 300.0, O: 500.0}, s)
    if k == "power.active_power":
        cap = float(p["capacity"])
        rules = [Rule(Y, "gt", 1.10 * cap, "overload.110"), Rule(O, "gt", 1.25 * cap, "overload.125_1h",
                                                                  hold_s=3600.0)]
        if ent.production_status == "suspended":
            rules.append(Rule(B, "gt", 1.2 * float(p["baseline"]), "suspended.+20pct"))
        return rules
    if k == "power.feeder_current" and p.get("critical"):
        return [Rule(R, "le", 0.0, "critical_feeder.zero", needs_production=True)]
    return []


def longest_run_s(t_ms: npt.NDArray[np.int64], ok: npt.NDArray[np.bool_]) -> float:
    """Longest span (s, last − first sample) of consecutive ``ok`` samples; −1 if none."""
    if not ok.any():
        return -1.0
    # split into runs of consecutive True
    idx = np.flatnonzero(ok)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    return float((t_ms[ends] - t_ms[starts]).max()) / 1000.0


SPARK_WINDOW_S = 60.0


def rule_series(kind: str, t_ms: npt.NDArray[np.int64], v: F64) -> F64:
    """The series the rules of ``kind`` look at: spark counts become counts per the last
    60 s (the "≥3 sparks/min" rule); every other kind is read as is."""
    if kind != "dust.spark" or v.size == 0:
        return v
    c = np.concatenate(([0.0], np.cumsum(v)))
    first = np.searchsorted(t_ms, t_ms - round(SPARK_WINDOW_S * 1000), side="right")
    out: F64 = c[1:] - c[first]
    return out
