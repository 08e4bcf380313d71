"""Gas-detection plant model: combustible, toxic, oxygen and hydrogen detectors in areas.

Normal air: a few tenths of %LEL with slow drift, toxic gas at ~3 % of its OEL, oxygen at
20.9 %VOL. A leak grows as a first-order rise at its source detector and reaches the
other detectors of the same area later (``delay_s`` per rank) and weaker (``spread``
per rank), then decays once the leak is stopped.
"""

from __future__ import annotations

from typing import Any

from simulators.index import Index, intp
from simulators.shapes import Effect, Overlay, SensorModel, rise
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

#: Occupational exposure limits in ppm (DOMAIN.md, GBZ 2.1 as recalled there).
OEL_PPM: dict[str, float] = {"H2S": 7.0, "CO": 17.0, "NH3": 28.0, "Cl2": 0.3}
O2_NORMAL = 20.9  # %VOL

LEAK_KINDS = ("gas.combustible", "gas.hydrogen", "gas.toxic")


def sensor_defaults(s: SensorSpec, ent: EnterpriseSpec) -> tuple[dict[str, Any], SensorModel]:
    """Registry params with defaults filled in, and the normal-behaviour model."""
    p = dict(s.params)
    if s.kind == "gas.combustible":
        return p, SensorModel(level=0.5, noise_sd=0.25, drift_amp=0.4, decimals=2)
    if s.kind == "gas.hydrogen":
        return p, SensorModel(level=0.3, noise_sd=0.2, drift_amp=0.3, decimals=2)
    if s.kind == "gas.toxic":
        gas = str(p.setdefault("gas", "H2S"))
        oel = float(p.setdefault("oel_ppm", OEL_PPM.get(gas, 10.0)))
        return p, SensorModel(level=0.03 * oel, noise_sd=0.012 * oel, drift_amp=0.02 * oel, decimals=3)
    if s.kind == "gas.oxygen":
        return p, SensorModel(level=O2_NORMAL, noise_sd=0.03, drift_amp=0.1, decimals=2)
    raise ScenarioError(f"sensor {s.id}", f"not a gas kind: {s.kind}")


def _leak(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, LEAK_KINDS)
    src = cols[0]
    kind = ix.sensors[src].kind
    if len(cols) == 1:  # neighbours: the other detectors of the same kind in the area
        s = ix.sensors[src]
        cols += [c for c in ix.of_kind(s.enterprise_id, [kind], s.area) if c != src and s.area]
    if ev.intensity is not None:
        peak = ev.intensity
    elif kind == "gas.toxic":
        peak = 3.0 * float(ix.sensors[src].params["oel_ppm"])
    else:
        peak = 70.0
    tau = float(ev.params.get("rise_s", 30.0))
    decay = float(ev.params.get("decay_s", 60.0))
    delay = float(ev.params.get("delay_s", 20.0))
    spread = float(ev.params.get("spread", 0.5))
    eff = Effect(tail_s=5.0 * decay + delay * (len(cols) - 1))
    for rank, c in enumerate(cols):
        start, lo, hi = ix.window(ev, eff.tail_s)
        d_ms = round(rank * delay * 1000)
        amount = peak * spread**rank - ix.models[c].level
        eff.overlays.append(Overlay(intp([c]), "add", amount, rise(ev.duration_s, tau, decay),
                                    start + d_ms, lo, hi + d_ms))
    return eff


def _oxygen(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where, ["gas.oxygen"])
    default = 17.0 if ev.kind == "oxygen_deficiency" else 24.0
    target = ev.intensity if ev.intensity is not None else default
    tau = float(ev.params.get("rise_s", 30.0))
    decay = float(ev.params.get("decay_s", 60.0))
    eff = Effect(tail_s=5.0 * decay)
    start, lo, hi = ix.window(ev, eff.tail_s)
    eff.overlays.append(Overlay(intp(cols), "add", target - O2_NORMAL, rise(ev.duration_s, tau, decay),
                                start, lo, hi))
    return eff


INCIDENTS = {"gas_leak": _leak, "oxygen_deficiency": _oxygen, "oxygen_enrichment": _oxygen}
