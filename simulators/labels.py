"""Ground-truth labels: what was injected, where, when, and the least a correct system raises.

A label's ``min_level`` is derived from the noise-free model, not declared: a DOMAIN.md
default rule (see :mod:`simulators.levels`) counts only if its condition holds with
4 σ of sensor noise to spare for at least ``max(rule hold, 30 s)`` plus one reporting
interval. Faults: a dropout or dead gateway longer than 3 reporting intervals + 60 s
claims blue (offline > 3× interval); a stuck sensor claims orange only past 25 h (flat
> 24 h); spikes and out-of-range readings claim nothing (a correct system may
suppress them); a drift claims whatever its readings cross.

File format: JSON lines, one object per label (see docs/simulators.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plantwatch.domain import Level
from simulators.levels import longest_run_s, rule_series, rules_for
from simulators.model import Plant
from simulators.shapes import Effect
from simulators.spec import EventSpec

MIN_HOLD_S = 30.0
NOISE_SIGMAS = 4.0
STUCK_ORANGE_S = 25 * 3600.0


@dataclass(frozen=True, slots=True)
class Label:
    """One injected incident or fault. Times are epoch ms; ``end_ms`` is when the cause
    stops and ``settle_ms`` when readings are back to normal."""

    id: str
    category: str
    kind: str
    enterprise_id: str
    device_id: str
    sensors: tuple[str, ...]
    start_ms: int
    end_ms: int
    settle_ms: int
    min_level: Level
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "kind": self.kind,
                "enterprise_id": self.enterprise_id, "device_id": self.device_id,
                "sensors": list(self.sensors), "start_ms": self.start_ms, "end_ms": self.end_ms,
                "settle_ms": self.settle_ms, "min_level": self.min_level.label, "rule": self.rule}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        lvl = Level.NONE if d["min_level"] == "none" else Level.parse(d["min_level"])
        return cls(str(d["id"]), str(d["category"]), str(d["kind"]), str(d["enterprise_id"]),
                   str(d.get("device_id", "")), tuple(d["sensors"]), int(d["start_ms"]), int(d["end_ms"]),
                   int(d["settle_ms"]), lvl, str(d.get("rule", "")))


def write_labels(labels: Iterable[Label], path: Path) -> None:
    """Write labels as JSON lines."""
    with path.open("w", encoding="utf-8") as f:
        for lab in labels:
            f.write(json.dumps(lab.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")


def read_labels(path: Path) -> list[Label]:
    """Read a JSON-lines label file."""
    with path.open(encoding="utf-8") as f:
        return [Label.from_dict(json.loads(line)) for line in f if line.strip()]


def _event_cols(plant: Plant, ev: EventSpec, eff: Effect) -> list[int]:
    cols: set[int] = set()
    for ov in (*eff.overlays, *eff.post):
        cols.update(int(c) for c in ov.cols)
    for mcols, _, _ in eff.mask:
        cols.update(int(c) for c in mcols)
    if eff.prod:  # production incidents show on the enterprise's power sensors
        cols.update(i for i, s in enumerate(plant.sensors)
                    if s.enterprise_id == ev.enterprise_id and s.kind.startswith("power."))
    return sorted(cols)


def _claim(plant: Plant, cols: list[int], lo_ms: int, hi_ms: int) -> tuple[Level, str]:
    """Highest level whose rule the noise-free readings of ``cols`` satisfy with margin."""
    if not cols:
        return Level.NONE, ""
    idx = np.asarray(cols, dtype=np.intp)
    tick0, tick1 = plant.tick_of(lo_ms), plant.tick_of(hi_ms) + 1
    blocks = list(plant.blocks(noise=False, cols=idx, tick0=tick0, tick1=tick1))
    if not blocks:
        return Level.NONE, ""
    t = np.concatenate([b.t_ms for b in blocks])
    v = np.concatenate([b.values for b in blocks])
    due = np.concatenate([b.due for b in blocks])
    prod = np.concatenate([b.prod for b in blocks])
    best, best_rule = Level.NONE, ""
    for j, c in enumerate(cols):
        s, m = plant.sensors[c], plant.models[c]
        ent = plant.enterprises[plant.ent[c]]
        d = due[:, j]
        tt, vv, pp = t[d], v[d, j], prod[d, plant.ent[c]]
        if tt.size == 0:
            continue
        sigma = np.hypot(m.noise_sd, m.noise_rel * vv)
        margin = NOISE_SIGMAS * sigma + np.where(sigma > 0, 10.0 ** -m.decimals, 0.0)
        vv = rule_series(s.kind, tt, vv)
        if s.kind == "dust.spark":
            margin = np.zeros_like(vv)  # counts are exact
        for rule in rules_for(s, ent):
            if rule.level <= best:
                continue
            ok = rule.test(vv, margin)
            if rule.needs_production:
                ok &= pp >= 0.6
            if longest_run_s(tt, ok) >= max(rule.hold_s, MIN_HOLD_S) + s.interval_s:
                best, best_rule = rule.level, rule.name
    return best, best_rule


def derive_labels(plant: Plant) -> list[Label]:
    """Labels for every event of a compiled plant, in declaration order."""
    out: list[Label] = []
    for i, (ev, eff) in enumerate(plant.events):
        start = plant.start_ms + round(ev.start_s * 1000)
        end = start + round(ev.duration_s * 1000)
        settle = end + round(eff.tail_s * 1000)
        cols = _event_cols(plant, ev, eff)
        level, rule = Level.NONE, ""
        if ev.kind in ("dropout", "gateway_death"):
            worst_iv = max(plant.sensors[c].interval_s for c in cols)
            if ev.duration_s >= 3 * worst_iv + 60.0:
                level, rule = Level.BLUE, "offline.3x_interval"
        elif ev.kind == "stuck":
            if ev.duration_s >= STUCK_ORANGE_S:
                level, rule = Level.ORANGE, "flat.24h"
        elif ev.kind in ("spike", "out_of_range"):
            pass
        else:
            level, rule = _claim(plant, cols, start, settle)
        device = ev.device_id or (plant.sensors[cols[0]].device_id if cols else "")
        out.append(Label(f"L{i:04d}", ev.category, ev.kind, ev.enterprise_id, device,
                         tuple(plant.sensors[c].id for c in cols), start, end, settle, level, rule))
    return out
