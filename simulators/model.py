"""Vectorised plant model: compiles a scenario into per-sensor arrays and generates readings
in blocks of (ticks × sensors) with numpy.

The stream is a sequence of ticks ``t = start + i·dt`` where ``dt`` is the greatest
common divisor of the reporting intervals; sensor j reports on ticks where
``i % period_j == 0``. Noise comes from one ``numpy.random.Generator`` seeded by the
scenario seed and is drawn a fixed-size block at a time, so the same scenario, seed
and start give the same stream whatever the publishing speed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt

from plantwatch.domain import KINDS
from simulators import dust, faults, gas, power
from simulators.index import Index
from simulators.shapes import F64, Effect, Overlay, SensorModel
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

Handler = Callable[[EventSpec, Index, str], Effect]

INCIDENT_HANDLERS: dict[str, Handler] = {
    **gas.INCIDENTS, **dust.INCIDENTS, **power.INCIDENTS, "hydrogen_buildup": gas.INCIDENTS["gas_leak"],
}
FAULT_HANDLERS: dict[str, Handler] = dict(faults.FAULTS)
_DEFAULTS = {"gas": gas.sensor_defaults, "dust": dust.sensor_defaults, "power": power.sensor_defaults}
_MODEL_FIELDS = {f.name for f in dataclasses.fields(SensorModel)}

BLOCK_VIRTUAL_MS = 60_000  # noise is drawn per block of this much virtual time


def fill_sensor(s: SensorSpec, ent: EnterpriseSpec, where: str) -> tuple[SensorSpec, SensorModel]:
    """The sensor with registry params and interval filled in, and its (overridden) model."""
    try:
        spec = KINDS[s.kind]
    except KeyError:
        raise ScenarioError(f"{where}.kind", f"unknown sensor kind {s.kind!r}") from None
    params, model = _DEFAULTS[spec.domain](s, ent)
    bad = set(s.model) - _MODEL_FIELDS
    if bad:
        raise ScenarioError(f"{where}.model", f"unknown model keys {sorted(bad)}; known: {sorted(_MODEL_FIELDS)}")
    if s.model:
        over: dict[str, Any] = {k: (int(v) if k == "decimals" else float(v)) for k, v in s.model.items()}
        model = dataclasses.replace(model, **over)
    interval = s.interval_s or spec.interval_s
    if interval <= 0 or round(interval * 1000) <= 0:
        raise ScenarioError(f"{where}.interval_s", f"expected a positive interval, got {interval!r}")
    return dataclasses.replace(s, params=params, interval_s=float(interval)), model


@dataclass(slots=True)
class Block:
    """Readings of ``k`` consecutive ticks for sensor columns ``cols``.

    ``values`` (k × m) holds a value for every (tick, column); ``due`` says which are
    actually reported. ``prod`` (k × enterprises) is the production factor.
    """

    tick0: int
    t_ms: npt.NDArray[np.int64]
    cols: npt.NDArray[np.intp]
    values: F64
    due: npt.NDArray[np.bool_]
    prod: F64


class Plant:
    """A scenario compiled to arrays, ready to generate readings from ``start_ms``."""

    def __init__(self, enterprises: Sequence[EnterpriseSpec], sensors: Sequence[SensorSpec],
                 events: Sequence[EventSpec], *, start_ms: int, duration_s: float, seed: int,
                 tz_offset_h: float = 8.0) -> None:
        self.enterprises = list(enterprises)
        ents = {e.id: e for e in self.enterprises}
        filled: list[SensorSpec] = []
        models: list[SensorModel] = []
        for i, s in enumerate(sensors):
            if s.enterprise_id not in ents:
                raise ScenarioError(f"sensor[{i}].enterprise_id", f"enterprise {s.enterprise_id!r} not declared")
            fs, m = fill_sensor(s, ents[s.enterprise_id], f"sensor[{i}]")
            filled.append(fs)
            models.append(m)
        if not filled:
            raise ScenarioError("sensor", "a scenario needs at least one sensor")
        self.sensors = filled
        self.models = models
        self.start_ms = int(start_ms)
        self.duration_ms = round(duration_s * 1000)
        self.seed = int(seed)
        self.tz_offset_h = tz_offset_h
        self.index = Index(filled, models, self.enterprises, self.start_ms)
        if len(self.index.cols) != len(filled):
            raise ScenarioError("sensor", "duplicate (enterprise_id, id) among sensors")

        n = len(filled)
        self.n = n
        self.level = np.array([m.level for m in models])
        self.coupling = np.array([m.coupling for m in models])
        self.noise_sd = np.array([m.noise_sd for m in models])
        self.noise_rel = np.array([m.noise_rel for m in models])
        self.drift_amp = np.array([m.drift_amp for m in models])
        self.drift_w = np.array([2 * math.pi / m.drift_period_s for m in models])
        self.drift_phi = np.random.default_rng([self.seed, 1]).uniform(0.0, 2 * math.pi, n)
        self.decimals = np.array([m.decimals for m in models], dtype=np.int64)
        self.lo = np.array([KINDS[s.kind].lo for s in filled])
        self.hi = np.array([KINDS[s.kind].hi for s in filled])
        self.ent = np.array([self.index.ent_idx[s.enterprise_id] for s in filled], dtype=np.intp)
        self.interval_ms = np.array([round(s.interval_s * 1000) for s in filled], dtype=np.int64)
        self.dt_ms = int(reduce(math.gcd, self.interval_ms.tolist()))
        self.period = self.interval_ms // self.dt_ms
        self.n_ticks = max(1, -(-self.duration_ms // self.dt_ms))
        self.block_ticks = max(1, BLOCK_VIRTUAL_MS // self.dt_ms)

        devs: dict[tuple[str, str], list[int]] = {}
        for i, s in enumerate(filled):
            devs.setdefault((s.enterprise_id, s.device_id), []).append(i)
        self.devices: list[tuple[str, str]] = list(devs)
        self.device_cols: list[npt.NDArray[np.intp]] = [np.asarray(c, dtype=np.intp) for c in devs.values()]

        self.events: list[tuple[EventSpec, Effect]] = []
        for i, ev in enumerate(events):
            where = f"{ev.category}[{i}] ({ev.kind})"
            table = INCIDENT_HANDLERS if ev.category == "incident" else FAULT_HANDLERS
            if ev.kind not in table:
                raise ScenarioError(f"{where}.kind", f"unknown {ev.category} kind; known: {', '.join(sorted(table))}")
            if ev.enterprise_id not in ents:
                raise ScenarioError(f"{where}.enterprise_id", f"enterprise {ev.enterprise_id!r} not declared")
            if ev.duration_s <= 0 or ev.start_s < 0:
                raise ScenarioError(where, "needs start_s >= 0 and duration_s > 0")
            self.events.append((ev, table[ev.kind](ev, self.index, where)))
        self.overlays = [o for _, e in self.events for o in e.overlays]
        self.post = [o for _, e in self.events for o in e.post]
        self.prod_overlays = [p for _, e in self.events for p in e.prod]
        self.masks = [m for _, e in self.events for m in e.mask]
        self.status = sorted((s for _, e in self.events for s in e.status), key=lambda x: x[0])
        self._all = np.arange(n, dtype=np.intp)

    # -- generation ------------------------------------------------------------------
    def ticks_ms(self, tick0: int, k: int) -> npt.NDArray[np.int64]:
        return self.start_ms + (tick0 + np.arange(k, dtype=np.int64)) * self.dt_ms

    def production(self, t_ms: F64) -> F64:
        """Production factor (len(t) × enterprises), incidents included."""
        prod = np.empty((len(t_ms), len(self.enterprises)))
        for e, ent in enumerate(self.enterprises):
            prod[:, e] = power.production(t_ms, ent, self.tz_offset_h)
        for po in self.prod_overlays:
            if t_ms[-1] < po.lo_ms or t_ms[0] >= po.hi_ms:
                continue
            np.maximum(prod[:, po.ent], po.target * po.shape((t_ms - po.start_ms) / 1000.0), out=prod[:, po.ent])
        return prod

    def _apply(self, ovs: Sequence[Overlay], mode_filter: set[str], v: F64, tf: F64, ticks: npt.NDArray[np.int64],
               pos: npt.NDArray[np.intp]) -> None:
        for ov in ovs:
            if ov.mode not in mode_filter or tf[-1] < ov.lo_ms or tf[0] >= ov.hi_ms:
                continue
            local = pos[ov.cols]
            keep = local >= 0
            if not keep.any():
                continue
            local, gcols = local[keep], ov.cols[keep]
            s = ov.shape((tf - ov.start_ms) / 1000.0)
            if ov.pattern:
                pat = np.asarray(ov.pattern)
                reading = ticks[:, None] // self.period[gcols][None, :]
                sm = s[:, None] * pat[reading % len(pat)]
            else:
                sm = np.broadcast_to(s[:, None], (len(s), len(local)))
            if ov.mode == "add":
                v[:, local] += ov.amount * sm
            elif ov.mode == "scale":
                v[:, local] *= 1.0 + (ov.amount - 1.0) * sm
            else:
                v[:, local] = np.where(sm > 0.0, ov.amount, v[:, local])

    def block(self, tick0: int, k: int, rng: np.random.Generator | None = None,
              cols: npt.NDArray[np.intp] | None = None) -> Block:
        """Readings for ticks ``tick0 .. tick0+k-1``; noise-free when ``rng`` is None.

        With noise, ``cols`` must be None (noise is drawn for all sensors so that the
        draw sequence does not depend on which columns are asked for).
        """
        if cols is None:
            cols = self._all
        elif rng is not None:
            raise ValueError("noise is only drawn for the whole plant")
        pos = np.full(self.n, -1, dtype=np.intp)
        pos[cols] = np.arange(len(cols), dtype=np.intp)
        ticks = tick0 + np.arange(k, dtype=np.int64)
        t = self.start_ms + ticks * self.dt_ms
        tf = t.astype(np.float64)
        prod = self.production(tf)
        ts = (tf / 1000.0)[:, None]
        v = (self.level[cols] + self.coupling[cols] * prod[:, self.ent[cols]]
             + self.drift_amp[cols] * np.sin(self.drift_w[cols] * (ts - self.start_ms / 1000.0)
                                            + self.drift_phi[cols]))
        self._apply(self.overlays, {"add", "scale", "set"}, v, tf, ticks, pos)
        if rng is not None:
            z = rng.standard_normal((k, self.n))
            v += np.hypot(self.noise_sd, self.noise_rel * v) * z
        self._apply(self.post, {"add"}, v, tf, ticks, pos)
        np.clip(v, self.lo[cols], self.hi[cols], out=v)
        self._apply(self.post, {"set"}, v, tf, ticks, pos)
        dec = self.decimals[cols]
        for d in np.unique(dec):
            sel = dec == d
            v[:, sel] = np.round(v[:, sel], int(d))
        v += 0.0  # turn -0.0 into 0.0 so the text form is stable
        due = (ticks[:, None] % self.period[cols][None, :]) == 0
        for mcols, lo, hi in self.masks:
            local = pos[mcols]
            local = local[local >= 0]
            rows = (t >= lo) & (t < hi)
            if local.size and rows.any():
                due[np.ix_(rows, local)] = False
        return Block(tick0, t, cols, v, due, prod)

    def blocks(self, *, noise: bool = True, cols: npt.NDArray[np.intp] | None = None,
               tick0: int = 0, tick1: int | None = None) -> Iterator[Block]:
        """Blocks of ``block_ticks`` from ``tick0`` up to ``tick1`` (default: the end).

        With noise, iteration must start at tick 0 (the noise sequence is positional).
        """
        if noise and tick0 != 0:
            raise ValueError("a noisy stream starts at tick 0")
        rng = np.random.default_rng([self.seed, 0]) if noise else None
        end = self.n_ticks if tick1 is None else min(tick1, self.n_ticks)
        i = tick0
        while i < end:
            k = min(self.block_ticks, end - i)
            yield self.block(i, k, rng, None if noise else cols)
            i += k

    def tick_of(self, t_ms: int) -> int:
        """First tick at or after ``t_ms`` (clamped to the stream)."""
        return min(max(0, -(-(t_ms - self.start_ms) // self.dt_ms)), self.n_ticks)
