"""Online statistical anomaly score for early warning, vectorised across sensors.

Per sensor (row) the scorer keeps a fixed-size state: an EWMA forecast with a robust
residual scale, a ring buffer of recent values, a short and a long history of the
resulting *surprise*, a time-of-day profile, and a refractory timer. Per sample, for the
sensors in the call (all numpy, no per-sensor Python loop):

1. Surprise ``u = max(z_point, z_level)``, clipped at ``max_z``:
   ``z_point`` is the residual against the EWMA forecast in units of the EW mean absolute
   residual (floored by a fraction of the long spread, so a flat signal cannot divide by
   zero); ``z_level`` compares the mean of the newest ``level_window`` values with the
   older ring contents (a level shift or drift, in units of the older spread). The ring's
   sums are kept as running sums, so the cost per sample is O(1), not O(ring).
2. ``short`` = EW average of ``u`` over a few samples (a sustained change counts more
   than one blip).
3. Tail transform (the "anomaly likelihood" idea): ``short`` is compared with the long-run
   mean and standard deviation of ``short`` itself (learnt from deviations clipped at
   ``robust_clip`` sd, so one incident does not blind the sensor to the next); the
   Gaussian upper tail probability ``p`` maps to ``score = min(1, -log10(p) / (2 k))``:
   ``score >= 0.5`` means ``p <= 10**-k`` (``k = tail_digits``, default 8).
   Recurring episodes: a run of ``short`` at a tail argument of at least ``episode_z`` is an
   episode of surprise; each sensor remembers the peaks of its last ``episode_slots`` ended
   episodes for ``episode_memory`` samples, and the tail score of a sample in an episode is
   divided by ``1 + episode_beta * k``, ``k`` the remembered episodes at least as large (a
   nightly job's spike of one size, every night, becomes usual; the robust clip above keeps
   it from ever doing so in the long-run statistics, on purpose). A larger one is not damped.
   A second, direct score catches novelty: a value beyond the slowly contracting envelope
   (max and min) of everything the sensor has reported scores ``0.5`` at ``novelty_z``
   residual scales outside it, the scale being at least ``novelty_width`` of the envelope's
   width (a new extreme is an anomaly whatever its history of surprise; a spike 0.05 above
   the last of many 1.4 spikes is not a new extreme).
4. Seasonal damping: if the value is usual for this time of day (hour bucket, learnt per
   sensor), the score is scaled down to at least ``season_lo`` (a daily cycle is not an
   incident).
4b. Time-of-day novelty (``tod``): the value's band (``tod_bins`` bands across the envelope)
   in this time-of-day bucket gets novelty ``1 / (1 + visits)``; its short EW average is
   compared with its own long-run mean and spread (learnt, at rates starting at 1/count, on
   samples at least a day after the sensor's first) and scores ``0.5`` at a tail of
   ``10**-tod_digits``, only while the average is at least ``tod_gate`` (a run of novel
   bands, not one), two days after the first sample and once ``tod_min_learn`` samples are
   learnt (a sensor silent for days after a few hours of data has learnt nothing). It
   catches what every residual test misses: a value ordinary in itself but not at this hour
   (a plant that did not start, a night at day load, a daily peak that did not come). The
   score is the larger of the two, not damped by step 4.
5. Refractory: after a score >= ``fire_level`` the sensor's scores ramp from 0 back to 1
   over ``refractory`` samples, so one incident fires once.

Calibration on white noise (``benchmarks/nab_noise_calibration.py`` and docs/bench/nab.md):
a score >= 0.5 comes a few times in 10**5 samples, mostly new extremes of the noise itself;
at one sample a minute that is under 0.1 fires per sensor-day, with scores >= 0.9 (what the
engine grades blue) rarer still. Faster sensors see proportionally more samples a day.

A row's score depends only on that row and earlier ones: it is computed before the sample
is learnt. Memory per sensor: :meth:`AnomalyScorer.bytes_per_sensor` = 2040 bytes with the
defaults (a 128-value ring, 3 x 24 seasonal cells, 2 x 8 episode slots and 24 scalars, 8
bytes each, and 5 x 24 one-byte visit counts).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["AnomalyParams", "AnomalyScorer", "log10_gauss_tail", "score_series"]

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AnomalyParams:
    """Tuning of :class:`AnomalyScorer` (counts in samples, rates per sample)."""

    alpha_mean: float = 0.05  # EWMA forecast rate
    alpha_scale: float = 0.01  # EW mean-absolute-residual rate (robust residual scale)
    alpha_short: float = 0.3  # short average of the surprise
    alpha_long: float = 0.002  # long-run mean/variance of the short surprise
    ring: int = 128  # recent values kept for the level-shift test
    level_window: int = 16  # newest values averaged for the level-shift test
    warmup: int = 30  # samples scored 0 while the state settles
    tail_digits: float = 8.0  # score 0.5 <=> Gaussian tail probability 10**-tail_digits
    novelty_z: float = 1.5  # excess beyond the envelope (residual-scale units) that scores 0.5; 0 = off
    novelty_width: float = 0.05  # ... where the unit is at least this fraction of the envelope's width
    envelope_decay: float = 0.0002  # per-sample contraction of the envelope toward its middle
    robust_clip: float = 5.0  # long-run stats learn deviations clipped at this many sd (0 = off)
    min_sd: float = 0.01  # floor of the short surprise's long-run standard deviation
    max_z: float = 30.0  # surprise is clipped here (30 sigma is simply "impossible")
    scale_floor: float = 0.01  # floor of the residual scale, as a fraction of the long spread
    season: bool = True  # damp scores of values usual for their time of day
    season_ms: int = 3_600_000  # seasonal bucket width (ms)
    season_buckets: int = 24  # buckets per season (24 x 1 h = a day)
    season_alpha: float = 0.1  # EW rate per visit of a bucket
    season_c: float = 3.0  # seasonal |z| at which the damping ends
    season_lo: float = 0.5  # smallest damping factor (a value usual for its hour)
    season_min: int = 20  # visits of a bucket before it damps
    tod: bool = True  # time-of-day novelty: a value in a band rarely or never seen at this time of day
    tod_bins: int = 5  # value bands across the envelope
    tod_alpha: float = 0.15  # short average of the novelty 1 / (1 + visits of the band at this hour)
    tod_digits: float = 12.0  # its tail: score 0.5 <=> tail probability 10**-tod_digits
    tod_gate: float = 0.2  # and only while that average is at least this (a run of novel bands, not one)
    # it learns the novelty's long-run statistics after one season (day) of history and scores after two
    tod_min_sd: float = 1e-3  # floor of the novelty average's long-run standard deviation
    tod_min_learn: int = 100  # samples its long-run statistics must have learnt before it scores
    episode_z: float = 4.5  # tail argument of the short surprise at which an episode of surprise starts
    episode_gap: int = 10  # samples below it that end the episode (its peak is then remembered)
    episode_slots: int = 8  # past episode peaks remembered per sensor
    episode_memory: int = 5000  # samples an ended episode is remembered
    episode_rho: float = 1.0  # a past episode counts against one whose z is at most its peak / rho
    episode_beta: float = 0.1  # tail score / (1 + beta x past episodes as large); 0 = off
    fire_level: float = 0.5  # a score at or above this starts the refractory period
    refractory: int = 150  # samples over which scores ramp back from 0 to 1 after a fire

    def __post_init__(self) -> None:
        for name in ("alpha_mean", "alpha_scale", "alpha_short", "alpha_long", "season_alpha"):
            a = getattr(self, name)
            if not 0.0 < a <= 1.0:
                raise ValueError(f"AnomalyParams.{name} must be in (0, 1], got {a}")
        if not 2 <= self.level_window < self.ring:
            raise ValueError("AnomalyParams: need 2 <= level_window < ring")
        if self.tail_digits <= 0 or self.refractory < 0 or self.warmup < 0:
            raise ValueError("AnomalyParams: need tail_digits > 0, refractory >= 0, warmup >= 0")
        if self.season_ms <= 0 or self.season_buckets < 1 or not 0.0 <= self.season_lo <= 1.0:
            raise ValueError("AnomalyParams: need season_ms > 0, season_buckets >= 1, 0 <= season_lo <= 1")
        if (self.tod_bins < 1 or not 0.0 < self.tod_alpha <= 1.0 or self.tod_digits <= 0 or self.tod_min_sd <= 0
                or self.tod_min_learn < 0):
            raise ValueError("AnomalyParams: need tod_bins >= 1, 0 < tod_alpha <= 1, tod_digits > 0, tod_min_sd > 0, "
                             "tod_min_learn >= 0")
        if (self.novelty_width < 0 or self.episode_z <= 0 or self.episode_gap < 0 or self.episode_slots < 1
                or not 0 <= self.episode_memory < 10**15 or self.episode_rho <= 0 or self.episode_beta < 0):
            raise ValueError("AnomalyParams: need novelty_width >= 0, episode_z > 0, episode_gap >= 0, "
                             "episode_slots >= 1, 0 <= episode_memory < 1e15, episode_rho > 0, episode_beta >= 0")


_LN10 = math.log(10.0)
_SD_TO_MAD = math.sqrt(2.0 / math.pi)  # mean absolute deviation / standard deviation (Gaussian)
# Numerical Recipes erfcc: erfc(x) = t exp(-x^2 + P(t)), t = 1 / (1 + x/2), rel. error < 1.2e-7
_ERFC_COEF = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def log10_gauss_tail(z: F64) -> F64:
    """log10 of the standard normal upper tail Q(z) = P(Z > z), accurate far into the tail."""
    z = np.asarray(z, dtype=np.float64)
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_COEF):
        poly = poly * t + c
    ln_q_abs = np.log(t) - x * x + poly - math.log(2.0)  # ln Q(|z|)
    ln_q = np.where(z >= 0, ln_q_abs, np.log1p(-np.exp(ln_q_abs)))
    return np.asarray(ln_q / _LN10, dtype=np.float64)


TAIL_Z0 = -9.0
"""Lowest z of the compiled kernel's table of ``-log10_gauss_tail`` (below it: the formula)."""
TAIL_H = 1.0 / 32.0
"""Interval width of the table; z = 0 (where the formula switches branch) is an interval edge."""
TAIL_Z1 = 12.0
"""Top of the table (above it, rare: the formula)."""
TAIL_DEGREE = 5
"""Polynomial degree per interval (the compiled evaluation is written out for 5)."""


def tail_table() -> F64:
    """``-log10_gauss_tail`` on [TAIL_Z0, TAIL_Z1) as one polynomial per interval of width
    TAIL_H, interpolated at Chebyshev nodes: ``(intervals, TAIL_DEGREE + 1)`` coefficients in
    the interval's local coordinate s in [0, 1), lowest first. The compiled scorer evaluates
    it instead of the formula's three libm calls per sample (~7 ns instead of ~48); it agrees
    with the formula to ~3e-13 in the score (the formula's own rounding), checked in
    ``tests/alerts/test_anomaly.py``."""
    n = round((TAIL_Z1 - TAIL_Z0) / TAIL_H)
    k = np.arange(TAIL_DEGREE + 1)
    nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / (2 * (TAIL_DEGREE + 1)))
    inv = np.linalg.inv(np.vander(nodes, TAIL_DEGREE + 1, increasing=True))
    z = TAIL_Z0 + (np.arange(n)[:, None] + nodes[None, :]) * TAIL_H
    return np.ascontiguousarray((-log10_gauss_tail(z)) @ inv.T)


T0_UNSET = np.iinfo(np.int64).min
"""``t0`` of a row that has seen no sample since the time-of-day state was created."""
EP_NEVER = -(10**15)
"""Sample count of an episode that never was (far enough back to be outside any memory)."""

# per-sensor state: 1-D arrays (name, dtype, initial value) and 2-D arrays (name, width attribute)
_STATE1 = (
    ("n", np.int64, 0),  # samples learnt
    ("mean", np.float64, 0.0),  # EWMA forecast
    ("scale", np.float64, 0.0),  # EW mean |residual|
    ("spread", np.float64, 0.0),  # EW mean |residual| on the scale rate, never floored (for floors)
    ("short", np.float64, 0.0),  # short EW average of the surprise
    ("mu_u", np.float64, 0.0),  # long-run mean of the short surprise
    ("var_u", np.float64, 0.0),  # long-run variance of the short surprise
    ("head", np.int64, 0),  # ring write position
    ("env_hi", np.float64, 0.0),  # decaying envelope of every value seen: top
    ("env_lo", np.float64, 0.0),  # and bottom
    ("ref", np.float64, 0.0),  # reference the ring sums are centred on
    ("sum_old", np.float64, 0.0),  # sum of (older ring values - ref)
    ("sumsq_old", np.float64, 0.0),  # sum of their squares
    ("sum_rec", np.float64, 0.0),  # sum of (newest level_window - 1 values - ref)
    ("fired", np.int64, -(10**9)),  # sample count at the last fire
    ("t0", np.int64, T0_UNSET),  # timestamp of the first sample (ms)
    ("tod_short", np.float64, 0.0),  # short EW average of the time-of-day novelty
    ("tod_mu", np.float64, 0.0),  # its long-run mean
    ("tod_var", np.float64, 0.0),  # and variance
    ("tod_n", np.int64, 0),  # samples those have learnt
    ("ep_in", np.int64, 0),  # 1 while an episode of surprise is open
    ("ep_peak", np.float64, 0.0),  # its peak tail argument so far
    ("ep_last", np.int64, EP_NEVER),  # sample count when it was last at or above episode_z
    ("ep_head", np.int64, 0),  # next slot of the past-episode tables
)
_STATE2 = ("ring", "s_mean", "s_dev", "s_cnt")
_STATE3 = ("tod_cnt",)  # uint8 (rows, tod_bins x season_buckets): visits per value band and bucket, saturating
# (rows, episode_slots): peaks of past episodes of surprise and the sample counts they ended at
_STATE4: tuple[tuple[str, type[np.generic], float | int], ...] = (
    ("ep_peaks", np.float64, 0.0), ("ep_ends", np.int64, EP_NEVER))
_NEW_STATE = ("t0", "tod_short", "tod_mu", "tod_var", "tod_n", "tod_cnt",  # absent from snapshots of older versions
              "ep_in", "ep_peak", "ep_last", "ep_head", "ep_peaks", "ep_ends")
_STATE_NAMES = tuple(s[0] for s in _STATE1) + _STATE2 + _STATE3 + tuple(s[0] for s in _STATE4)


class AnomalyScorer:
    """Vectorised online anomaly scorer: one state row per sensor, scores in [0, 1].

    ``backend``: ``"compiled"`` (default) runs the per-row update compiled with numba
    (``alerts._anomaly_kernel``); ``"numpy"`` runs the whole-array formulation below, which
    is the specification the compiled kernel is tested against. Both keep the same state.
    """

    def __init__(self, capacity: int, *, backend: str = "compiled", **params: float | int | bool) -> None:
        if backend not in ("compiled", "numpy"):
            raise ValueError(f"AnomalyScorer backend must be 'compiled' or 'numpy', got {backend!r}")
        self.backend = backend
        self.params = AnomalyParams(**params)  # type: ignore[arg-type]
        self.capacity = 0
        self._alloc(0)
        self.grow(capacity)
        if backend == "compiled":  # compile (or load from numba's cache) now, not on the first reading
            self._score_learn_compiled(np.zeros(0, np.intp), np.zeros(0), np.zeros(0, np.int64))

    # State layout: the scalars of a row sit side by side in one record (a structured array,
    # 160 bytes), and the three seasonal values of a bucket side by side too, so scoring a
    # sensor touches ~5 cache lines instead of ~20 when rows arrive in random order. The
    # named attributes (``self.mean``, ``self.s_dev``, ...) are strided views into them.
    n: I64
    mean: F64
    scale: F64
    spread: F64
    short: F64
    mu_u: F64
    var_u: F64
    head: I64
    env_hi: F64
    env_lo: F64
    ref: F64
    sum_old: F64
    sumsq_old: F64
    sum_rec: F64
    fired: I64
    t0: I64
    tod_short: F64
    tod_mu: F64
    tod_var: F64
    tod_n: I64
    tod_cnt: npt.NDArray[np.uint8]
    ep_in: I64
    ep_peak: F64
    ep_last: I64
    ep_head: I64
    ep_peaks: F64
    ep_ends: I64
    ring: F64
    s_mean: F64
    s_dev: F64
    s_cnt: F64

    def _alloc(self, cap: int) -> None:
        """Fresh storage for ``cap`` rows (initial values), bound to the named views."""
        rec = np.empty(cap, dtype=np.dtype([(name, dt) for name, dt, _ in _STATE1]))
        for name, _, init in _STATE1:
            rec[name] = init
        self._rec = rec
        # the same records as 2-D float64 / int64 views (every field is 8 bytes): the compiled kernel
        # reads column ``alerts._anomaly_kernel.C_*`` of either
        self._rec_f = rec.view(np.float64).reshape(cap, len(_STATE1))
        self._rec_i = rec.view(np.int64).reshape(cap, len(_STATE1))
        self._season = np.zeros((cap, self.params.season_buckets, 3))
        for name, _, _ in _STATE1:
            setattr(self, name, rec[name])
        self.s_mean, self.s_dev, self.s_cnt = (self._season[:, :, k] for k in range(3))
        self.ring = np.zeros((cap, self.params.ring))
        self.tod_cnt = np.zeros((cap, self.params.tod_bins * self.params.season_buckets), np.uint8)
        for name, dt, init in _STATE4:
            setattr(self, name, np.full((cap, self.params.episode_slots), init, dt))

    def bytes_per_sensor(self) -> int:
        """State bytes per sensor row (fixed; independent of how many samples were learnt)."""
        per = sum(np.dtype(dt).itemsize for _, dt, _ in _STATE1)
        p = self.params
        return per + 8 * (p.ring + 3 * p.season_buckets + 2 * p.episode_slots) + p.tod_bins * p.season_buckets

    def grow(self, capacity: int) -> None:
        """Make room for sensor rows ``[0, capacity)``; existing state is kept."""
        if capacity <= self.capacity:
            return
        old = self.snapshot()
        self._alloc(capacity)
        self._load(old, self.capacity)
        self.capacity = capacity

    def _load(self, snap: dict[str, np.ndarray], rows: int) -> None:
        """Copy the first ``rows`` rows of every state array of ``snap`` into the storage."""
        for name in _STATE_NAMES:
            getattr(self, name)[:rows] = snap[name][:rows]

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every state array (load them with :meth:`restore`)."""
        return {name: getattr(self, name).copy() for name in _STATE_NAMES}

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        """Load a :meth:`snapshot` taken from a scorer with the same parameters.

        A snapshot with fewer rows than this scorer's capacity fills the first rows; the
        others start fresh (the capacity never shrinks).
        """
        keep_cap = self.capacity
        cap = int(np.asarray(snap["n"]).shape[0])
        loaded: dict[str, np.ndarray] = {}
        for name, dt, init in _STATE1:
            if name not in snap and name in _NEW_STATE:  # saved before this state existed: it starts fresh
                arr = np.full(cap, init, dt)  # (t0 unset: the season counts from the next sample)
            else:
                arr = np.asarray(snap[name]).astype(dt, copy=True)
            if arr.shape != (cap,):
                raise ValueError(f"snapshot array {name} has shape {arr.shape}, expected ({cap},)")
            loaded[name] = arr
        table_types: list[tuple[str, type[np.generic], float | int]] = [(k, np.float64, 0.0) for k in _STATE2]
        for name, dt2, init2 in table_types + [(k, np.uint8, 0) for k in _STATE3] + list(_STATE4):
            want: tuple[int, ...] = (cap, getattr(self, name).shape[1])
            if name not in snap and name in _NEW_STATE:
                loaded[name] = np.full(want, init2, dt2)
                continue
            arr2: np.ndarray = np.asarray(snap[name], dtype=dt2).copy()
            if arr2.shape != want:
                raise ValueError(f"snapshot array {name} has shape {arr2.shape}, expected {want}")
            loaded[name] = arr2
        self._alloc(max(cap, keep_cap))
        self._load(loaded, cap)
        self.capacity = max(cap, keep_cap)

    def score_learn(self, rows: I32, values: F64, ts_ms: I64) -> F64:
        """Score one sample for each of ``rows`` (unique within a call), then learn them.

        ``values`` in the sensor's unit, ``ts_ms`` epoch milliseconds (used for the
        time-of-day profile). Returns scores in [0, 1]; the inputs are not modified.
        """
        r = np.ascontiguousarray(rows, dtype=np.intp)
        x = np.ascontiguousarray(values, dtype=np.float64)
        ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
        if r.shape != x.shape or r.shape != ts.shape or r.ndim != 1:
            raise ValueError("rows, values and ts_ms must be 1-D arrays of the same length")
        if r.size and (int(r.min()) < 0 or int(r.max()) >= self.capacity):
            raise IndexError(f"row outside the scorer's capacity {self.capacity}; call grow() first")
        if self.backend == "compiled":
            return self._score_learn_compiled(r, x, ts)
        return self._score_learn_numpy(r, x, ts)

    def _score_learn_compiled(self, r: npt.NDArray[np.intp], x: F64, ts: I64) -> F64:
        from alerts._anomaly_kernel import score_learn

        p = self.params
        out = np.empty(len(r))
        score_learn(r, x, ts, out, _tail_coef(), TAIL_Z0, 1.0 / TAIL_H, self._rec_f, self._rec_i, self.ring,
                    self._season, self.tod_cnt, self.ep_peaks, self.ep_ends,
                    float(p.alpha_mean), float(p.alpha_scale), float(p.alpha_short), float(p.alpha_long),
                    int(p.level_window), int(p.warmup), float(p.tail_digits), float(p.novelty_z),
                    float(p.novelty_width),
                    float(p.envelope_decay), float(p.robust_clip), float(p.min_sd), float(p.max_z),
                    float(p.scale_floor), bool(p.season), int(p.season_ms), float(p.season_alpha),
                    float(p.season_c), float(p.season_lo), float(p.season_min), bool(p.tod), int(p.tod_bins),
                    float(p.tod_alpha), float(p.tod_digits), float(p.tod_gate), float(p.tod_min_sd),
                    int(p.tod_min_learn), T0_UNSET,
                    float(p.episode_z), int(p.episode_gap), int(p.episode_memory), float(p.episode_rho),
                    float(p.episode_beta), float(p.fire_level), int(p.refractory))
        return out

    def _score_learn_numpy(self, r: npt.NDArray[np.intp], x: F64, ts: I64) -> F64:
        """The whole-array formulation (the specification of the compiled kernel)."""
        p = self.params
        n = self.n[r]
        first = n == 0
        mean = np.where(first, x, self.mean[r])
        scale = self.scale[r]
        spread = self.spread[r]

        # 1a. point residual against the forecast, in robust-scale units
        floor = np.maximum(p.scale_floor * spread, 1e-9 * (1.0 + np.abs(mean)))
        s = np.maximum(scale, floor)
        resid = x - mean
        z_point = np.abs(resid) / s

        # 1b. level shift: mean of the newest level_window values (incl. this one) against the older
        # ring contents, from running sums (centred on a per-sensor reference, refreshed each lap)
        w = p.level_window
        ref = self.ref[r]
        filled = np.minimum(n, p.ring)
        cnt = np.maximum(filled - (w - 1), 0)
        cntf = np.maximum(cnt, 1).astype(np.float64)
        o_mean_c = self.sum_old[r] / cntf
        o_sd = np.sqrt(np.maximum(self.sumsq_old[r] / cntf - o_mean_c * o_mean_c, 0.0))
        o_dev = np.maximum(_SD_TO_MAD * o_sd, np.maximum(floor, 0.5 * s))
        recent_c = (self.sum_rec[r] + (x - ref)) / w
        z_level = np.where(cnt >= 2 * w, 0.5 * math.sqrt(w) * np.abs(recent_c - o_mean_c) / o_dev, 0.0)

        u = np.minimum(np.maximum(z_point, z_level), p.max_z)
        u = np.where(n < 3, 0.0, u)

        # 2-3. short average and its tail probability against its own long-run distribution
        short = np.where(first, 0.0, (1 - p.alpha_short) * self.short[r] + p.alpha_short * u)
        mu_u = self.mu_u[r]
        sd_u = np.maximum(np.sqrt(self.var_u[r]), p.min_sd)
        z_tail = (short - mu_u) / sd_u
        score = np.clip(-log10_gauss_tail(z_tail) / (2.0 * p.tail_digits), 0.0, 1.0)
        # 3a. recurring episodes: damped by the past episodes (still remembered) at least as large;
        # only once the long-run statistics have settled (where the robust clip starts: before,
        # sd_u is its floor and every sensor's first samples would make a huge "episode")
        above = (z_tail >= p.episode_z) & (n - (p.warmup // 2) >= p.warmup)
        if p.episode_beta > 0:
            past = ((self.ep_peaks[r] >= p.episode_rho * z_tail[:, None])
                    & (n[:, None] - self.ep_ends[r] <= p.episode_memory)).sum(axis=1)
            score = np.where(above, score / (1.0 + p.episode_beta * past), score)
        # 3b. novelty: beyond the (slowly contracting) envelope of everything seen so far
        hi = np.where(first, x, self.env_hi[r])
        lo = np.where(first, x, self.env_lo[r])
        if p.novelty_z > 0:
            unit = np.maximum(np.maximum(spread, floor), p.novelty_width * (hi - lo))
            z_ext = np.maximum(np.maximum(x - hi, lo - x), 0.0) / unit
            score = np.maximum(score, np.clip(0.5 * z_ext / p.novelty_z, 0.0, 1.0))

        # 4. seasonal damping
        bucket = ((ts // p.season_ms) % p.season_buckets).astype(np.intp)
        sm = self.s_mean[r, bucket]
        sd = self.s_dev[r, bucket]
        sc = self.s_cnt[r, bucket]
        if p.season:
            z_seas = np.abs(x - sm) / np.maximum(sd, floor)
            gate = np.clip(z_seas / p.season_c, p.season_lo, 1.0)
            score = np.where(sc >= p.season_min, score * gate, score)

        # 4b. time-of-day novelty: the value's band (across the envelope, this value included) at
        # this bucket, rarely or never visited before, in a run (not a single visit)
        lo_b, hi_b = np.minimum(lo, x), np.maximum(hi, x)
        width = hi_b - lo_b
        band = np.where(width > 0, np.floor(p.tod_bins * (x - lo_b) / np.where(width > 0, width, 1.0)), 0.0)
        band = np.clip(np.nan_to_num(band, nan=0.0, posinf=p.tod_bins - 1.0), 0, p.tod_bins - 1)
        key = band.astype(np.intp) * p.season_buckets + bucket
        visits = self.tod_cnt[r, key]
        t_short = (1 - p.tod_alpha) * self.tod_short[r] + p.tod_alpha / (1.0 + visits)
        t_mu = self.tod_mu[r]
        t0 = np.where(self.t0[r] == T0_UNSET, ts, self.t0[r])
        if p.tod:
            t_sd = np.maximum(np.sqrt(self.tod_var[r]), p.tod_min_sd)
            on = ((t_short >= p.tod_gate) & (ts - t0 >= 2 * p.season_buckets * p.season_ms)
                  & (self.tod_n[r] >= p.tod_min_learn))
            s_tod = np.clip(-log10_gauss_tail((t_short - t_mu) / t_sd) / (2.0 * p.tod_digits), 0.0, 1.0)
            score = np.maximum(score, np.where(on, s_tod, 0.0))
        score = np.where(n < p.warmup, 0.0, score)

        # 5. refractory ramp after a fire
        if p.refractory > 0:
            since = (n - self.fired[r]).astype(np.float64)
            score = score * np.clip(since / p.refractory, 0.0, 1.0)
        self.fired[r] = np.where(score >= p.fire_level, n, self.fired[r])

        # learn
        # early on, rates start at 1/count (a plain running mean) and fall to their EW values
        nf = n.astype(np.float64)
        a_s = np.maximum(p.alpha_scale, 1.0 / np.maximum(nf, 1.0))
        abs_res = np.abs(resid)
        self.scale[r] = np.where(first, 0.0, (1 - a_s) * scale + a_s * abs_res)
        self.spread[r] = np.where(first, 0.0, (1 - a_s) * spread + a_s * abs_res)
        self.mean[r] = (1 - p.alpha_mean) * mean + p.alpha_mean * x
        self.short[r] = short
        d = short - mu_u
        m = nf - (p.warmup // 2)  # learning steps of the long-run stats so far
        a_l = np.maximum(p.alpha_long, 1.0 / np.maximum(m + 1.0, 1.0))
        if p.robust_clip > 0:
            d = np.where(m >= p.warmup, np.clip(d, -p.robust_clip * sd_u, p.robust_clip * sd_u), d)
        learn_u = m >= 0
        self.mu_u[r] = np.where(learn_u, mu_u + a_l * d, mu_u)
        self.var_u[r] = np.where(learn_u, (1 - a_l) * (self.var_u[r] + a_l * d * d), self.var_u[r])
        self._learn_ring(r, x, n)
        self._learn_episodes(r, z_tail, above, n)
        a_q = np.maximum(p.season_alpha, 1.0 / (sc + 1.0))
        self.s_dev[r, bucket] = np.where(sc > 0, (1 - a_q) * sd + a_q * np.abs(x - sm), 0.0)
        self.s_mean[r, bucket] = np.where(sc > 0, (1 - a_q) * sm + a_q * x, x)
        self.s_cnt[r, bucket] = np.minimum(sc + 1.0, 1e9)
        mid = 0.5 * (hi + lo)
        self.env_hi[r] = np.maximum(x, hi - p.envelope_decay * (hi - mid))
        self.env_lo[r] = np.minimum(x, lo + p.envelope_decay * (mid - lo))
        self.tod_cnt[r, key] = np.minimum(visits.astype(np.int64) + 1, 255).astype(np.uint8)
        self.tod_short[r] = t_short
        d_t = t_short - t_mu
        # its long-run statistics are learnt once a full season is known (the first visit of every
        # bucket is not news, and would inflate the spread for days)
        # (rates start at 1/count, like the main score's, so a few samples give a usable spread)
        known = ts - t0 >= p.season_buckets * p.season_ms
        t_n = self.tod_n[r]
        a_t = np.maximum(p.alpha_long, 1.0 / (t_n + 1.0))
        self.tod_mu[r] = np.where(known, t_mu + a_t * d_t, t_mu)
        self.tod_var[r] = np.where(known, (1 - a_t) * (self.tod_var[r] + a_t * d_t * d_t), self.tod_var[r])
        self.tod_n[r] = np.where(known, t_n + 1, t_n)
        self.t0[r] = t0
        self.n[r] = n + 1
        return np.asarray(score, dtype=np.float64)

    def _learn_episodes(self, r: npt.NDArray[np.intp], z: F64, above: npt.NDArray[np.bool_], n: I64) -> None:
        """Open, extend or end each row's episode of surprise; an ended one's peak is remembered."""
        p = self.params
        was_in = self.ep_in[r] == 1
        self.ep_peak[r] = np.where(above, np.where(was_in, np.maximum(self.ep_peak[r], z), z), self.ep_peak[r])
        self.ep_last[r] = np.where(above, n, self.ep_last[r])
        ends = ~above & was_in & (n - self.ep_last[r] > p.episode_gap)
        self.ep_in[r] = np.where(above, 1, np.where(ends, 0, self.ep_in[r]))
        done = r[ends]
        if done.size:
            head = self.ep_head[done]
            self.ep_peaks[done, head] = self.ep_peak[done]
            self.ep_ends[done, head] = n[ends]
            self.ep_head[done] = (head + 1) % p.episode_slots

    def _learn_ring(self, r: npt.NDArray[np.intp], x: F64, n: I64) -> None:
        """Insert ``x`` into the rings and update the running sums in O(1) per row."""
        p = self.params
        big, w = p.ring, p.level_window
        head = self.head[r]
        ref = np.where(n == 0, x, self.ref[r])
        self.ref[r] = ref
        sum_old, sumsq_old, sum_rec = self.sum_old[r], self.sumsq_old[r], self.sum_rec[r]
        # the oldest value leaves the ring (it was in the older set)
        v = self.ring[r, head] - ref
        leave = n >= big
        sum_old = np.where(leave, sum_old - v, sum_old)
        sumsq_old = np.where(leave, sumsq_old - v * v, sumsq_old)
        # the value w-2 samples back moves from the recent set to the older set
        v = self.ring[r, (head - (w - 1)) % big] - ref
        move = n >= w - 1
        sum_rec = np.where(move, sum_rec - v, sum_rec)
        sum_old = np.where(move, sum_old + v, sum_old)
        sumsq_old = np.where(move, sumsq_old + v * v, sumsq_old)
        self.ring[r, head] = x
        sum_rec = sum_rec + (x - ref)
        head = (head + 1) % big
        self.head[r] = head
        self.sum_old[r], self.sumsq_old[r], self.sum_rec[r] = sum_old, sumsq_old, sum_rec
        # once per lap, recompute the sums exactly around a fresh reference (no drift, no cancellation)
        lap = r[head == 0]
        if lap.size:
            ages = np.arange(big)
            by_age = self.ring[lap[:, None], (-1 - ages[None, :]) % big]
            filled = np.minimum(self.n[lap] + 1, big)
            older = (ages[None, :] >= w - 1) & (ages[None, :] < filled[:, None])
            recent = ages[None, :] < np.minimum(w - 1, filled)[:, None]
            cnt = np.maximum(older.sum(axis=1), 1)
            new_ref = np.where(older, by_age, 0.0).sum(axis=1) / cnt
            c = by_age - new_ref[:, None]
            self.ref[lap] = new_ref
            self.sum_old[lap] = np.where(older, c, 0.0).sum(axis=1)
            self.sumsq_old[lap] = np.where(older, c * c, 0.0).sum(axis=1)
            self.sum_rec[lap] = np.where(recent, c, 0.0).sum(axis=1)

    def params_dict(self) -> dict[str, float | int | bool]:
        """The parameters as a plain dict."""
        return asdict(self.params)


_TAIL: list[F64] = []


def _tail_coef() -> F64:
    """The table, built on first use (~1 ms) and shared by every scorer."""
    if not _TAIL:
        _TAIL.append(tail_table())
    return _TAIL[0]


def score_series(values: F64, ts_ms: I64 | None = None, **params: float | int | bool) -> F64:
    """Run one sensor's series through a fresh :class:`AnomalyScorer`; scores in [0, 1].

    Without ``ts_ms`` the samples are taken as one minute apart.
    """
    x = np.asarray(values, dtype=np.float64)
    t = np.arange(len(x), dtype=np.int64) * 60_000 if ts_ms is None else np.asarray(ts_ms, dtype=np.int64)
    sc = AnomalyScorer(1, backend="compiled", **params)
    out = np.empty(len(x))
    row = np.zeros(1, dtype=np.int32)
    for i in range(len(x)):
        out[i] = sc.score_learn(row, x[i : i + 1], t[i : i + 1])[0]
    return out
