"""Sensor and gateway faults, for every kind: dropout, gateway death, stuck value, spikes,
drift and out-of-range readings.

A stuck sensor reports exactly the same value (its clean-air level, as a covered or
wrapped probe would) for the whole fault; a dead gateway stops every sensor behind it
and its MQTT connection drops, so the broker publishes its last will ``offline``.
"""

from __future__ import annotations

import math

import numpy as np

from plantwatch.domain import KINDS
from simulators.index import Index, intp
from simulators.shapes import F64, Effect, Overlay, Shape, step
from simulators.spec import EventSpec, ScenarioError


def _every(period_s: float, duration_s: float) -> Shape:
    """1 at t = 0, period, 2·period, ... inside [0, duration), else 0."""

    def f(t: F64) -> F64:
        k = t / period_s
        hit = (np.abs(k - np.round(k)) < 1e-9) & (t >= 0.0) & (t < duration_s)
        return hit.astype(np.float64)

    return f


def _linear(duration_s: float) -> Shape:
    def f(t: F64) -> F64:
        return np.where((t >= 0.0) & (t < duration_s), np.clip(t / duration_s, 0.0, 1.0), 0.0)

    return f


def _window(ev: EventSpec, ix: Index) -> tuple[int, int]:
    start = ix.start_ms + round(ev.start_s * 1000)
    return start, start + round(ev.duration_s * 1000)


def dropout(ev: EventSpec, ix: Index, where: str) -> Effect:
    cols = ix.event_cols(ev, where)
    lo, hi = _window(ev, ix)
    return Effect(mask=[(intp(cols), lo, hi)])


def gateway_death(ev: EventSpec, ix: Index, where: str) -> Effect:
    if not ev.device_id:
        raise ScenarioError(where, "gateway_death needs device_id")
    cols = [i for i, s in enumerate(ix.sensors)
            if s.enterprise_id == ev.enterprise_id and s.device_id == ev.device_id]
    if not cols:
        raise ScenarioError(where, f"no sensors on gateway {ev.enterprise_id}/{ev.device_id}")
    lo, hi = _window(ev, ix)
    dev = (ev.enterprise_id, ev.device_id)
    return Effect(mask=[(intp(cols), lo, hi)], status=[(lo, dev, False), (hi, dev, True)])


def stuck(ev: EventSpec, ix: Index, where: str) -> Effect:
    eff = Effect()
    lo, hi = _window(ev, ix)
    for c in ix.event_cols(ev, where):
        m = ix.models[c]
        value = round(ev.intensity if ev.intensity is not None else m.level, m.decimals)
        eff.post.append(Overlay(intp([c]), "set", value, step(ev.duration_s, 0.0), lo, lo, hi))
    return eff


def spike(ev: EventSpec, ix: Index, where: str) -> Effect:
    eff = Effect()
    lo, hi = _window(ev, ix)
    for c in ix.event_cols(ev, where):
        s = ix.sensors[c]
        spec = KINDS[s.kind]
        amount = ev.intensity if ev.intensity is not None else spec.lo + 0.6 * (spec.hi - spec.lo)
        iv_ms = round(s.interval_s * 1000)
        first = ix.start_ms + math.ceil((lo - ix.start_ms) / iv_ms) * iv_ms  # first reading time
        every = float(ev.params.get("every_s", max(3 * s.interval_s, ev.duration_s / 3)))
        every = max(1, round(every / s.interval_s)) * s.interval_s
        eff.post.append(Overlay(intp([c]), "set", amount, _every(every, (hi - first) / 1000.0), first, lo, hi))
    return eff


def drift(ev: EventSpec, ix: Index, where: str) -> Effect:
    eff = Effect()
    lo, hi = _window(ev, ix)
    for c in ix.event_cols(ev, where):
        m = ix.models[c]
        spec = KINDS[ix.sensors[c].kind]
        amount = ev.intensity if ev.intensity is not None else (
            -0.5 * m.level if m.level > 0 else 0.1 * (spec.hi - spec.lo))
        eff.post.append(Overlay(intp([c]), "add", amount, _linear(ev.duration_s), lo, lo, hi))
    return eff


def out_of_range(ev: EventSpec, ix: Index, where: str) -> Effect:
    eff = Effect()
    lo, hi = _window(ev, ix)
    for c in ix.event_cols(ev, where):
        spec = KINDS[ix.sensors[c].kind]
        amount = ev.intensity if ev.intensity is not None else spec.hi + 0.1 * (spec.hi - spec.lo)
        if spec.lo <= amount <= spec.hi:
            raise ScenarioError(where, f"out_of_range intensity {amount} is inside {spec.lo}..{spec.hi}")
        eff.post.append(Overlay(intp([c]), "set", amount, step(ev.duration_s, 0.0), lo, lo, hi))
    return eff


FAULTS = {
    "dropout": dropout,
    "gateway_death": gateway_death,
    "stuck": stuck,
    "spike": spike,
    "drift": drift,
    "out_of_range": out_of_range,
}
