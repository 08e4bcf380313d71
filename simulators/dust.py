"""Dust-explosion plant model: dry collectors (temperatures, filter pressure difference,
duct air velocity, sparks, valves) and wet collectors (water level and flow, hydrogen).

Collectors run continuously. The pressure difference is relative to the commissioning
``baseline`` (Pa) and scales with the square of the air velocity, so an airflow loss
also collapses it.
"""

from __future__ import annotations

from typing import Any

from simulators.index import Index, intp
from simulators.shapes import Effect, Overlay, SensorModel, ramp, step
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

#: Per-reading multipliers of a spark shower's intensity (deterministic, max 1.5).
SPARK_PATTERN = (1.0, 0.5, 1.5, 0.75, 1.25)


def sensor_defaults(s: SensorSpec, ent: EnterpriseSpec) -> tuple[dict[str, Any], SensorModel]:
    """Registry params with defaults filled in, and the normal-behaviour model."""
    p = dict(s.params)
    k = s.kind
    if k in ("dust.hopper_temperature", "dust.inlet_temperature"):
        base = float(p.setdefault("baseline", 35.0 if k == "dust.hopper_temperature" else 30.0))
        return p, SensorModel(level=base, noise_sd=0.3, drift_amp=2.0, drift_period_s=86400.0, decimals=1)
    if k == "dust.pressure_diff":
        base = float(p.setdefault("baseline", 1200.0))
        return p, SensorModel(level=base, noise_rel=0.01, drift_amp=0.02 * base, decimals=0)
    if k == "dust.air_velocity":
        return p, SensorModel(level=18.0, noise_sd=0.2, drift_amp=0.3, decimals=2)
    if k in ("dust.spark", "dust.rotary_valve", "dust.isolation_valve"):
        return p, SensorModel(level=0.0, decimals=0)
    if k == "dust.water_level":
        p.setdefault("low_limit", 0.8)
        return p, SensorModel(level=1.2, noise_sd=0.01, drift_amp=0.03, decimals=3)
    if k == "dust.water_flow":
        p.setdefault("low_limit", 20.0)
        return p, SensorModel(level=30.0, noise_sd=0.5, drift_amp=1.0, decimals=2)
    raise ScenarioError(f"sensor {s.id}", f"not a dust kind: {s.kind}")


def _params(ev: EventSpec, name: str, default: float) -> float:
    return float(ev.params.get(name, default))


def _clogging(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.pressure_diff"])
    factor = ev.intensity if ev.intensity is not None else 1.5
    decay = _params(ev, "decay_s", 60.0)
    eff = Effect(tail_s=5.0 * decay)
    start, lo, hi = ix.window(ev, eff.tail_s)
    shape = ramp(ev.duration_s, _params(ev, "ramp_s", 0.5 * ev.duration_s), decay)
    eff.overlays.append(Overlay(intp(cols), "scale", factor, shape, start, lo, hi))
    return eff


def _rupture(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.pressure_diff"])
    factor = ev.intensity if ev.intensity is not None else 0.05
    edge = _params(ev, "edge_s", 5.0)
    eff = Effect(tail_s=edge)
    start, lo, hi = ix.window(ev, eff.tail_s)
    eff.overlays.append(Overlay(intp(cols), "scale", factor, step(ev.duration_s, edge), start, lo, hi))
    return eff


def _smoulder(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.hopper_temperature", "dust.inlet_temperature"])
    peak = ev.intensity if ev.intensity is not None else 80.0
    decay = _params(ev, "decay_s", 300.0)
    eff = Effect(tail_s=5.0 * decay)
    start, lo, hi = ix.window(ev, eff.tail_s)
    shape = ramp(ev.duration_s, _params(ev, "ramp_s", 0.5 * ev.duration_s), decay)
    for c in cols:
        eff.overlays.append(Overlay(intp([c]), "add", peak - ix.models[c].level, shape, start, lo, hi))
    return eff


def _sparks(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.spark"])
    per_reading = ev.intensity if ev.intensity is not None else 4.0
    eff = Effect(tail_s=0.0)
    start, lo, hi = ix.window(ev, 0.0)
    eff.overlays.append(Overlay(intp(cols), "add", per_reading, step(ev.duration_s, 0.0), start, lo, hi,
                                pattern=SPARK_PATTERN))
    return eff


def _airflow(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.air_velocity", "dust.pressure_diff"])
    vel = [c for c in cols if ix.sensors[c].kind == "dust.air_velocity"]
    dp = [c for c in cols if ix.sensors[c].kind == "dust.pressure_diff"]
    if not dp:  # the filter behind the same duct sees the loss as well
        for c in vel:
            s = ix.sensors[c]
            dp += [d for d in ix.of_kind(s.enterprise_id, ["dust.pressure_diff"], s.area) if s.area]
    frac = ev.intensity if ev.intensity is not None else 0.3
    edge = _params(ev, "edge_s", 20.0)
    eff = Effect(tail_s=edge)
    start, lo, hi = ix.window(ev, eff.tail_s)
    shape = step(ev.duration_s, edge)
    if vel:
        eff.overlays.append(Overlay(intp(vel), "scale", frac, shape, start, lo, hi))
    if dp:
        eff.overlays.append(Overlay(intp(sorted(set(dp))), "scale", frac * frac, shape, start, lo, hi))
    return eff


def _water(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.water_level", "dust.water_flow"])
    frac = ev.intensity if ev.intensity is not None else 0.3
    decay = _params(ev, "decay_s", 60.0)
    eff = Effect(tail_s=5.0 * decay)
    start, lo, hi = ix.window(ev, eff.tail_s)
    shape = ramp(ev.duration_s, _params(ev, "ramp_s", 60.0), decay)
    eff.overlays.append(Overlay(intp(cols), "scale", frac, shape, start, lo, hi))
    return eff


def _valve(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["dust.rotary_valve", "dust.isolation_valve"])
    eff = Effect(tail_s=0.0)
    start, lo, hi = ix.window(ev, 0.0)
    eff.overlays.append(Overlay(intp(cols), "set", 1.0, step(ev.duration_s, 0.0), start, lo, hi))
    return eff


INCIDENTS = {
    "filter_clogging": _clogging,
    "bag_rupture": _rupture,
    "smouldering": _smoulder,
    "spark_shower": _sparks,
    "airflow_loss": _airflow,
    "water_loss": _water,
    "valve_fault": _valve,
}
