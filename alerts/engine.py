"""The vectorised alarm engine: readings in, level transitions out (pure numpy).

``AlarmEngine.evaluate`` takes a columnar batch (row, ts_ms, value), sorts it by
(row, ts) and processes it in *rounds* in which every row occurs once (round k = the
k-th reading of each sensor in the batch), so every detector runs as a handful of numpy
operations per round and never as a Python loop per reading. ``tick`` runs the
wall-clock timers (delay-on/off expiry, deadman, gateway escalation, spark window).
Every (row, rule) pair holds one level; a transition is emitted only when it changes.

Time: reading timestamps drive delay-on/off, flatline and rate; arrival time
(``now_ms``) drives the deadman. Late readings (older than the sensor's newest) are
evaluated by their own timestamps but may only *raise* levels with timers that are
already running; they never start, reset or move a timer, never enter the ring buffer
and never lower a level (the newest reading defines the current state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts import _engine_kernels as _rk
from alerts import detectors as det
from alerts.compile import FEEDER_ZERO_A, Compiled, LadderArrays, compile_config
from alerts.power import PowerAnalytics
from alerts.rules import (
    ANOMALY_BLUE,
    ANOMALY_HOLD_S,
    ANOMALY_MIN_SAMPLES,
    AREA_VOTE_N,
    COMPOUND_TEMP_LEVEL,
    GATEWAY_YELLOW_S,
    INTERLOCK_H2_LEVEL,
    INTERLOCK_TEMP_LEVEL,
    PDIFF_ZERO_FRAC,
    RULE,
    RULE_NAMES,
    SPARK_RATE_WINDOW_S,
    SPARK_WINDOW_S,
)
from alerts.state import NO_TS, Column, RowState
from alerts.transitions import Transitions
from plantwatch.domain import KIND_INDEX, KINDS, Level
from plantwatch.registry import Enterprise, Sensor

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]

NR = len(RULE_NAMES)
R_HIGH, R_LOW, R_RATE, R_FLAT, R_RANGE = RULE["high"], RULE["low"], RULE["rate"], RULE["flatline"], RULE["range"]
R_DEAD, R_GW, R_BASE, R_COMP, R_VOTE = (RULE["deadman"], RULE["gateway_offline"], RULE["baseline"],
                                        RULE["compound"], RULE["area_vote"])
R_ANOM, R_LOCK = RULE["anomaly"], RULE["interlock"]
_LADDERS = ("high", "low", "baseline", "overload")  # _settle hands these four to the compiled kernel by name
SORT_MIN_ROWS = 4096
"""A batch of unique rows at least this large (and covering at least 1/8 of the capacity) in
random order is put in row order before evaluation (see ``evaluate``)."""
_NO_LATE = np.zeros(0, bool)
_X_MODE = {"high": _rk.X_SPARKS, "low": _rk.X_NEGATED, "baseline": _rk.X_BASELINE, "overload": _rk.X_VALUE}
_LADDER_RULE = {"high": R_HIGH, "low": R_LOW, "baseline": R_BASE, "overload": RULE["overload"]}



def _anomaly_factory() -> Callable[[int], Any] | None:
    """alerts.anomaly.AnomalyScorer when that module is present (written in parallel)."""
    try:
        from alerts.anomaly import AnomalyScorer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the checkout
        return None
    factory: Callable[[int], Any] = AnomalyScorer
    return factory


class _Out:
    """Collects transition columns; concatenated once per call."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[Any, ...]] = []

    def add(self, rows: I32, rule: int, new: I8, prev: I8, value: F64, ts: I64) -> None:
        self.parts.append((rows, rule, new, prev, value, ts))

    def build(self) -> Transitions:
        if not self.parts:
            return Transitions.empty()
        rows = np.concatenate([p[0] for p in self.parts]).astype(np.int32, copy=False)
        rule = np.concatenate([np.full(len(p[0]), p[1], np.int16) for p in self.parts])
        new = np.concatenate([p[2] for p in self.parts]).astype(np.int8, copy=False)
        prev = np.concatenate([p[3] for p in self.parts]).astype(np.int8, copy=False)
        val = np.concatenate([np.broadcast_to(np.asarray(p[4], np.float64), (len(p[0]),)) for p in self.parts])
        ts = np.concatenate([np.broadcast_to(np.asarray(p[5], np.int64), (len(p[0]),)) for p in self.parts])
        return Transitions(rows, rule, new, prev, val.astype(np.float64), ts.astype(np.int64))


class AlarmEngine:
    """Pure-numpy alarm core over registry rows (see module docstring and docs/alerts.md).

    ``window`` is the ring-buffer length (readings per sensor) used by the rate rule and
    kept for detectors; memory per sensor is :meth:`bytes_per_sensor`. ``anomaly`` wires
    :class:`alerts.anomaly.AnomalyScorer` as rule ``anomaly`` (its cost dominates when on).
    ``fast_path=False`` sends every reading through the full rule set (same results; used
    by tests as the reference). ``kernel=False`` runs the numpy formulation of the
    per-round fast path instead of its compiled kernels (same results; the reference).
    """

    def __init__(self, sensors: list[Sensor], enterprises: Mapping[str, Enterprise], *,
                 window: int = 16, anomaly: bool = True, fast_path: bool = True, kernel: bool = True) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 readings, got {window}")
        self.rule_names: list[str] = list(RULE_NAMES)
        self._w = window
        cols = [
            Column("last_ts", np.int64, NO_TS), Column("last_v", np.float64, np.nan),
            Column("seen_ms", np.int64, NO_TS), Column("flat_since", np.int64, NO_TS),
            Column("count", np.int64, 0), Column("busy", np.bool_, False),
            Column("spark_ms", np.int64, NO_TS), Column("anomaly_ms", np.int64, NO_TS),
            Column("score", np.float32, np.nan),  # last anomaly score in [0, 1] (replay, API)
            Column("level", np.int8, 0, (NR,)),
        ]
        for name in _LADDERS:
            cols += [Column(f"on_{name}", np.int64, NO_TS, (4,)), Column(f"off_{name}", np.int64, NO_TS)]
        self._st = RowState(cols, len(sensors))
        # ring buffers are position-major (window, cap): a batch of sensors at the same
        # position writes one contiguous plane instead of one cache line per sensor
        self._ring_v = np.full((window, self._st.cap), np.nan)
        self._ring_t = np.zeros((window, self._st.cap), np.int64)
        self._gw: dict[tuple[str, str], tuple[bool, int]] = {}  # (enterprise, device) -> (online, since)
        self._gw_for: dict[int, tuple[str, str]] = {}  # row carrying a root alarm -> the device it is for
        self._clock = NO_TS           # newest now_ms seen (restart grace reference)
        self._resume_from = NO_TS     # saved clock of a restored snapshot, until the first call
        self._ingest_down = False     # the service's own MQTT session is down (ingest_status)
        self._ingest_since = NO_TS    # when it last came back (deadman grace)
        self._dead_at_outage = np.zeros(0, np.intp)  # rows whose deadman was raised when it went down
        self._replay_floor = np.zeros(0, np.int64)  # newest ts per row at restore (see replay)
        self._cfg: Compiled = compile_config([], {})
        self._n = 0
        self._power = PowerAnalytics()
        self._mark = np.zeros(0, np.int32)      # scratch for the duplicate-row check (-1 between calls;
        # int32: 400 KB at 100k sensors, so the random scatter of a shuffled batch stays in L2)
        self._ord: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.intp), np.zeros(0, np.int64),
                                                                  np.zeros(0))  # a reordered batch (reused)
        self._idx = np.arange(1024, dtype=np.intp)
        self._kept: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.intp), np.zeros(0, np.int64),
                                                                   np.zeros(0))  # a batch without held rows
        self._dirty: list[I32] = []             # rows whose busy flag must be recomputed
        self._anomaly: Any = None
        self._anomaly_on = anomaly
        self._fast_path = fast_path
        self._kernel = kernel
        if kernel:
            _rk.warm()
        self._code = np.empty(1024, np.int8)    # scratch of the compiled round: per-reading code
        self._fs = np.empty(1024, np.int64)     # and flat-since time
        # scratch of the compiled rules: what they changed (see _scratch)
        self._lad_i = np.empty(0, np.intp)  # positions, previous and new levels; rows, values, times (_em)
        self._scratch(1024)
        self.out_of_service_readings = 0  # readings of out-of-service rows, not evaluated (cumulative)
        self.sync(sensors, enterprises)

    # -- configuration -------------------------------------------------------------------
    def sync(self, sensors: list[Sensor], enterprises: Mapping[str, Enterprise]) -> None:
        """Recompile after registry changes; arrays grow (rows only append), state is kept."""
        if len(sensors) < self._n:
            raise ValueError(f"registry shrank from {self._n} to {len(sensors)} rows; rows never go away")
        cfg = compile_config(sensors, enterprises)
        if not self._fast_path:  # every reading takes the full rule set (reference behaviour)
            cfg.q_hi[:] = -np.inf
        self._st.grow(cfg.n)
        if self._ring_v.shape[1] < self._st.cap:
            rv = np.full((self._w, self._st.cap), np.nan)
            rt = np.zeros((self._w, self._st.cap), np.int64)
            rv[:, : self._ring_v.shape[1]] = self._ring_v
            rt[:, : self._ring_t.shape[1]] = self._ring_t
            self._ring_v, self._ring_t = rv, rt
        if len(self._mark) < self._st.cap:
            self._mark = np.full(self._st.cap, -1, np.int32)
        self._cfg = cfg
        self._n = cfg.n
        self._n_off = int(cfg.off.sum())

        power_kinds = [KIND_INDEX[k] for k, spec in KINDS.items() if spec.domain == "power"]
        self._is_power = np.isin(cfg.kind, power_kinds)

        def has(thr: F64) -> npt.NDArray[np.bool_]:
            return np.asarray(np.isfinite(thr).any(axis=1), dtype=bool)

        self._ladder_on: dict[str, npt.NDArray[np.bool_]] = {  # rows that have each ladder
            "high": has(cfg.high.thr), "low": has(cfg.low.thr), "baseline": has(cfg.baseline_ladder.thr),
            "overload": has(cfg.overload.thr) | cfg.main_meter,  # meter blue is set per reading
        }
        self._q_hi = np.where(self._st["busy"][: cfg.n], -np.inf, cfg.q_hi)
        self._rebuild_gateways()
        self._rebuild_carriers()
        self._rebuild_areas()
        self._rebuild_interlocks()
        if self._clock != NO_TS:  # the equipment state must not wait for the next tick
            self._equipment(self._clock)
        self._power.sync(cfg, self._st.cap)
        if self._anomaly_on:
            if self._anomaly is None:
                factory = _anomaly_factory()
                self._anomaly = factory(self._st.cap) if factory is not None else None
            else:
                self._anomaly.grow(self._st.cap)

    def _rebuild_gateways(self) -> None:
        cfg = self._cfg
        nd = len(cfg.dev_keys)
        self._dev_offline = np.zeros(nd + 1, bool)      # last slot: rows without a device
        self._dev_since = np.full(nd + 1, NO_TS, np.int64)  # online since (deadman grace)
        for d, key in enumerate(cfg.dev_keys):
            st = self._gw.get(key)
            if st is not None:
                self._dev_offline[d] = not st[0]
                if st[0]:
                    self._dev_since[d] = st[1]
        self._row_dev = np.where(cfg.dev >= 0, cfg.dev, nd).astype(np.int32)

    def _rebuild_carriers(self) -> None:
        """Which row carries each device's root alarm, and each device's first row in service:
        after a recompile, a hold change or a restore (between them ``_raise_gateways`` and
        ``_clear_gateways`` keep the carriers; a status message needs no O(fleet) pass)."""
        cfg = self._cfg
        nd = len(cfg.dev_keys)
        n = cfg.n
        dev = cfg.dev[:n]
        # the row carrying each device's root alarm, -1 none: from the levels and the device each
        # was raised for (``_gw_for``, in snapshots)
        self._gw_row = np.full(nd, -1, np.int32)
        carrying = np.flatnonzero(self._st["level"][:n, R_GW] > 0)
        stale = []
        for r in carrying.tolist():  # a row re-registered on another device (or none) carries not for it
            d = int(dev[r])
            mine = d >= 0 and self._gw_for.get(r, cfg.dev_keys[d]) == cfg.dev_keys[d]
            if mine and self._dev_offline[d] and self._gw_row[d] < 0:
                self._gw_row[d] = r
            else:
                stale.append(r)
        self._gw_stale = np.array(stale, np.int32)  # their levels clear at the next tick
        # each device's first row in service, -1 when every sensor on it is out of service
        on = np.flatnonzero((dev >= 0) & ~cfg.off[:n])
        first = np.full(nd, n, np.int64)
        np.minimum.at(first, dev[on], on)
        self._gw_first = np.where(first < n, first, -1).astype(np.int32)

    def _rebuild_areas(self) -> None:
        """Per-area derived state (stage-2 counts, last spark, temperature rows by area)."""
        cfg, st = self._cfg, self._st
        na = len(cfg.area_keys)
        in_area = cfg.area >= 0
        voters = np.flatnonzero(cfg.votes & in_area)
        s2 = st["level"][voters, R_HIGH] >= Level.ORANGE
        self._area_s2 = np.bincount(cfg.area[voters], weights=s2, minlength=na).astype(np.int32)
        sparks = np.flatnonzero(cfg.spark & in_area)
        self._area_spark = np.full(na, NO_TS, np.int64)
        np.maximum.at(self._area_spark, cfg.area[sparks], st["spark_ms"][sparks])
        vt = voters[np.argsort(cfg.area[voters], kind="stable")]
        self._voter_rows = vt.astype(np.int32)
        self._voter_ptr = np.searchsorted(cfg.area[vt], np.arange(na + 1)).astype(np.int64)
        # the row carrying each area's raised vote (derived from levels, so restore needs nothing)
        self._vote_row = np.full(na, -1, np.int32)
        self._vote_ts = np.full(na, NO_TS, np.int64)  # scratch of the compiled vote (NO_TS between calls)
        self._vote_touched = np.empty(na, np.int32)
        held = np.flatnonzero(st["level"][: cfg.n, R_VOTE] > 0)
        held = held[cfg.area[held] >= 0]
        self._vote_row[cfg.area[held]] = held
        temps = np.flatnonzero(cfg.temp_compound & in_area & ~cfg.off)  # held rows: no compound change
        temps = temps[np.argsort(cfg.area[temps], kind="stable")]
        self._temp_rows = temps.astype(np.int32)
        self._temp_ptr = np.searchsorted(cfg.area[temps], np.arange(na + 1)).astype(np.int64)

    def _rebuild_interlocks(self) -> None:
        """Row sets of the interlock rule (rows in an area only): equipment-state sources
        and the candidate rows that carry the red, by role."""
        cfg = self._cfg
        in_area = cfg.area >= 0

        def rows(*kinds: str, extra: npt.NDArray[np.bool_] | None = None) -> I32:
            m = np.isin(cfg.kind, [KIND_INDEX[k] for k in kinds]) & in_area
            if extra is not None:
                m &= extra
            return np.flatnonzero(m).astype(np.int32)

        self._lk_fan = rows("dust.air_velocity")
        self._lk_feed = rows("power.feeder_current", extra=cfg.critical)
        self._lk_temp = rows("dust.hopper_temperature", "dust.inlet_temperature")
        self._lk_valve = rows("dust.isolation_valve")
        self._lk_water = rows("dust.water_level", "dust.water_flow")
        self._lk_h2 = rows("gas.hydrogen")
        self._lk_rcd = rows("power.residual_current")
        self._lk_pdiff = rows("dust.pressure_diff", extra=~np.isnan(cfg.baseline))
        self._lk_cand = np.concatenate([self._lk_water, self._lk_h2, self._lk_rcd, self._lk_temp,
                                        self._lk_pdiff]).astype(np.int32)
        # equipment state per area (index -1 = no area), refreshed by every tick
        self._fan_runs = np.zeros(len(cfg.area_keys) + 1, bool)
        self._fan_stopped = np.zeros(len(cfg.area_keys) + 1, bool)
        self._gate_red = bool(cfg.red_while_running.any())

    @property
    def size(self) -> int:
        """Number of sensor rows compiled."""
        return self._n

    def bytes_per_sensor(self) -> int:
        """State bytes per sensor row (ring buffer, timers, levels, anomaly scorer when on),
        excluding the compiled configuration vectors."""
        ring = self._w * (self._ring_v.itemsize + self._ring_t.itemsize)
        anomaly = 0
        if self._anomaly is not None:
            snap = self._anomaly.snapshot()
            anomaly = sum(np.asarray(a).nbytes for k, a in snap.items() if k != "params") // max(
                self._anomaly.capacity, 1)
        return self._st.nbytes_per_row() + ring + self._power.bytes_per_row() + anomaly

    def level(self, row: int, rule: str) -> Level:
        """Current level of one (row, rule) pair (for tests and the API)."""
        return Level(int(self._st["level"][row, RULE[rule]]))

    def levels(self) -> npt.NDArray[np.int8]:
        """View of the (rows, rules) level matrix (read-only use)."""
        lv: npt.NDArray[np.int8] = self._st["level"][: self._n]
        return lv

    def anomaly_scores(self, rows: I32) -> F64:
        """Last anomaly score in [0, 1] of each row (NaN before its first in-order reading or
        with ``anomaly=False``)."""
        return self._st["score"][rows].astype(np.float64)

    def threshold_of(self, row: int, rule: int, level: Level) -> tuple[str, float] | None:
        """(operator, threshold) behind ``level`` of a threshold rule, for alarm messages
        (``alerts.lifecycle.ThresholdOf``): high/overload ``("≥", x)``, low ``("≤", x)``,
        baseline ``("deviates ≥ 20 % from", baseline)``; None for other rules or levels."""
        if not (0 <= row < self._n) or level <= Level.NONE or level > Level.RED:
            return None
        j = int(level) - 1
        cfg = self._cfg
        if rule in (R_HIGH, RULE["overload"]):
            x = float((cfg.high if rule == R_HIGH else cfg.overload).thr[row, j])
            return ("≥", x) if np.isfinite(x) else None
        if rule == R_LOW:
            x = float(cfg.low.thr[row, j])
            return ("≤", -x) if np.isfinite(x) else None
        if rule == R_BASE:
            x = float(cfg.baseline_ladder.thr[row, j])
            b = float(cfg.baseline[row])
            if not (np.isfinite(x) and np.isfinite(b)):
                return None
            return ("≥", b + x) if cfg.base_rise[row] else (f"deviates ≥ {x:g} % from", b)
        return None

    def rate_eta(self, rows: I32) -> tuple[F64, F64]:
        """Latest rate of change (unit/min) and predicted seconds to the next high threshold."""
        rows = np.asarray(rows, np.int32)
        st = self._st
        v = st["last_v"][rows].astype(np.float64)
        rate = det.rate_per_min(self._ring_v, self._ring_t, st["count"], rows, v,
                                st["last_ts"][rows].astype(np.int64))
        eta = self._eta_ms(rows, v, rate) / 1000.0
        return rate, eta

    # -- hot path ------------------------------------------------------------------------
    def evaluate(self, row: I32, ts_ms: I64, value: F64, now_ms: int) -> Transitions:
        """Evaluate one batch of readings (any order, repeated rows allowed; row -1 ignored).

        Inputs are never modified. Rows outside the registry are ignored, and so are readings
        of rows out of service (counted in ``out_of_service_readings``).
        """
        self._on_clock(now_ms)
        out = _Out()
        r = np.asarray(row)
        t = np.asarray(ts_ms, np.int64)
        v = np.asarray(value, np.float64)
        n = len(r)
        if not (len(t) == n == len(v)) or r.ndim != 1:
            raise ValueError(f"evaluate: row, ts_ms and value must be 1-D of equal length, "
                             f"got {r.shape}, {t.shape}, {v.shape}")
        if n == 0:
            return out.build()
        off = self._cfg.off
        if self._kernel:  # range, order and held rows in one pass
            flags = int(_rk.scan_rows(r, self._n, off))
            outside, in_order, held = bool(flags & 1), bool(flags & 2), bool(flags & 4)
        else:
            outside = bool(r.min() < 0 or r.max() >= self._n)
            in_order = n < 2 or bool((r[1:] > r[:-1]).all())
            held = bool(self._n_off) and not outside and bool(off[r].any())
        if outside or held:  # rows outside the registry are ignored; rows in maintenance or
            # removed are counted (their readings teach no detector)
            if self._kernel:
                if len(self._kept[0]) < n:  # reused, like the reorder buffers
                    m = max(n, 2 * len(self._kept[0]))
                    self._kept = (np.empty(m, np.intp), np.empty(m, np.int64), np.empty(m, np.float64))
                r2, t2, v2 = self._kept
                k, n_held = _rk.keep_rows(r, t, v, self._n, off, r2, t2, v2)
                r, t, v = r2[:k], t2[:k], v2[:k]
            else:
                inside = (r >= 0) & (r < self._n)
                held_m = np.zeros(n, bool)
                held_m[inside] = off[r[inside]]
                n_held = int(np.count_nonzero(held_m))
                keep = np.flatnonzero(inside & ~held_m)
                r, t, v = r[keep], t[keep], v[keep]
            self.out_of_service_readings += int(n_held)
            n = len(r)
            if n == 0:
                return out.build()
            in_order = n < 2 or bool((r[1:] > r[:-1]).all())
        r = r.astype(np.intp, copy=False)  # intp: no index casts
        # unique rows? (scatter positions into ``mark``, kept at -1 between calls: a duplicate loses
        # its slot). A large batch in random row order is put in row order on the way (the marked
        # slots, read in row order, are the permutation), so the ~20 per-sensor gathers and
        # scatters below walk memory forwards (docs/benchmarks.md §1).
        idx = self._arange(n)
        mark = self._mark
        # the whole fleet (the usual batch), or a large part of it: worth the permutation
        reorder = n == self._n or (n >= SORT_MIN_ROWS and n * 8 >= len(mark))
        if in_order:
            unique = True  # strictly increasing: one pass
        elif self._kernel:
            if reorder:
                if len(self._ord[0]) < n:  # reused: fresh arrays this size cost ~0.5 ms of page faults a call
                    m = max(n, 2 * len(self._ord[0]))
                    self._ord = (np.empty(m, np.intp), np.empty(m, np.int64), np.empty(m, np.float64))
                r2, t2, v2 = (a[:n] for a in self._ord)  # nothing keeps them past this call
                unique = bool(_rk.row_order(r, t, v, mark, self._n, r2, t2, v2))
                if unique:
                    r, t, v = r2, t2, v2
            else:
                unique = bool(_rk.unique_rows(r, mark))
        else:
            mark[r] = idx
            if reorder:
                rs = np.flatnonzero(mark[: self._n] >= 0)
                mark_rs = mark[rs]
                mark[rs] = -1
                unique = len(rs) == n
                if unique:
                    r, t, v = rs.astype(r.dtype, copy=False), t[mark_rs], v[mark_rs]
            else:
                unique = np.array_equal(mark[r], idx)
                mark[r] = -1
        if unique:
            self._round(r, t, v, now_ms, out)
        else:
            order = np.lexsort((t, r))
            r, t, v = r[order], t[order], v[order]
            first = np.empty(n, bool)
            first[0] = True
            np.not_equal(r[1:], r[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            k = idx - starts[np.cumsum(first) - 1]
            by_round = np.argsort(k, kind="stable")
            lo = 0
            for hi in np.cumsum(np.bincount(k)):
                sel = by_round[lo:hi]
                self._round(r[sel], t[sel], v[sel], now_ms, out)
                lo = int(hi)
        self._settle()
        return out.build()

    def _arange(self, n: int) -> npt.NDArray[np.intp]:
        if len(self._idx) < n:
            self._idx = np.arange(max(n, 2 * len(self._idx)), dtype=np.intp)
        return self._idx[:n]

    def _settle(self) -> None:
        """Recompute the ``busy`` flag of every row touched by the slow path or a transition."""
        if not self._dirty:
            return
        rows = np.concatenate(self._dirty)  # duplicates are harmless (same flag written twice)
        self._dirty.clear()
        st = self._st
        if self._kernel:
            _rk.settle(rows, st["level"], st["on_high"], st["off_high"], st["on_low"], st["off_low"],
                       st["on_baseline"], st["off_baseline"], st["on_overload"], st["off_overload"],
                       st["busy"], self._q_hi, self._cfg.q_hi)
            return
        busy = st["level"][rows].any(axis=1)
        for name in _LADDERS:
            busy |= (st[f"on_{name}"][rows] != NO_TS).any(axis=1) | (st[f"off_{name}"][rows] != NO_TS)
        st["busy"][rows] = busy
        self._q_hi[rows] = np.where(busy, -np.inf, self._cfg.q_hi[rows])  # busy rows: never quiet

    def _set(self, rule: int, rows: I32, new: I8, value: F64 | float, ts: I64 | int, out: _Out) -> None:
        lv = self._st["level"]
        if self._kernel:
            if len(self._lad_i) < len(rows):
                self._scratch(len(rows))
            k = _rk.set_level(lv, rule, rows, np.asarray(new, np.int8), self._lad_i, self._lad_prev, self._lad_new)
            if k:
                self._emit_at(rows, rule, k, value, ts, out)
            return
        prev = lv[rows, rule]
        ch = new != prev
        if not ch.any():
            return
        if ch.all():
            lv[rows, rule] = new
            out.add(rows, rule, new, prev, value, ts)  # type: ignore[arg-type]
            self._dirty.append(rows)
            return
        i = np.flatnonzero(ch)
        rr = rows[i]
        lv[rr, rule] = new[i]
        val = value[i] if isinstance(value, np.ndarray) else value
        tt = ts[i] if isinstance(ts, np.ndarray) else ts
        out.add(rr, rule, new[i], prev[i], val, tt)  # type: ignore[arg-type]
        self._dirty.append(rr)

    def _ladder_x(self, name: str, rows: I32, v: F64, ts: I64, in_ring: bool) -> F64:
        """The rule's quantity. Spark detectors count sparks over the last SPARK_RATE_WINDOW_S
        (ring entries, plus the reading itself unless it is already in the ring)."""
        cfg = self._cfg
        if name == "high":
            sp = cfg.spark[rows]
            if not sp.any():
                return v
            i = np.flatnonzero(sp)
            recent = det.window_sum(self._ring_v, self._ring_t, rows[i], ts[i], int(SPARK_RATE_WINDOW_S * 1000))
            x = v.copy()
            x[i] = recent if in_ring else recent + v[i]
            return x
        if name == "low":
            return -v
        if name == "baseline":  # % deviation (pressure difference) or rise above it (temperatures)
            b = cfg.baseline[rows]
            return np.where(cfg.base_rise[rows], v - b, np.abs(v / b - 1.0) * 100.0)  # NaN b = off
        return v  # overload: kW against capacity-derived thresholds (compiled) and the learned P95

    def _ladder(self, name: str, rows: I32, v: F64, ts: I64, late: npt.NDArray[np.bool_] | None,
                out: _Out, in_ring: bool = False) -> None:
        lad: LadderArrays = getattr(self._cfg, "baseline_ladder" if name == "baseline" else name)
        rule = _LADDER_RULE[name]
        if self._kernel:
            self._ladder_compiled(name, lad, rule, rows, v, ts, late, out, in_ring)
            return
        prev = self._st["level"][rows, rule]
        use = self._ladder_on[name][rows] | (prev > 0)
        if not use.all():  # only rows that have this rule (or still hold a level from before)
            if not use.any():
                return
            i = np.flatnonzero(use)
            rows, v, ts, prev = rows[i], v[i], ts[i], prev[i]
            late = None if late is None else late[i]
        x = self._ladder_x(name, rows, v, ts, in_ring)
        new = det.ladder_step(lad, self._st[f"on_{name}"], self._st[f"off_{name}"], rows, x, ts, prev, late)
        if name == "high" and self._gate_red:
            new = self._hold_red_while_stopped(rows, new)
        self._set(rule, rows, new, v, ts, out)

    def _scratch(self, n: int) -> None:
        """Grow the compiled rules' output scratch to at least ``n`` entries."""
        m = max(n, 2 * len(self._lad_i))
        self._lad_i = np.empty(m, np.intp)
        self._lad_prev, self._lad_new = np.empty(m, np.int8), np.empty(m, np.int8)
        self._em = (np.empty(m, np.int32), np.empty(m, np.float64), np.empty(m, np.int64))

    def _emit_at(self, rows: I32, rule: int, k: int, value: F64 | float, ts: I64 | int, out: _Out) -> None:
        """Report the ``k`` level changes a compiled rule wrote, given as positions in ``rows``
        (``_lad_i``, ``_lad_prev``, ``_lad_new``), with the readings' values and times."""
        i = self._lad_i[:k].copy()
        rr = rows[i]
        out.add(rr, rule, self._lad_new[:k].copy(), self._lad_prev[:k].copy(),
                value[i] if isinstance(value, np.ndarray) else value,  # type: ignore[arg-type]
                ts[i] if isinstance(ts, np.ndarray) else ts)  # type: ignore[arg-type]
        self._dirty.append(rr)

    def _emit_rows(self, rule: int, k: int, out: _Out) -> None:
        """Report the ``k`` level changes a compiled rule wrote as rows, values and times (``_em``)."""
        rows = self._em[0][:k].copy()
        out.add(rows, rule, self._lad_new[:k].copy(), self._lad_prev[:k].copy(), self._em[1][:k].copy(),
                self._em[2][:k].copy())
        self._dirty.append(rows)

    def _ladder_compiled(self, name: str, lad: LadderArrays, rule: int, rows: I32, v: F64, ts: I64,
                         late: npt.NDArray[np.bool_] | None, out: _Out, in_ring: bool) -> None:
        """:meth:`_ladder` in one compiled pass (``_rk.ladder_rule``): the same rows, quantity,
        step, valve hold and level write."""
        cfg, st = self._cfg, self._st
        n = len(rows)
        if len(self._lad_i) < n:
            self._scratch(n)
        v64 = np.asarray(v, np.float64)
        k = _rk.ladder_rule(_X_MODE[name], lad.thr, lad.clr, lad.don_ms, lad.doff_ms, st[f"on_{name}"],
                            st[f"off_{name}"], self._ladder_on[name], cfg.baseline, cfg.base_rise, cfg.spark,
                            self._ring_v, self._ring_t, int(SPARK_RATE_WINDOW_S * 1000), in_ring, st["level"], rule,
                            rows, v64, np.asarray(ts, np.int64), _NO_LATE if late is None else late,
                            late is not None, name == "high" and self._gate_red, cfg.red_while_running, cfg.area,
                            self._fan_stopped, self._lad_i, self._lad_prev, self._lad_new)
        if k:
            self._emit_at(rows, rule, k, v64, ts, out)

    def _hold_red_while_stopped(self, rows: I32, new: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
        """Valves: "fault > 10 min *while running*" (DOMAIN.md): the red is held at orange while
        the area's dust equipment is known to be stopped. The red's delay-on timer keeps
        running, so the row stays busy and the first tick after the fan starts raises it; a
        raised red returns to orange when the fan stops (no delay-off: the condition "while
        running" has ended)."""
        cfg = self._cfg
        held = cfg.red_while_running[rows] & (new > Level.ORANGE)
        if held.any():  # a valve outside any area has no fan signal: running assumed
            held &= (cfg.area[rows] >= 0) & self._fan_stopped[cfg.area[rows]]
            new = np.where(held, np.int8(Level.ORANGE), new).astype(np.int8, copy=False)
        return new

    def _round(self, r: I32, t: I64, v: F64, now_ms: int, out: _Out) -> None:
        """One round of unique rows: quiet rows take the fast path, the rest the full rule set.

        Compiled (:mod:`alerts._engine_kernels`): two passes over the rows instead of ~15; the
        numpy formulation :meth:`_round_numpy` is the reference (``kernel=False``)."""
        if not self._kernel:
            self._round_numpy(r, t, v, now_ms, out)
            return
        st, cfg = self._st, self._cfg
        n = len(r)
        if len(self._code) < n:
            self._code = np.empty(max(n, 2 * len(self._code)), np.int8)
            self._fs = np.empty(len(self._code), np.int64)
        code, fs = self._code[:n], self._fs[:n]
        n_slow = _rk.classify(r, t, v, st["last_ts"], st["last_v"], st["flat_since"], self._q_hi, cfg.q_lo,
                              cfg.flat_ms, code, fs)
        if self._anomaly is not None:
            if code.min() >= _rk.QUIET and code.max() <= _rk.SLOW:  # the usual batch: every reading in order
                self._anomaly_rule(r, t, v, out)
            else:
                io = np.flatnonzero((code == _rk.QUIET) | (code == _rk.SLOW))
                self._anomaly_rule(r[io], t[io], v[io], out)
        if n_slow < n:
            _rk.quiet_update(r, t, v, code, fs, now_ms, st["seen_ms"], st["last_ts"], st["last_v"],
                             st["flat_since"], st["count"], self._ring_v, self._ring_t)
        if n_slow:
            si = np.flatnonzero(code >= _rk.SLOW)
            self._slow(r[si], t[si], v[si], code[si] == _rk.LATE, now_ms, out)
            self._settle()  # the next round of this batch must see the new busy flags

    def _round_numpy(self, r: I32, t: I64, v: F64, now_ms: int, out: _Out) -> None:
        """The numpy formulation of :meth:`_round` (the reference for its compiled kernels)."""
        st, cfg = self._st, self._cfg
        last_ts = st["last_ts"][r]
        dup = (t == last_ts) & (v == st["last_v"][r])
        if dup.any():  # the newest reading again (a redelivery): already evaluated, changes nothing
            keep_i = np.flatnonzero(~dup)
            r, t, v, last_ts = r[keep_i], t[keep_i], v[keep_i], last_ts[keep_i]
            if not len(r):
                return
        late = t < last_ts
        fs = np.where(v != st["last_v"][r], t, st["flat_since"][r])  # flat since (NaN last -> t)
        slow = (v >= self._q_hi[r]) | (v <= cfg.q_lo[r]) | late  # _q_hi is -inf on busy rows
        slow |= t - fs >= cfg.flat_ms[r]  # about to flatline (FLAT_OFF is never reached)
        if self._anomaly is not None:
            io = np.flatnonzero(~late)
            self._anomaly_rule(r[io], t[io], v[io], out)
        any_slow = bool(slow.any())
        if any_slow:  # keep what the fast update below overwrites for the slow rows
            si = np.flatnonzero(slow)
            rs = r[si]
            pos = st["count"][rs] % self._w
            keep = [(st[k], st[k][rs]) for k in ("seen_ms", "last_ts", "last_v", "flat_since", "count")]
            keep_ring = (pos, self._ring_v[pos, rs], self._ring_t[pos, rs])
        # fast path for every row (nothing can change level on a quiet row): state only
        st["seen_ms"][r] = now_ms
        st["last_ts"][r] = t
        st["last_v"][r] = v
        st["flat_since"][r] = fs
        det.ring_write(self._ring_v, self._ring_t, st["count"], r, v, t)
        if any_slow:
            for arr, old in keep:
                arr[rs] = old
            self._ring_v[keep_ring[0], rs] = keep_ring[1]
            self._ring_t[keep_ring[0], rs] = keep_ring[2]
            self._slow(rs, t[si], v[si], late[si], now_ms, out)
            self._settle()  # the next round of this batch must see the new busy flags

    def _slow(self, r: I32, t: I64, v: F64, late_m: npt.NDArray[np.bool_], now_ms: int, out: _Out) -> None:
        """Every rule for rows that are near a threshold, alarmed, timing or late."""
        st, cfg = self._st, self._cfg
        self._dirty.append(r)
        anylate = bool(late_m.any())
        late = late_m if anylate else None
        seen = st["seen_ms"]
        seen[r] = np.maximum(seen[r], now_ms)
        self._set(R_DEAD, r, np.zeros(len(r), np.int8), v, t, out)
        self._power.prepare(self, r, t)
        s2_before = st["level"][r, R_HIGH] >= Level.ORANGE
        for name in _LADDERS:
            self._ladder(name, r, v, t, late, out)
        # out of physical range
        rng = np.where(v > cfg.range_hi[r], cfg.range_hi_level[r],
                       np.where(v < cfg.range_lo[r], cfg.range_lo_level[r], np.int8(0))).astype(np.int8)
        if anylate:
            rng = np.where(late_m, np.maximum(rng, st["level"][r, R_RANGE]), rng).astype(np.int8)
        self._set(R_RANGE, r, rng, v, t, out)
        # the rest uses in-order readings only
        if anylate:
            io = np.flatnonzero(~late_m)
            if len(io):
                self._in_order(r[io], t[io], v[io], out)
        else:
            self._in_order(r, t, v, out)
        self._cross(r, t, s2_before, now_ms, out)

    def _in_order(self, r: I32, t: I64, v: F64, out: _Out) -> None:
        """Slow-path rules that only in-order readings feed: flatline, ring/rate, power."""
        st, cfg = self._st, self._cfg
        if self._kernel:
            n = len(r)
            flat, rate, rate_new = np.empty(n, np.int8), np.empty(n), np.empty(n, np.int8)
            _rk.in_order(r, t, v, st["last_ts"], st["last_v"], st["flat_since"], cfg.flat_ms, st["count"],
                         self._ring_v, self._ring_t, max(1, self._w // 4), cfg.rate_floor, cfg.rate_min,
                         cfg.rate_eta_ms, cfg.high.thr, st["level"][r, R_RATE], flat, rate, rate_new)
            self._set(R_FLAT, r, flat, v, t, out)
            self._set(R_RATE, r, rate_new, rate, t, out)
            self._sparks_and_power(r, t, v, out)
            return
        # flatline: exactly the same value for flat_ms
        flat_since = st["flat_since"]
        fs = np.where(v != st["last_v"][r], t, flat_since[r])
        flat_since[r] = fs
        flat_ms = cfg.flat_ms[r]
        flat = (t - fs >= flat_ms) * np.int8(Level.ORANGE)
        self._set(R_FLAT, r, flat.astype(np.int8), v, t, out)
        # rate of rise and predicted time to the next threshold
        ring_v, ring_t, count = self._ring_v, self._ring_t, st["count"]
        det.ring_write(ring_v, ring_t, count, r, v, t)
        rate = det.rate_per_min(ring_v, ring_t, count, r, v, t)
        # "rising" needs the newest quarter of the window rising too: after a peak the whole-window
        # rate stays positive while the value falls (a leak dispersing is not a leak growing)
        recent = det.rate_per_min(ring_v, ring_t, count, r, v, t, lag=max(1, self._w // 4))
        self._rate_rule(r, t, v, rate, np.minimum(rate, recent), out)
        st["last_ts"][r] = t
        st["last_v"][r] = v
        self._sparks_and_power(r, t, v, out)

    def _sparks_and_power(self, r: I32, t: I64, v: F64, out: _Out) -> None:
        """The end of :meth:`_in_order`: spark times (per sensor and area) and power analytics."""
        st, cfg = self._st, self._cfg
        if self._kernel:
            _rk.sparks(r, t, v, cfg.spark, cfg.area, st["spark_ms"], self._area_spark)
            self._power.observe(self, r, t, v, out)
            return
        sp = cfg.spark[r] & (v > 0)
        if sp.any():
            st["spark_ms"][r[sp]] = t[sp]
            spa = cfg.area[r[sp]]
            ok = spa >= 0
            np.maximum.at(self._area_spark, spa[ok], t[sp][ok])
        self._power.observe(self, r, t, v, out)

    def _anomaly_rule(self, r: I32, t: I64, v: F64, out: _Out) -> None:
        """Anomaly score >= ANOMALY_BLUE (after ANOMALY_MIN_SAMPLES samples) -> blue, held
        ANOMALY_HOLD_S after the last firing; the transition value is the score."""
        if not len(r):
            return
        score = np.asarray(self._anomaly.score_learn(r, v, t), np.float64)
        if self._kernel:
            if len(self._lad_i) < len(r):
                self._scratch(len(r))
            st = self._st
            k = _rk.anomaly_rule(r, t, score, st["count"], st["score"], st["anomaly_ms"], st["level"], R_ANOM,
                                 float(ANOMALY_BLUE), int(ANOMALY_MIN_SAMPLES), int(ANOMALY_HOLD_S * 1000),
                                 self._lad_i, self._lad_prev, self._lad_new)
            if k:
                self._emit_at(r, R_ANOM, k, score, t, out)
            return
        self._st["score"][r] = score
        last = self._st["anomaly_ms"]
        fired = (score >= ANOMALY_BLUE) & (self._st["count"][r] >= ANOMALY_MIN_SAMPLES)
        if fired.any():
            last[r[fired]] = t[fired]
        lm = last[r]
        held = (lm != NO_TS) & (t - lm < int(ANOMALY_HOLD_S * 1000))
        prev = self._st["level"][r, R_ANOM]
        if not (held.any() or prev.any()):
            return
        self._set(R_ANOM, r, held.astype(np.int8) * np.int8(Level.BLUE), score, t, out)

    def _eta_ms(self, r: I32, v: F64, rate: F64) -> F64:
        thr = self._cfg.high.thr[r]
        nxt = np.min(np.where(thr > v[:, None], thr, np.inf), axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            eta = np.where(rate > 0, (nxt - v) / rate * 60000.0, np.inf)
        return np.asarray(eta, np.float64)

    def _rate_rule(self, r: I32, t: I64, v: F64, rate: F64, rising_rate: F64, out: _Out) -> None:
        """Blue when at/above the floor and rising; yellow when the next threshold is near.
        ``rate`` (whole window) is reported; ``rising_rate`` (the lower of the window's and
        its newest quarter's) decides."""
        cfg = self._cfg
        floor = cfg.rate_floor[r]
        on = ~np.isnan(floor)
        if not on.any():
            if self._st["level"][r, R_RATE].any():
                self._set(R_RATE, r, np.zeros(len(r), np.int8), rate, t, out)
            return
        rmin = cfg.rate_min[r]
        rising = on & (v >= floor) & (rising_rate >= rmin)
        eta_ok = rising & (cfg.rate_eta_ms[r] > 0) & (self._eta_ms(r, v, rising_rate) <= cfg.rate_eta_ms[r])
        raw = np.where(eta_ok, np.int8(Level.YELLOW), np.where(rising, np.int8(Level.BLUE), np.int8(0)))
        prev = self._st["level"][r, R_RATE]
        # hysteresis: keep the level while >= 90 % of the floor and rising >= half the minimum rate
        hold = on & (v >= 0.9 * floor) & (rising_rate >= 0.5 * rmin)
        new = np.maximum(raw, np.where(hold, prev, np.int8(0))).astype(np.int8)
        self._set(R_RATE, r, new, rate, t, out)

    # -- cross-sensor rules --------------------------------------------------------------
    def _cross(self, r: I32, t: I64, s2_before: npt.NDArray[np.bool_], now_ms: int, out: _Out) -> None:
        """Cross-sensor rules for the slow rows ``r`` of one round.

        Transition times depend only on readings that changed something (never on which
        other rows shared the batch): an area vote takes the newest reading whose stage-2
        status changed; a compound alarm the newer of the temperature and the spark.
        """
        cfg = self._cfg
        self._vote(r, t, s2_before, out)
        # compound dust: a temperature rise (>= 60 °C, or + 15 °C over its baseline) with a recent
        # spark in the same area
        cm = (cfg.temp_compound[r] | cfg.spark[r]) & (cfg.area[r] >= 0)
        if cm.any():
            self._compound(np.unique(cfg.area[r[cm]]).astype(np.int32), now_ms, None, out)

    def _vote(self, r: I32, t: I64, s2_before: npt.NDArray[np.bool_], out: _Out) -> None:
        """Area vote: >= AREA_VOTE_N detectors of one area at stage 2 -> red on the area anchor."""
        cfg = self._cfg
        if self._kernel:
            if len(self._lad_i) < len(self._vote_row):
                self._scratch(len(self._vote_row))
            em = self._em
            k = _rk.vote(r, np.asarray(t, np.int64), cfg.votes, cfg.area, self._st["level"], R_HIGH, R_VOTE,
                         s2_before, AREA_VOTE_N, self._area_s2, self._vote_row, self._voter_ptr, self._voter_rows,
                         self._vote_ts, self._vote_touched, em[0], self._lad_prev, self._lad_new, em[1], em[2])
            if k:
                self._emit_rows(R_VOTE, k, out)
            return
        vm = cfg.votes[r] & (cfg.area[r] >= 0)
        if not vm.any():
            return
        s2 = self._st["level"][r, R_HIGH] >= Level.ORANGE
        ch = vm & (s2 != s2_before)
        if not ch.any():
            return
        a = cfg.area[r[ch]]
        np.add.at(self._area_s2, a, np.where(s2[ch], 1, -1).astype(np.int32))
        areas, inv = np.unique(a, return_inverse=True)
        ts = np.full(len(areas), NO_TS, np.int64)
        np.maximum.at(ts, inv, t[ch])
        lv = self._st["level"]
        for a, ts_a in zip(areas.tolist(), ts.tolist(), strict=True):  # areas whose count moved: rare
            cnt = int(self._area_s2[a])
            cur = int(self._vote_row[a])
            if cnt >= AREA_VOTE_N and cur < 0:
                # carried by a participating detector: the lowest row at stage 2 when raised
                vr = self._voter_rows[self._voter_ptr[a] : self._voter_ptr[a + 1]]
                cur = int(vr[lv[vr, R_HIGH] >= Level.ORANGE].min())
                self._vote_row[a] = cur
            if cur < 0:
                continue
            lvl = Level.RED if cnt >= AREA_VOTE_N else Level.NONE
            self._set(R_VOTE, np.array([cur], np.int32), np.array([lvl], np.int8), float(cnt), ts_a, out)
            if lvl == Level.NONE:
                self._vote_row[a] = -1

    def _compound(self, areas: I32, now_ms: int, tick_ts: int | None, out: _Out) -> None:
        """Compound red on the temperature rows of ``areas``; event time = newer of the
        temperature reading and the area's last spark (or ``tick_ts`` when a timer clears it)."""
        st = self._st
        if self._kernel:
            if len(self._lad_i) < len(self._temp_rows):
                self._scratch(len(self._temp_rows))
            em = self._em
            k = _rk.compound(areas, self._temp_ptr, self._temp_rows, self._cfg.area, self._area_spark, st["level"],
                             st["last_ts"], st["last_v"], now_ms, 0 if tick_ts is None else tick_ts,
                             tick_ts is not None, int(SPARK_WINDOW_S * 1000), R_HIGH, R_BASE, R_COMP,
                             int(COMPOUND_TEMP_LEVEL), em[0], self._lad_prev, self._lad_new, em[1], em[2])
            if k:
                self._emit_rows(R_COMP, k, out)
            return
        lo, hi = self._temp_ptr[areas], self._temp_ptr[areas + 1]
        cnt = hi - lo
        total = int(cnt.sum())
        if total == 0:
            return
        starts = np.repeat(lo - np.concatenate(([0], np.cumsum(cnt)[:-1])), cnt)
        temps = self._temp_rows[starts + np.arange(total)]
        ls = self._area_spark[self._cfg.area[temps]]
        recent = (ls != NO_TS) & (now_ms - np.where(ls == NO_TS, 0, ls) <= int(SPARK_WINDOW_S * 1000))
        lv = st["level"]
        hot = (lv[temps, R_HIGH] >= COMPOUND_TEMP_LEVEL) | (lv[temps, R_BASE] >= Level.BLUE)
        new = np.where(recent & hot, np.int8(Level.RED), np.int8(0)).astype(np.int8)
        ts = np.maximum(st["last_ts"][temps], ls) if tick_ts is None else np.full(len(temps), tick_ts, np.int64)
        self._set(R_COMP, temps, new, st["last_v"][temps].astype(np.float64), ts, out)

    def _fresh(self, r: I32, now_ms: int) -> npt.NDArray[np.bool_]:
        """Rows whose newest reading is not older than their deadman's blue time."""
        lt = self._st["last_ts"][r]
        return np.asarray((lt != NO_TS) & (now_ms - lt <= self._cfg.dm_blue_ms[r]), dtype=bool)

    def _area_any(self, r: I32, m: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Per area (index -1 = no area, the last entry): does any of rows ``r[m]`` lie in it."""
        out_a = np.zeros(len(self._cfg.area_keys) + 1, bool)
        out_a[self._cfg.area[r[m]]] = True
        return out_a

    def _equipment(self, now_ms: int) -> None:
        """Dust equipment per area from fresh duct air velocities: runs when one reads at or
        above ``run_min``; known stopped when fresh ones exist and none does (no fresh signal:
        unknown, neither)."""
        fan = self._lk_fan
        if not len(fan):
            return
        fresh = self._fresh(fan, now_ms)
        runs = fresh & (self._st["last_v"][fan] >= self._cfg.run_min[fan])
        self._fan_runs = self._area_any(fan, runs)
        self._fan_stopped = self._area_any(fan, fresh) & ~self._fan_runs

    def _interlock(self, now_ms: int, out: _Out) -> None:
        """Interlock reds (DOMAIN.md red column, [P]), evaluated on the wall clock in ``tick``.

        Equipment state per area, from sensors whose newest reading is fresh (not older than
        their deadman's blue time): the fan / dust equipment runs when a duct air velocity is
        at or above ``run_min``; ventilation is off when a critical feeder reads <= 0.5 A. Red
        on the candidate row when, in its area:

        * dust.water_level / flow below its low limit (low rule >= yellow) while the fan runs;
        * gas.hydrogen at or above yellow (25 %LEL) while ventilation is off;
        * power.residual_current at or above orange (500 mA) with a dust temperature alarm
          (high rule >= yellow);
        * a dust temperature at orange (70 °C) while the fan runs and the isolation valve is
          in fault (cannot close);
        * dust.pressure_diff at orange and ≈0 (<= 10 % of its baseline: bag rupture) while the
          fan runs and a dust temperature is rising (baseline rule >= blue, or high >= yellow).
        """
        cand = self._lk_cand
        if not len(cand):
            return
        cfg, st = self._cfg, self._st
        lv = st["level"]
        any_in_area, fresh = self._area_any, self._fresh
        feed, temp, valve = self._lk_feed, self._lk_temp, self._lk_valve
        fan_runs = self._fan_runs
        vent_off = any_in_area(feed, fresh(feed, now_ms) & (st["last_v"][feed] <= FEEDER_ZERO_A))
        t_hi = lv[temp, R_HIGH]
        temp_alarm = any_in_area(temp, t_hi >= INTERLOCK_TEMP_LEVEL)
        temp_rise = temp_alarm | any_in_area(temp, lv[temp, R_BASE] > 0)
        valve_fault = any_in_area(valve, lv[valve, R_HIGH] >= Level.ORANGE)

        def at_least(r: I32, rule: int, level: Level) -> npt.NDArray[np.bool_]:
            return np.asarray(lv[r, rule] >= level, dtype=bool)

        parts = [
            at_least(self._lk_water, R_LOW, Level.YELLOW) & fan_runs[cfg.area[self._lk_water]],
            at_least(self._lk_h2, R_HIGH, INTERLOCK_H2_LEVEL) & vent_off[cfg.area[self._lk_h2]],
            at_least(self._lk_rcd, R_HIGH, Level.ORANGE) & temp_alarm[cfg.area[self._lk_rcd]],
            (at_least(temp, R_HIGH, Level.ORANGE) & fan_runs[cfg.area[temp]] & valve_fault[cfg.area[temp]]),
        ]
        pd = self._lk_pdiff
        near0 = st["last_v"][pd] <= PDIFF_ZERO_FRAC * cfg.baseline[pd]
        parts.append(at_least(pd, R_BASE, Level.ORANGE) & near0 & fan_runs[cfg.area[pd]] & temp_rise[cfg.area[pd]])
        red = np.concatenate(parts)
        new = np.where(red, np.int8(Level.RED), np.int8(0)).astype(np.int8)
        if self._n_off:
            held = cfg.off[cand]
            new[held] = lv[cand[held], R_LOCK]
        self._set(R_LOCK, cand, new, st["last_v"][cand].astype(np.float64), now_ms, out)

    # -- wall clock ----------------------------------------------------------------------
    def _on_clock(self, now_ms: int) -> None:
        if self._resume_from != NO_TS:
            # restart grace: the service's own downtime is not charged to the sensors
            gap = now_ms - self._resume_from
            if gap > 0:
                seen = self._st["seen_ms"][: self._n]
                quiet = (self._st["level"][: self._n, R_DEAD] == 0) & (seen != NO_TS)
                seen[quiet] += gap
            self._resume_from = NO_TS
        self._clock = max(self._clock, now_ms)

    def tick(self, now_ms: int) -> Transitions:
        """Run timers at wall-clock ``now_ms``: deadman, gateway, delay expiry, spark window."""
        self._on_clock(now_ms)
        out = _Out()
        n = self._n
        if n == 0:
            return out.build()
        st, cfg = self._st, self._cfg
        self._equipment(now_ms)
        seen = st["seen_ms"][:n]
        seen[seen == NO_TS] = now_ms  # never-seen sensors: deadman counts from the first tick
        if not self._ingest_down:  # while our own session is down, silence is ours: levels stand
            ref = np.maximum(seen, self._dev_since[self._row_dev])
            if self._ingest_since != NO_TS:  # silence counts from our return, except on rows already
                # alarmed when it began: theirs was real, it goes on (and escalates) as if never paused
                before = self._dead_at_outage
                real = ref[before]
                ref = np.maximum(ref, self._ingest_since)
                ref[before] = real
            age = now_ms - ref
            dl = np.where(age > cfg.dm_yellow_ms, np.int8(Level.YELLOW),
                          np.where(age > cfg.dm_blue_ms, np.int8(Level.BLUE), np.int8(0))).astype(np.int8)
            dl[self._dev_offline[self._row_dev]] = 0  # suppressed under an offline gateway (root alarm)
            self._grade_by_meter(dl, cfg.ent[:n], now_ms, exempt=self._is_power[:n])
            if self._n_off:  # out of service: the level stays as it was (nothing is watched)
                dl[cfg.off] = st["level"][:n, R_DEAD][cfg.off]
            rows = np.flatnonzero(dl != st["level"][:n, R_DEAD]).astype(np.int32)
            if len(rows):
                self._set(R_DEAD, rows, dl[rows], np.nan, now_ms, out)
        self._tick_gateways(now_ms, out)
        # delay-on / delay-off expiry on the held value, valid until the sensor goes stale
        busy_m = st["busy"][:n] & ~cfg.off if self._n_off else st["busy"][:n]
        busy = np.flatnonzero(busy_m).astype(np.int32)  # only busy rows hold timers; held rows are frozen
        for name in _LADDERS:
            if not len(busy):
                break
            on, off = st[f"on_{name}"][busy], st[f"off_{name}"][busy]
            rows = busy[(on != NO_TS).any(axis=1) | (off != NO_TS)]
            if not len(rows):
                continue
            last_ts = st["last_ts"][rows].astype(np.int64)
            t_eff = np.minimum(now_ms, last_ts + cfg.dm_blue_ms[rows])
            t_eff = np.maximum(t_eff, last_ts)
            s2_before = st["level"][rows, R_HIGH] >= Level.ORANGE
            self._ladder(name, rows, st["last_v"][rows].astype(np.float64), t_eff, None, out, in_ring=True)
            if name == "high":
                self._vote(rows, t_eff, s2_before, out)
            self._dirty.append(rows)
        # compound: sparks age out of the window
        comp = busy[st["level"][busy, R_COMP] > 0]
        if len(comp):
            self._compound(np.unique(cfg.area[comp]), now_ms, now_ms, out)
        self._power.tick(self, now_ms, out)
        self._interlock(now_ms, out)
        self._settle()
        return out.build()

    def _tick_gateways(self, now_ms: int, out: _Out) -> None:
        cfg = self._cfg
        offline = np.flatnonzero(self._dev_offline[: len(cfg.dev_keys)])
        if len(offline):
            since = np.array([self._gw[cfg.dev_keys[d]][1] for d in offline], np.int64)
            lvl = np.where(now_ms - since > GATEWAY_YELLOW_S * 1000, np.int8(Level.YELLOW), np.int8(Level.BLUE))
            self._raise_gateways(offline.astype(np.int32), lvl.astype(np.int8), now_ms, out)
        # a root alarm on a row that no longer carries one clears: its sensor was registered
        # again on another device (one that is online, or whose alarm another row carries)
        if len(self._gw_stale):
            gl = self._gw_stale
            self._gw_stale = np.zeros(0, np.int32)
            gl = gl[self._st["level"][gl, R_GW] > 0]
            d = cfg.dev[gl]
            keep = d >= 0  # unless it has become its new device's carrier since
            keep[keep] = self._gw_row[d[keep]] == gl[keep]
            if not keep.all():
                self._clear_gateways(gl[~keep], now_ms, out)

    def _raise_gateways(self, devs: I32, lvl: I8, ts_ms: int, out: _Out) -> None:
        """Offline devices ``devs``: their root alarm at ``lvl`` (yellow regraded by the main
        meter). It stays on the row that carries it while that sensor is in service; else it
        moves to the device's first sensor in service (the old row's alarm clears), and a
        device with every sensor out of service raises none: nothing on it is watched, and a
        decommissioned gateway's retained offline status must not alarm for ever."""
        cfg = self._cfg
        cur = self._gw_row[devs]
        keep = cur >= 0
        keep[keep] = ~cfg.off[cur[keep]]
        want = np.where(keep, cur, self._gw_first[devs]).astype(np.int32)
        moved = (cur >= 0) & (cur != want)
        if moved.any():
            self._clear_gateways(cur[moved], ts_ms, out)
        has = want >= 0
        rows, lv = want[has], lvl[has].copy()
        self._grade_by_meter(lv, cfg.ent[rows], ts_ms)
        self._set(R_GW, rows, lv, np.nan, ts_ms, out)
        for r, d in zip(rows.tolist(), devs[has].tolist(), strict=True):
            self._gw_for[r] = cfg.dev_keys[d]
        self._gw_row[devs] = want

    def _clear_gateways(self, rows: I32, ts_ms: int, out: _Out) -> None:
        """Rows' root alarms clear (their device is back, or they no longer carry it)."""
        self._set(R_GW, rows, np.zeros(len(rows), np.int8), np.nan, ts_ms, out)
        for r in rows.tolist():
            self._gw_for.pop(r, None)

    def _grade_by_meter(self, lvl: npt.NDArray[np.int8], ent: I32, now_ms: int,
                        exempt: npt.NDArray[np.bool_] | None = None) -> None:
        """Regrade yellow "offline" levels in place by the enterprise's main meter (``ent``: the
        enterprise index of each entry): red while it shows production (a blind plant at
        work), blue while it shows the plant idle (yellow means offline > 30 min *in
        production hours*) [P]; ``exempt`` entries (the meters themselves) stay yellow."""
        yel = np.flatnonzero(lvl == Level.YELLOW)
        if not len(yel):
            return
        prod, idle = self._power.meter_state(self, now_ms)
        if not (prod.any() or idle.any()):
            return
        e = ent[yel]
        e0 = np.maximum(e, 0)
        ok = e >= 0 if exempt is None else (e >= 0) & ~exempt[yel]
        lvl[yel[ok & prod[e0]]] = Level.RED
        lvl[yel[ok & idle[e0]]] = Level.BLUE

    def gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> Transitions:
        """Gateway status topic: offline raises one root alarm on the device's first sensor row
        in service (rule ``gateway_offline``; see :meth:`_raise_gateways`) and suppresses its
        sensors' deadman alarms; online clears it and restarts their deadman timers from
        ``ts_ms``."""
        key = (enterprise_id, device_id)
        self._gw[key] = (online, ts_ms)
        self._rebuild_gateways()
        out = _Out()
        cfg = self._cfg
        try:
            d = cfg.dev_keys.index(key)
        except ValueError:
            return out.build()
        if online:
            cur = self._gw_row[d : d + 1].copy()  # the transitions keep the rows array
            if cur[0] >= 0:
                self._clear_gateways(cur, ts_ms, out)
                self._gw_row[d] = -1
        else:
            self._raise_gateways(np.array([d], np.int32), np.array([Level.BLUE], np.int8), ts_ms, out)
            rows = np.flatnonzero((cfg.dev == d) & ~cfg.off).astype(np.int32)  # held rows stay frozen
            self._set(R_DEAD, rows, np.zeros(len(rows), np.int8), np.nan, ts_ms, out)
        self._settle()
        return out.build()

    @property
    def ingest_up(self) -> bool:
        """What :meth:`ingest_status` was last told (True before it was ever called)."""
        return not self._ingest_down

    def ingest_status(self, online: bool, ts_ms: int) -> None:
        """The service's own MQTT session: while it is down no deadman is raised or cleared
        (every sensor falls silent at once when the centre loses its broker or uplink; that
        is one outage of ours, seen in the service's health, not an alarm per sensor), and
        when it is back a sensor's deadman counts from ``ts_ms``, like a gateway coming back
        online, unless it was already alarmed when the outage began (its silence was real
        and goes on). Not kept in snapshots: the service starts every run as down until its
        first connection."""
        if online and self._ingest_down:
            self._ingest_since = ts_ms
        elif not online and not self._ingest_down:  # the rows already alarmed as it begins
            self._dead_at_outage = np.flatnonzero(self._st["level"][: self._n, R_DEAD])
        self._ingest_down = not online

    # -- out of service ------------------------------------------------------------------
    def set_out_of_service(self, rows: I32, off: bool) -> None:
        """Mark ``rows`` out of service (maintenance or removed) or back in, without a recompile
        (what :meth:`sync` would compile from the registry's holds)."""
        r = np.asarray(rows, np.intp)
        self._cfg.off[r] = off
        self._n_off = int(np.count_nonzero(self._cfg.off))
        self._rebuild_areas()
        self._rebuild_carriers()  # a root alarm on a row going out moves at the next tick

    def resume(self, rows: I32, now_ms: int) -> None:
        """Rows back in service at ``now_ms`` (after :meth:`sync` has compiled them in): their
        deadman and flatline timers restart from ``now_ms`` (time out of service is neither
        silence nor a stuck value)."""
        self._on_clock(now_ms)  # a restart's downtime grace first, so that it does not land on top
        r = np.asarray(rows, np.intp)
        st = self._st
        st["seen_ms"][r] = now_ms
        st["flat_since"][r] = now_ms
        for name in _LADDERS:  # a delay pending from before is void: new readings must hold it again
            st[f"on_{name}"][r] = NO_TS
            st[f"off_{name}"][r] = NO_TS
        self._dirty.append(r.astype(np.int32))
        self._settle()

    def clear_rows(self, rows: I32, now_ms: int) -> Transitions:
        """Removed sensors: every level of ``rows`` drops to none at ``now_ms`` (their alarms
        clear) and their delay timers stop. An area vote they carried or counted is
        recomputed from the remaining detectors (it moves to the lowest one still at stage 2,
        or clears)."""
        out = _Out()
        r = np.asarray(rows, np.int32)
        r = r[(r >= 0) & (r < self._n)]
        if not len(r):
            return out.build()
        st, cfg = self._st, self._cfg
        lv = st["level"]
        zero = np.zeros(len(r), np.int8)
        for rule in range(NR):
            if rule not in (R_VOTE, R_GW):  # the gateway's root alarm is the device's, not the sensor's
                self._set(rule, r, zero, np.nan, now_ms, out)
        for name in _LADDERS:
            st[f"on_{name}"][r] = NO_TS
            st[f"off_{name}"][r] = NO_TS
        self._set(R_VOTE, r, zero, np.nan, now_ms, out)
        self._rebuild_areas()  # stage-2 counts and vote carriers from the levels
        for a in np.unique(cfg.area[r]).tolist():
            cnt = int(self._area_s2[a]) if a >= 0 else 0
            cur = int(self._vote_row[a]) if a >= 0 else -1
            if a < 0 or (cnt >= AREA_VOTE_N) == (cur >= 0):
                continue  # no area, or its vote already agrees with the count
            if cur < 0:  # the carrier was removed: the lowest detector still at stage 2 takes it
                vr = self._voter_rows[self._voter_ptr[a] : self._voter_ptr[a + 1]]
                cur = int(vr[lv[vr, R_HIGH] >= Level.ORANGE].min())
            lvl = Level.RED if cnt >= AREA_VOTE_N else Level.NONE
            self._vote_row[a] = cur if lvl else -1
            self._set(R_VOTE, np.array([cur], np.int32), np.array([lvl], np.int8), float(cnt), now_ms, out)
        self._dirty.append(r)
        self._settle()
        return out.build()

    # -- persistence ---------------------------------------------------------------------
    def replay(self, row: I32, ts_ms: I64, value: F64, now_ms: int) -> Transitions:
        """After :meth:`restore`: evaluate readings that were evaluated (and stored) after the
        snapshot was taken, so that a crash loses no in-order detector state (timers, ring
        buffers, flatline and rate state, profiles). Like :meth:`evaluate`, except:

        * a reading not newer than its row's newest at restore is skipped: either the snapshot
          holds it, or it arrived late, and a late reading only ever raised a level, which the
          alarm book saved when it happened;
        * the equipment state (the valve hold) is brought to ``now_ms`` first, as a tick would;
        * the replayed span is not restart downtime: the grace of :meth:`restore` moves to the
          replay's end.

        Call in commit order, ``now_ms`` the readings' receive time. A piece of the SQLite
        store is in sensor and time order, so readings that were out of order live are
        evaluated in order; a piece of the InfluxDB journal is in arrival order, as live."""
        row = np.asarray(row, np.int32)
        ts_ms = np.asarray(ts_ms, np.int64)
        floor = self._replay_floor
        before = np.full(len(row), NO_TS, np.int64)
        old = (row >= 0) & (row < len(floor))
        before[old] = floor[row[old]]
        keep = ts_ms > before
        self._resume_from = NO_TS
        self._equipment(now_ms)
        try:
            return self.evaluate(row[keep], ts_ms[keep], np.asarray(value, np.float64)[keep], now_ms)
        finally:
            self._resume_from = self._clock

    def snapshot(self) -> dict[str, np.ndarray[Any, Any]]:
        """State and running timers as plain arrays (``np.savez``-safe)."""
        snap: dict[str, np.ndarray[Any, Any]] = dict(self._st.snapshot(self._n, "s."))
        snap["s.ring_v"] = self._ring_v[:, : self._n].T.copy()   # (rows, window)
        snap["s.ring_t"] = self._ring_t[:, : self._n].T.copy()
        keys = list(self._gw)
        snap["gw.enterprise"] = np.array([k[0] for k in keys], dtype=np.str_)
        snap["gw.device"] = np.array([k[1] for k in keys], dtype=np.str_)
        snap["gw.online"] = np.array([self._gw[k][0] for k in keys], dtype=bool)
        snap["gw.since"] = np.array([self._gw[k][1] for k in keys], dtype=np.int64)
        carried = sorted(self._gw_for.items())
        snap["gw.carrier_row"] = np.array([r for r, _ in carried], dtype=np.int64)
        snap["gw.carrier_enterprise"] = np.array([k[0] for _, k in carried], dtype=np.str_)
        snap["gw.carrier_device"] = np.array([k[1] for _, k in carried], dtype=np.str_)
        snap["clock"] = np.array([self._clock], np.int64)
        snap["rule_names"] = np.array(self.rule_names, dtype=np.str_)
        snap.update(self._power.snapshot(self._n))
        if self._anomaly is not None:
            for k, a in self._anomaly.snapshot().items():
                snap[f"anomaly.{k}"] = a
        return snap

    def restore(self, snap: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Load a :meth:`snapshot` (taken with the same or fewer sensor rows)."""
        names = [str(x) for x in snap.get("rule_names", np.array([], np.str_))]
        if names != self.rule_names[: len(names)]:
            raise ValueError(f"snapshot rule names {names} are not a prefix of {self.rule_names}")
        st_snap = {k: v for k, v in snap.items() if k.startswith("s.")}
        lvl = st_snap.get("s.level")
        if lvl is not None and lvl.ndim == 2 and lvl.shape[1] < NR:  # saved before rules were appended
            st_snap["s.level"] = np.pad(lvl, ((0, 0), (0, NR - lvl.shape[1])))
        rows = self._st.restore(st_snap, "s.")
        for key, ring in (("s.ring_v", self._ring_v), ("s.ring_t", self._ring_t)):
            a = snap.get(key)
            if a is not None:
                if a.shape[1] != self._w or len(a) > ring.shape[1]:
                    raise ValueError(f"snapshot {key} has shape {a.shape}, expected (<= {ring.shape[1]}, {self._w})")
                ring[:, : len(a)] = a.T
        if rows > self._n:
            raise ValueError(f"snapshot holds {rows} rows but the registry has {self._n}")
        self._gw = {
            (str(e), str(d)): (bool(o), int(s))
            for e, d, o, s in zip(snap.get("gw.enterprise", []), snap.get("gw.device", []),
                                  snap.get("gw.online", []), snap.get("gw.since", []), strict=True)
        }
        self._gw_for = {  # older snapshots: none (every carrying row is taken as its device's)
            int(r): (str(e), str(d))
            for r, e, d in zip(snap.get("gw.carrier_row", []), snap.get("gw.carrier_enterprise", []),
                               snap.get("gw.carrier_device", []), strict=True)
        }
        self._rebuild_gateways()
        self._rebuild_carriers()
        self._rebuild_areas()
        self._clock = int(snap.get("clock", np.array([NO_TS]))[0])
        self._resume_from = self._clock
        self._replay_floor = self._st["last_ts"][:rows].astype(np.int64)
        self._dirty.append(np.arange(rows, dtype=np.int32))
        self._settle()
        if self._clock != NO_TS:  # equipment state as at the snapshot (the valve hold reads it)
            self._equipment(self._clock)
        self._power.restore(snap)
        if self._anomaly is not None:
            sub = {k[len("anomaly."):]: v for k, v in snap.items() if k.startswith("anomaly.")}
            if sub:
                self._anomaly.restore(sub)
                self._anomaly.grow(self._st.cap)  # the registry may have grown since the snapshot


__all__ = ["AlarmEngine"]
