"""Shared helpers for simulator tests: collect noisy readings and check rules on them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from plantwatch.domain import Level
from simulators.labels import Label
from simulators.levels import Rule, longest_run_s, rule_series, rules_for
from simulators.model import Plant

START_MS = 1_795_388_400_000  # Monday 2026-11-23 07:00 +08:00


def series(plant: Plant, cols: Sequence[int]) -> dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                                                                 npt.NDArray[np.float64]]]:
    """Noisy reported (t_ms, value, production of its enterprise) per column, whole stream."""
    ts: dict[int, list[npt.NDArray[np.int64]]] = {c: [] for c in cols}
    vs: dict[int, list[npt.NDArray[np.float64]]] = {c: [] for c in cols}
    ps: dict[int, list[npt.NDArray[np.float64]]] = {c: [] for c in cols}
    for b in plant.blocks():
        for c in cols:
            d = b.due[:, c]
            ts[c].append(b.t_ms[d])
            vs[c].append(b.values[d, c])
            ps[c].append(b.prod[d, plant.ent[c]])
    return {c: (np.concatenate(ts[c]), np.concatenate(vs[c]), np.concatenate(ps[c])) for c in cols}


def rule_holds(rule: Rule, kind: str, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64],
               p: npt.NDArray[np.float64]) -> bool:
    """Whether the rule's condition holds on these readings for at least its hold time."""
    if t.size == 0:
        return False
    ok = rule.test(rule_series(kind, t, v))
    if rule.needs_production:
        ok &= p >= 0.5
    return longest_run_s(t, ok) >= rule.hold_s


def crossed_level(plant: Plant, label: Label, data: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                                                                    npt.NDArray[np.float64]]]) -> Level:
    """Highest level any rule reaches on the label's sensors inside [start, settle]."""
    best = Level.NONE
    for sid in label.sensors:
        c = plant.index.cols[(label.enterprise_id, sid)]
        t, v, p = data[c]
        w = (t >= label.start_ms) & (t <= label.settle_ms)
        s = plant.sensors[c]
        for rule in rules_for(s, plant.enterprises[plant.ent[c]]):
            if rule.level > best and rule_holds(rule, s.kind, t[w], v[w], p[w]):
                best = rule.level
    return best
