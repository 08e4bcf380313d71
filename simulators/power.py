"""Power-monitoring plant model: an enterprise main meter, feeders and residual current.

Load follows the enterprise's production factor p(t) ∈ [0, 1] (weekly shift profile in
local time, zero under a suspension order, halved under a production limit): main meter = baseline + coupling·p, with
baseline ≈ 10 % and full production ≈ 75 % of the registered capacity. Ordinary feeders
carry a share of the production load; critical feeders (ventilation, refrigeration)
run around the clock. Incidents raise p (suspension breach, night production,
overload), cut a critical feeder to exactly 0 A, or let residual current creep up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulators.index import Index, intp
from simulators.shapes import F64, Effect, Overlay, ProdOverlay, SensorModel, ramp, step
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

KW_TO_A = 1000.0 / (math.sqrt(3.0) * 400.0 * 0.9)  # 400 V three-phase, cos φ 0.9
BASE_SHARE = 0.10  # idle/suspended load as a share of capacity
PROD_SHARE = 0.65  # production load on top of it
LIMITED_SHARE = 0.5  # production factor under a production limit


def _weekly(schedule: str) -> tuple[F64, F64]:
    """Breakpoints (hour of week from Monday 00:00 local, production factor)."""
    pts: list[tuple[float, float]] = [(0.0, 0.0)]
    if schedule == "continuous":
        return np.array([0.0, 168.0]), np.array([1.0, 1.0])
    if schedule == "off":
        return np.array([0.0, 168.0]), np.array([0.0, 0.0])
    for d in range(7):
        h = 24.0 * d
        if schedule == "shifts" and d < 5:
            pts += [(h + 7.5, 0.0), (h + 8, 1.0), (h + 12, 1.0), (h + 12.25, 0.7), (h + 12.75, 0.7),
                    (h + 13, 1.0), (h + 20, 1.0), (h + 20.5, 0.0)]
        elif schedule == "shifts" and d == 5:
            pts += [(h + 7.5, 0.0), (h + 8, 0.6), (h + 14, 0.6), (h + 14.5, 0.0)]
        elif schedule == "day" and d < 5:
            pts += [(h + 7.5, 0.0), (h + 8, 1.0), (h + 17, 1.0), (h + 17.5, 0.0)]
    pts.append((168.0, 0.0))
    arr = np.array(pts)
    return arr[:, 0].copy(), arr[:, 1].copy()


def production(t_ms: F64, ent: EnterpriseSpec, tz_offset_h: float) -> F64:
    """Scheduled production factor of ``ent`` at epoch times ``t_ms`` (ms)."""
    if ent.production_status == "suspended":
        return np.zeros_like(t_ms, dtype=np.float64)
    xs, ys = _weekly(ent.schedule)
    local_s = t_ms / 1000.0 + tz_offset_h * 3600.0
    days = np.floor(local_s / 86400.0)
    how = ((days + 3.0) % 7.0) * 24.0 + (local_s - days * 86400.0) / 3600.0  # 1970-01-01 was a Thursday
    p: F64 = np.interp(how, xs, ys)
    if ent.production_status == "limited":
        p *= LIMITED_SHARE
    return p


def sensor_defaults(s: SensorSpec, ent: EnterpriseSpec) -> tuple[dict[str, Any], SensorModel]:
    """Registry params with defaults filled in, and the normal-behaviour model."""
    p = dict(s.params)
    cap = float(p.get("capacity", ent.capacity_kw)) if s.kind == "power.active_power" else ent.capacity_kw
    if s.kind == "power.active_power":
        p["capacity"] = cap
        base = float(p.setdefault("baseline", round(BASE_SHARE * cap, 1)))
        return p, SensorModel(level=base, coupling=PROD_SHARE * cap, noise_rel=0.015, decimals=1)
    if s.kind == "power.feeder_current":
        critical = bool(p.setdefault("critical", False))
        if critical:
            level = float(p.setdefault("load_kw", round(0.05 * cap, 1))) * KW_TO_A
            coupling = 0.0
        else:
            share = float(p.setdefault("share", 0.3))
            level = 0.02 * cap * share * KW_TO_A
            coupling = share * PROD_SHARE * cap * KW_TO_A
        p.setdefault("capacity", float(round(1.5 * (level + coupling))))
        return p, SensorModel(level=level, coupling=coupling, noise_rel=0.02, decimals=1)
    if s.kind == "power.residual_current":
        return p, SensorModel(level=30.0, coupling=15.0, noise_sd=3.0, decimals=1)
    raise ScenarioError(f"sensor {s.id}", f"not a power kind: {s.kind}")


def _meters(ev: EventSpec, ix: Index, where: str) -> list[int]:
    if ev.sensors:
        return ix.event_cols(ev, where, ["power.active_power"])
    meters = ix.of_kind(ev.enterprise_id, ["power.active_power"])
    if not meters:
        raise ScenarioError(where, f"{ev.kind} needs a power.active_power meter in {ev.enterprise_id}")
    return meters


def _production(ev: EventSpec, ix: Index, where: str) -> Effect:
    ent = ix.ent(ev.enterprise_id, where)
    if ev.kind == "suspension_violation" and ent.production_status != "suspended":
        raise ScenarioError(where, f"suspension_violation needs enterprise {ent.id} to be suspended")
    meters = _meters(ev, ix, where)
    edge = float(ev.params.get("edge_s", min(600.0, ev.duration_s / 4.0)))
    if ev.kind == "overload":
        m, spec = ix.models[meters[0]], ix.sensors[meters[0]]
        ratio = ev.intensity if ev.intensity is not None else 1.3
        target = (ratio * float(spec.params["capacity"]) - m.level) / m.coupling
    else:
        target = ev.intensity if ev.intensity is not None else 0.8
    eff = Effect(tail_s=edge)
    start, lo, hi = ix.window(ev, edge)
    eff.prod.append(ProdOverlay(ix.ent_idx[ent.id], target, step(ev.duration_s, edge), start, lo, hi))
    return eff


def _feeder_loss(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["power.feeder_current"])
    for c in cols:
        if not ix.sensors[c].params.get("critical"):
            raise ScenarioError(where, f"critical_feeder_loss: feeder {ix.sensors[c].id} is not critical")
    edge = float(ev.params.get("edge_s", 2.0))
    eff = Effect(tail_s=edge)
    start, lo, hi = ix.window(ev, edge)
    eff.overlays.append(Overlay(intp(cols), "scale", 0.0, step(ev.duration_s, edge), start, lo, hi))
    return eff


def _residual(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["power.residual_current"])
    peak = ev.intensity if ev.intensity is not None else 550.0
    decay = float(ev.params.get("decay_s", 120.0))
    eff = Effect(tail_s=5.0 * decay)
    start, lo, hi = ix.window(ev, eff.tail_s)
    shape = ramp(ev.duration_s, float(ev.params.get("ramp_s", 0.5 * ev.duration_s)), decay)
    for c in cols:
        m = ix.models[c]
        eff.overlays.append(Overlay(intp([c]), "add", peak - m.level - m.coupling, shape, start, lo, hi))
    return eff


INCIDENTS = {
    "suspension_violation": _production,
    "night_production": _production,
    "overload": _production,
    "critical_feeder_loss": _feeder_loss,
    "residual_current_rise": _residual,
}
