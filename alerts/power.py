"""Power analytics per enterprise: learned load profile, 停产不停电, overload, night, feeders.

Works on each enterprise's main meter (``power.active_power``, kW) and on critical
feeders (``power.feeder_current`` with ``params.critical = true``, A):

- **profile**: an hour-of-week (local time, :data:`TZ_OFFSET_H`) running mean and variance
  of the main-meter power, learned only while the enterprise's status is ``normal``;
- **overload** (rule ``overload``): yellow > 110 % and orange > 125 % held 1 h of the
  registered capacity are compiled thresholds (alerts.compile); blue is set here per
  reading to the profile's P95 (mean + 1.645 sd) for the hour of week [F: Zhejiang];
- **production-like** power: >= 50 % of the enterprise's production load (the 75th
  percentile of its learned hour-of-week means; 30 % of capacity before anything is learnt);
- **suspension** (rule ``suspension``, status ``suspended``): blue when power exceeds the
  learned suspended baseline (before it is learnt: the meter's ``params.baseline``, kW)
  by 20 %; yellow when power has been production-like for 15 min; orange when, while
  production-like, today's energy has reached 30 % of a normal production day (the
  learned weekday's profile, else 12 h at the production load) [P];
- **night** (rule ``night``): production-like power at night (22:00-06:00 local) under a
  suspension order -> red, under a limitation -> yellow [P];
- **critical_feeder** (rule ``critical_feeder``): a critical feeder at <= 0.5 A while the
  enterprise is producing (status not suspended and, when it has a main meter, power is
  production-like) -> red [P].

Memory: main meters carry 168 x 20 bytes of profile (3.4 KB each, one per enterprise);
other sensors carry nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from alerts.compile import FEEDER_ZERO_A, Compiled
from alerts.rules import (
    NIGHT_END_H,
    NIGHT_START_H,
    P95_Z,
    PROD_FRAC,
    PROD_HOLD_FRAC,
    PROFILE_MAX_N,
    PROFILE_MIN_N,
    RULE,
    SUSP_BLUE_FACTOR,
    SUSP_ORANGE_ENERGY,
    SUSP_YELLOW_S,
    TZ_OFFSET_H,
)
from alerts.state import NO_TS
from plantwatch.domain import Level, ProductionStatus

if TYPE_CHECKING:
    from alerts.engine import AlarmEngine, _Out

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

H_MS = 3_600_000
R_OVER, R_SUSP, R_NIGHT, R_FEED = RULE["overload"], RULE["suspension"], RULE["night"], RULE["critical_feeder"]
_STATUS = {str(ProductionStatus.NORMAL): 0, str(ProductionStatus.SUSPENDED): 1, str(ProductionStatus.LIMITED): 2}
_SUSPENDED, _LIMITED = 1, 2
_STATE = ("prof_mean", "prof_var", "prof_n", "susp_mean", "susp_n", "e_day", "day", "p_ts", "p_v", "prod_since")


def local_hours(ts_ms: I64) -> I64:
    """Hours since the epoch in local time (TZ_OFFSET_H)."""
    return (np.asarray(ts_ms, np.int64) + int(TZ_OFFSET_H * H_MS)) // H_MS


def hour_of_week(ts_ms: I64) -> I64:
    """Local hour of week, Monday 00:00 = 0 (the epoch was a Thursday)."""
    h = local_hours(ts_ms)
    return np.asarray(((h // 24 + 3) % 7) * 24 + h % 24, np.int64)


class PowerAnalytics:
    """Per-enterprise power state, indexed by main-meter number ``p`` (see module docstring)."""

    def __init__(self) -> None:
        self._rows = np.zeros(0, np.int32)    # p -> row
        self._pidx = np.zeros(0, np.int32)    # row -> p (-1)
        self._alloc(0)
        self._status = np.zeros(0, np.int8)
        self._ent_meter = np.zeros(0, np.int32)
        self._cfg: Compiled | None = None

    def _alloc(self, m: int) -> None:
        self.prof_mean = np.zeros((m, 168))
        self.prof_var = np.zeros((m, 168))
        self.prof_n = np.zeros((m, 168), np.int32)
        self.susp_mean = np.zeros(m)
        self.susp_n = np.zeros(m, np.int32)
        self.e_day = np.zeros(m)
        self.day = np.full(m, NO_TS, np.int64)
        self.p_ts = np.full(m, NO_TS, np.int64)
        self.p_v = np.full(m, np.nan)
        self.prod_since = np.full(m, NO_TS, np.int64)

    def sync(self, cfg: Compiled, cap: int) -> None:
        """Re-index main meters after a registry change, keeping learned state by row."""
        old = {name: getattr(self, name) for name in _STATE}
        old_rows = self._rows
        rows = np.flatnonzero(cfg.main_meter).astype(np.int32)
        self._alloc(len(rows))
        pidx = np.full(cfg.n, -1, np.int32)
        pidx[rows] = np.arange(len(rows), dtype=np.int32)
        if len(old_rows):
            keep = old_rows < cfg.n
            src = np.flatnonzero(keep)
            dst = pidx[old_rows[keep]]
            ok = dst >= 0
            for name in _STATE:
                getattr(self, name)[dst[ok]] = old[name][src[ok]]
        self._rows, self._pidx, self._cfg = rows, pidx, cfg
        self._status = np.array([_STATUS.get(s, 0) for s in cfg.ent_status], np.int8)
        meters = np.full(len(cfg.ent_ids), -1, np.int32)
        for r in rows[::-1]:  # the first main meter of an enterprise wins
            if cfg.ent[r] >= 0:
                meters[cfg.ent[r]] = r
        self._ent_meter = meters

    def bytes_per_row(self) -> int:
        """Power state per sensor row that every row pays (the row -> meter index)."""
        return 4

    def bytes_per_meter(self) -> int:
        return int(sum(getattr(self, n)[:1].nbytes for n in _STATE))

    # -- helpers --------------------------------------------------------------------------
    def _production(self, p: I32) -> F64:
        """Production load of each meter, kW: the 75th percentile of its learned hour-of-week
        means (buckets with >= PROFILE_MIN_N samples), else 30 % of capacity, else NaN."""
        cfg = self._cfg
        assert cfg is not None
        if not len(p):
            return np.zeros(0)
        means = np.where(self.prof_n[p] >= PROFILE_MIN_N, self.prof_mean[p], np.nan)
        learned = ~np.isnan(means).all(axis=1)
        q = np.full(len(p), np.nan)
        if learned.any():
            q[learned] = np.nanpercentile(means[learned], 75, axis=1)
        return np.where(learned, q, 0.3 * cfg.capacity_kw[self._rows[p]])

    def _status_of(self, rows: I32) -> npt.NDArray[np.int8]:
        cfg = self._cfg
        assert cfg is not None
        ent = cfg.ent[rows]
        st: npt.NDArray[np.int8] = np.where(ent >= 0, self._status[np.maximum(ent, 0)], 0).astype(np.int8)
        return st

    def meter_state(self, engine: AlarmEngine, now_ms: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Per enterprise index: (producing, idle). Producing: the main meter is fresh at
        ``now_ms`` and shows production-like power; idle: fresh and below that (outside
        production hours). Unknown (no meter, a stale one, no learnt load and no capacity) is
        neither."""
        cfg = self._cfg
        assert cfg is not None
        prod_out = np.zeros(len(cfg.ent_ids), bool)
        idle_out = np.zeros(len(cfg.ent_ids), bool)
        has = np.flatnonzero(self._ent_meter >= 0) if len(self._ent_meter) else np.zeros(0, np.intp)
        if not len(has):
            return prod_out, idle_out
        rows = self._ent_meter[has]
        st = engine._st
        last_ts = st["last_ts"][rows].astype(np.int64)
        fresh = (last_ts != NO_TS) & (now_ms - last_ts <= cfg.dm_blue_ms[rows])
        prod = self._production(self._pidx[rows])
        v = st["last_v"][rows]
        prod_out[has] = fresh & (v >= PROD_FRAC * prod)
        idle_out[has] = fresh & (v < PROD_FRAC * prod)  # NaN production level: neither
        return prod_out, idle_out

    # -- called by the engine --------------------------------------------------------------
    def prepare(self, engine: AlarmEngine, r: I32, t: I64) -> None:
        """Before the overload ladder: set its blue column to the learned P95 for this hour."""
        cfg = self._cfg
        if cfg is None or not len(self._rows):
            return
        m = cfg.main_meter[r]
        if not m.any():
            return
        rows, ts = r[m], t[m]
        p = self._pidx[rows]
        how = hour_of_week(ts)
        n = self.prof_n[p, how]
        mean = self.prof_mean[p, how]
        sd = np.maximum(np.sqrt(np.maximum(self.prof_var[p, how], 0.0)), 0.05 * np.abs(mean))
        p95 = mean + P95_Z * sd
        ok = (n >= PROFILE_MIN_N) & (self._status_of(rows) == 0)
        cfg.overload.thr[rows, 0] = np.where(ok, p95, np.nan)
        cfg.overload.clr[rows, 0] = np.where(ok, p95 - 0.5 * sd, np.nan)

    def observe(self, engine: AlarmEngine, r: I32, t: I64, v: F64, out: _Out) -> None:
        """In-order slow-path readings: learn, integrate energy, evaluate power rules."""
        cfg = self._cfg
        if cfg is None:
            return
        m = cfg.main_meter[r]
        if m.any() and len(self._rows):
            self._meters(engine, r[m], t[m], v[m], out, learn=True)
        f = cfg.critical[r]
        if f.any():
            self._feeders(engine, r[f], t[f], v[f], out)

    def tick(self, engine: AlarmEngine, now_ms: int, out: _Out) -> None:
        """Re-evaluate meters and critical feeders on their held values (status changes, time)."""
        cfg = self._cfg
        if cfg is None:
            return
        st = engine._st
        for sel, fn in ((self._rows, "m"), (np.flatnonzero(cfg.critical).astype(np.int32), "f")):
            if not len(sel):
                continue
            last_ts = st["last_ts"][sel]
            ok = (last_ts != NO_TS) & ~cfg.off[sel]  # out-of-service rows are frozen
            rows = sel[ok]
            if not len(rows):
                continue
            lt = last_ts[ok].astype(np.int64)
            t = np.maximum(np.minimum(now_ms, lt + cfg.dm_blue_ms[rows]), lt)
            v = st["last_v"][rows].astype(np.float64)
            if fn == "m":
                self._meters(engine, rows, t, v, out, learn=False)
            else:
                self._feeders(engine, rows, t, v, out)
            engine._dirty.append(rows)

    def _meters(self, engine: AlarmEngine, rows: I32, t: I64, v: F64, out: _Out, *, learn: bool) -> None:
        p = self._pidx[rows]
        how = hour_of_week(t)
        status = self._status_of(rows)
        lv = engine._st["level"]
        if learn:
            # energy today (local day), left-rectangle, gaps capped at one hour
            day = local_hours(t) // 24
            prev_ts = self.p_ts[p]
            dt_h = np.where(prev_ts == NO_TS, 0.0, np.minimum(t - prev_ts, H_MS) / H_MS)
            e = np.where(self.day[p] == day, self.e_day[p] + np.nan_to_num(self.p_v[p]) * dt_h, 0.0)
            self.e_day[p], self.day[p], self.p_ts[p], self.p_v[p] = e, day, t, v
        typical = self._production(p)
        prev_s = lv[rows, R_SUSP]
        frac = np.where(prev_s >= Level.YELLOW, PROD_HOLD_FRAC, PROD_FRAC)
        prodlike = v >= frac * typical  # NaN (nothing learned, no capacity) -> False
        # suspension (停产不停電): only under a suspension order
        susp = status == _SUSPENDED
        since = np.where(susp & prodlike, np.where(self.prod_since[p] == NO_TS, t, self.prod_since[p]), NO_TS)
        self.prod_since[p] = since
        cfg = self._cfg
        assert cfg is not None
        base = np.where(self.susp_n[p] >= PROFILE_MIN_N, self.susp_mean[p], cfg.idle_kw[rows])
        blue = susp & (v > SUSP_BLUE_FACTOR * base)
        yellow = susp & (since != NO_TS) & (t - since >= int(SUSP_YELLOW_S * 1000))
        wd = ((local_hours(t) // 24 + 3) % 7).astype(np.int64)
        day_cols = wd[:, None] * 24 + np.arange(24)[None, :]
        learned_day = (self.prof_n[p[:, None], day_cols] >= PROFILE_MIN_N).all(axis=1)
        normal_day = np.where(learned_day, self.prof_mean[p[:, None], day_cols].sum(axis=1), 12.0 * typical)
        # the energy criterion grades an ongoing violation (not the idle hours after one)
        orange = susp & prodlike & (self.e_day[p] >= SUSP_ORANGE_ENERGY * normal_day)
        new_s = np.select([orange, yellow, blue], [Level.ORANGE, Level.YELLOW, Level.BLUE], 0).astype(np.int8)
        engine._set(R_SUSP, rows, new_s, v, t, out)
        # night production under an order
        hour = local_hours(t) % 24
        night = (hour >= NIGHT_START_H) | (hour < NIGHT_END_H)
        nl = np.where(night & prodlike & (v >= PROD_FRAC * typical),
                      np.where(status == _SUSPENDED, Level.RED, np.where(status == _LIMITED, Level.YELLOW, 0)), 0)
        engine._set(R_NIGHT, rows, nl.astype(np.int8), v, t, out)
        if learn:
            normal = status == 0
            if normal.any():
                pp, hh, vv = p[normal], how[normal], v[normal]
                n1 = np.minimum(self.prof_n[pp, hh] + 1, PROFILE_MAX_N)
                d = vv - self.prof_mean[pp, hh]
                mean = self.prof_mean[pp, hh] + d / n1
                self.prof_var[pp, hh] += (d * (vv - mean) - self.prof_var[pp, hh]) / n1
                self.prof_mean[pp, hh] = mean
                self.prof_n[pp, hh] = n1
            quiet = susp & ~prodlike & (new_s == 0)
            if quiet.any():
                pp, vv = p[quiet], v[quiet]
                n1 = np.minimum(self.susp_n[pp] + 1, PROFILE_MAX_N)
                self.susp_mean[pp] += (vv - self.susp_mean[pp]) / n1
                self.susp_n[pp] = n1

    def _feeders(self, engine: AlarmEngine, rows: I32, t: I64, v: F64, out: _Out) -> None:
        cfg = self._cfg
        assert cfg is not None
        running = self._status_of(rows) != _SUSPENDED
        ent = cfg.ent[rows]
        meter = np.where(ent >= 0, self._ent_meter[np.maximum(ent, 0)], -1) if len(self._ent_meter) else \
            np.full(len(rows), -1, np.int32)
        has = meter >= 0
        if has.any():
            mrows = meter[has].astype(np.int32)
            mv = engine._st["last_v"][mrows].astype(np.float64)
            typ = self._production(self._pidx[mrows])
            producing = np.where(np.isnan(typ), True, mv >= PROD_FRAC * typ) & ~np.isnan(mv)
            running[has] &= producing
        new = np.where(running & (v <= FEEDER_ZERO_A), Level.RED, 0).astype(np.int8)
        engine._set(R_FEED, rows, new, v, t, out)

    # -- persistence ------------------------------------------------------------------------
    def snapshot(self, n: int) -> dict[str, np.ndarray[Any, Any]]:
        snap: dict[str, np.ndarray[Any, Any]] = {f"power.{k}": getattr(self, k).copy() for k in _STATE}
        snap["power.rows"] = self._rows.copy()
        return snap

    def restore(self, snap: Any) -> None:
        rows = snap.get("power.rows")
        if rows is None or self._cfg is None:
            return
        rows = np.asarray(rows, np.int32)
        ok = rows < len(self._pidx)
        dst = np.where(ok, self._pidx[np.where(ok, rows, 0)], -1)
        good = dst >= 0
        for name in _STATE:
            a = snap.get(f"power.{name}")
            if a is not None:
                getattr(self, name)[dst[good]] = np.asarray(a)[good]
