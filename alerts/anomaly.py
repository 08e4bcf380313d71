"""Online statistical anomaly score for early warning, vectorised across sensors.

Per sensor (row) the scorer keeps a fixed-size state: an EWMA forecast and a robust
residual scale, a short and a long history of the resulting *surprise*, a ring buffer of
recent values (for level and spread relative to the longer past), and a refractory timer.

Per sample, for the sensors in the call:

1. ``z``  = residual of the value against the EWMA forecast, in units of the EW mean
   absolute residual (a robust scale; floored by a fraction of the long-run spread so a
   flat signal does not divide by zero).
2. ``u``  = surprise = max(|z|, level-shift |z| of the short mean against the ring history),
   averaged over a short EW window so that a sustained change counts more than one blip.
3. Tail transform (the "anomaly likelihood" idea): the short average is compared with the
   long-run mean and spread of the surprise itself; its Gaussian upper tail probability
   ``p`` is mapped to ``score = min(1, -log10(p) / (2 k))``, so ``score >= 0.5`` means
   ``p <= 10**-k`` (``k = tail_digits``, default 5: about one chance in 100 000 samples).
4. Refractory suppression: after a score >= ``fire_level`` the sensor's scores are scaled
   by a ramp from 0 back to 1 over ``refractory`` samples, so one incident fires once.

A row's score depends only on that row and earlier ones (the score is computed before the
sample is learnt). Memory per sensor: ``8 * (ring + 12)`` bytes (about 1.1 KiB at the
default ``ring = 128``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import numpy.typing as npt

__all__ = ["AnomalyParams", "AnomalyScorer", "log10_gauss_tail", "score_series"]

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AnomalyParams:
    """Tuning of :class:`AnomalyScorer` (all counts in samples, rates per sample)."""

    alpha_mean: float = 0.05  # EWMA forecast rate
    alpha_scale: float = 0.01  # EW mean-absolute-residual rate
    alpha_short: float = 0.3  # short average of the surprise
    alpha_long: float = 0.002  # long-run mean/variance of the surprise
    ring: int = 128  # values kept for level-shift comparison
    level_window: int = 8  # recent values averaged for the level-shift test
    warmup: int = 30  # samples scored 0 while the state settles
    tail_digits: float = 5.0  # score 0.5 <=> tail probability 10**-tail_digits
    fire_level: float = 0.5  # a score at or above this starts the refractory period
    refractory: int = 300  # samples over which scores ramp back from 0 to 1 after a fire
    scale_floor: float = 0.01  # floor of the residual scale, as a fraction of the long spread
    min_sd: float = 0.01  # floor of the surprise's long-run standard deviation
    peak_half_life: float = 2000.0  # half-life of the decaying maximum of the surprise
    peak_ratio: float = 1.0  # the surprise must reach this multiple of that maximum to score fully
    peak_power: float = 0.0  # how sharply scores fall below that multiple
    bounded: int = 0  # map the surprise to [0, 1] (1 - 2 Q(|z| / raw_scale)) before averaging
    raw_scale: float = 1.5  # z per unit of the bounded surprise's argument
    raw_lo: float = 2.0  # bounded=2: surprise below this z counts 0
    pot: int = 1  # tail model: 1 = exponential excesses over a tracked quantile, 0 = Gaussian
    pot_q: float = 0.98  # quantile above which excesses are modelled
    pot_rate: float = 0.01  # learning rate of that quantile (per sample) and of the mean excess
    max_z: float = 30.0  # surprise is clipped here (a 30-sigma value is simply "impossible")

    def __post_init__(self) -> None:
        for name in ("alpha_mean", "alpha_scale", "alpha_short", "alpha_long"):
            a = getattr(self, name)
            if not 0.0 < a <= 1.0:
                raise ValueError(f"AnomalyParams.{name} must be in (0, 1], got {a}")
        if self.ring < 2 or not 1 <= self.level_window < self.ring:
            raise ValueError("AnomalyParams: need ring >= 2 and 1 <= level_window < ring")
        if self.tail_digits <= 0 or self.refractory < 0 or self.warmup < 0:
            raise ValueError("AnomalyParams: tail_digits > 0, refractory >= 0, warmup >= 0")


_LN10 = math.log(10.0)
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
    """log10 of the standard normal upper tail Q(z) = P(Z > z), accurate for large z too."""
    z = np.asarray(z, dtype=np.float64)
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_COEF):
        poly = poly * t + c
    ln_erfc = np.log(t) - x * x + poly  # ln erfc(|z| / sqrt 2)
    ln_q_pos = ln_erfc - math.log(2.0)  # Q(|z|)
    q_pos = np.exp(ln_q_pos)
    ln_q = np.where(z >= 0, ln_q_pos, np.log1p(-q_pos))
    return np.asarray(ln_q / _LN10, dtype=np.float64)


_STATE = ("n", "mean", "scale", "spread", "short", "mu_u", "var_u", "peak", "head", "fired")


class AnomalyScorer:
    """Vectorised online anomaly scorer: one state row per sensor, scores in [0, 1]."""

    def __init__(self, capacity: int, **params: float | int) -> None:
        self.params = AnomalyParams(**params)  # type: ignore[arg-type]
        self.capacity = 0
        self.n = np.zeros(0, dtype=np.int64)  # samples learnt
        self.mean = np.zeros(0)  # EWMA forecast
        self.scale = np.zeros(0)  # EW mean |residual|
        self.spread = np.zeros(0)  # EW mean |value - mean| on the slow rate (long spread)
        self.short = np.zeros(0)  # short EW average of the surprise
        self.mu_u = np.zeros(0)  # long-run mean of the short surprise
        self.var_u = np.zeros(0)  # long-run variance of the short surprise
        self.peak = np.zeros(0)  # decaying maximum of the short surprise
        self._decay = 0.5 ** (1.0 / self.params.peak_half_life)
        self.head = np.zeros(0, dtype=np.int64)  # ring write position
        self.fired = np.zeros(0, dtype=np.int64)  # sample count at the last fire (-1: never)
        self.ring = np.zeros((0, self.params.ring))
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        """Make room for sensor rows ``[0, capacity)``; existing state is kept."""
        if capacity <= self.capacity:
            return
        extra = capacity - self.capacity
        for name in _STATE:
            arr = getattr(self, name)
            fill = -(10**9) if name == "fired" else 0
            setattr(self, name, np.concatenate([arr, np.full(extra, fill, dtype=arr.dtype)]))
        self.ring = np.concatenate([self.ring, np.zeros((extra, self.params.ring))])
        self.capacity = capacity

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every state array (restore them with :meth:`restore`)."""
        snap = {name: getattr(self, name).copy() for name in _STATE}
        snap["ring"] = self.ring.copy()
        snap["params"] = np.array([getattr(self.params, f.name) for f in fields(self.params)], dtype=np.float64)
        return snap

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        """Load a :meth:`snapshot`; the ring length must match this scorer's parameters."""
        ring = np.asarray(snap["ring"], dtype=np.float64)
        if ring.ndim != 2 or ring.shape[1] != self.params.ring:
            raise ValueError(f"snapshot ring width {ring.shape} does not match ring={self.params.ring}")
        self.capacity = ring.shape[0]
        self.ring = ring.copy()
        for name in _STATE:
            dtype = getattr(self, name).dtype
            arr = np.asarray(snap[name]).astype(dtype, copy=True)
            if arr.shape != (self.capacity,):
                raise ValueError(f"snapshot array {name} has shape {arr.shape}, expected ({self.capacity},)")
            setattr(self, name, arr)

    def score_learn(self, rows: I32, values: F64, ts_ms: I64) -> F64:
        """Score one sample for each of ``rows`` (unique within a call), then learn them.

        ``values`` in the sensor's unit, ``ts_ms`` epoch milliseconds (accepted for the
        engine's contract; the model is sample-indexed). Returns scores in [0, 1].
        Inputs are not modified.
        """
        p = self.params
        r = np.asarray(rows, dtype=np.intp)
        x = np.asarray(values, dtype=np.float64)
        if r.shape != x.shape:
            raise ValueError("rows and values must have the same shape")
        if r.size and (r.min() < 0 or r.max() >= self.capacity):
            raise IndexError("row outside the scorer's capacity; call grow() first")
        n = self.n[r]
        first = n == 0
        mean = np.where(first, x, self.mean[r])
        scale = self.scale[r]
        spread = self.spread[r]

        # 1. point residual against the forecast, in robust-scale units
        floor = np.maximum(p.scale_floor * spread, 1e-9 * (1.0 + np.abs(mean)))
        s = np.maximum(scale, floor)
        resid = x - mean
        z_point = np.abs(resid) / s

        # 2. level shift: recent mean (incl. this value) against the older ring contents
        ring = self.ring[r]
        head = self.head[r]
        w = p.level_window
        cols = (head[:, None] - 1 - np.arange(w - 1)[None, :]) % p.ring
        recent = np.concatenate([ring[np.arange(len(r))[:, None], cols], x[:, None]], axis=1)
        filled = np.minimum(n, p.ring)
        older_mask = (np.arange(p.ring)[None, :] < filled[:, None]).astype(np.float64)
        # exclude the newest w-1 slots from the "older" set
        for j in range(w - 1):
            older_mask[np.arange(len(r)), cols[:, j]] = 0.0
        cnt = np.maximum(older_mask.sum(axis=1), 1.0)
        o_mean = (ring * older_mask).sum(axis=1) / cnt
        o_dev = (np.abs(ring - o_mean[:, None]) * older_mask).sum(axis=1) / cnt
        o_dev = np.maximum(o_dev, np.maximum(floor, s * 0.5))
        z_level = np.abs(recent.mean(axis=1) - o_mean) / o_dev * math.sqrt(w) * 0.5
        z_level = np.where(cnt >= 2 * w, z_level, 0.0)

        u = np.minimum(np.maximum(z_point, z_level), p.max_z)
        if p.bounded == 1:
            u = 1.0 - 2.0 * np.power(10.0, log10_gauss_tail(u / p.raw_scale))
        elif p.bounded == 2:
            u = np.clip((u - p.raw_lo) / p.raw_scale, 0.0, 1.0)
        u = np.where(n < 3, 0.0, u)
        short = np.where(first, 0.0, (1 - p.alpha_short) * self.short[r] + p.alpha_short * u)
        mu_u = self.mu_u[r]
        sd_u = np.maximum(np.sqrt(self.var_u[r]), p.min_sd)
        if p.pot:
            # peaks over threshold: P(S > s) = (1 - q) exp(-(s - t) / beta) above the q-quantile t
            t_q = mu_u
            beta = np.maximum(self.var_u[r], p.min_sd)
            lg = -math.log10(1.0 - p.pot_q) + np.maximum(short - t_q, 0.0) / (beta * _LN10)
            score = np.clip(lg / (2.0 * p.tail_digits), 0.0, 1.0)
        else:
            zz = (short - mu_u) / sd_u
            score = np.clip(-log10_gauss_tail(zz) / (2.0 * p.tail_digits), 0.0, 1.0)
        # 3b. novelty: the short surprise against the largest one seen lately (decaying max)
        peak = self.peak[r]
        ratio = short / np.maximum(peak * p.peak_ratio, 1e-12)
        score = score * np.minimum(1.0, ratio) ** p.peak_power
        score = np.where(n < p.warmup, 0.0, score)

        # 4. refractory ramp after a fire
        since = (n - self.fired[r]).astype(np.float64)
        if p.refractory > 0:
            score = score * np.clip(since / p.refractory, 0.0, 1.0)
        fired_now = score >= p.fire_level
        self.fired[r] = np.where(fired_now, n, self.fired[r])

        # learn
        a_m, a_s, a_l = p.alpha_mean, p.alpha_scale, p.alpha_long
        new_scale = np.where(first, 0.0, np.where(n == 1, np.abs(resid), (1 - a_s) * scale + a_s * np.abs(resid)))
        self.scale[r] = new_scale
        self.spread[r] = np.where(first, 0.0, (1 - a_s) * spread + a_s * np.abs(resid))
        self.mean[r] = (1 - a_m) * mean + a_m * x
        self.short[r] = short
        self.peak[r] = np.maximum(short, peak * self._decay)
        d = short - mu_u
        learn_u = n >= p.warmup // 2
        if p.pot:
            beta = self.var_u[r]
            over = d > 0
            tail = 1.0 - p.pot_q
            step = p.pot_rate * np.maximum(beta, p.min_sd)
            self.mu_u[r] = np.where(learn_u, mu_u + step * (over - tail) / tail * tail, mu_u)
            nb = np.where(beta == 0.0, np.maximum(d, 0.0), (1 - p.pot_rate) * beta + p.pot_rate * d)
            self.var_u[r] = np.where(learn_u & (over | (beta == 0.0)), nb, beta)
        else:
            self.mu_u[r] = np.where(learn_u, mu_u + a_l * d, mu_u)
            self.var_u[r] = np.where(learn_u, (1 - a_l) * (self.var_u[r] + a_l * d * d), self.var_u[r])
        ring[np.arange(len(r)), head] = x
        self.ring[r] = ring
        self.head[r] = (head + 1) % p.ring
        self.n[r] = n + 1
        return np.asarray(score, dtype=np.float64)

    def params_dict(self) -> dict[str, float | int]:
        """The parameters as a plain dict."""
        return asdict(self.params)


def score_series(values: F64, ts_ms: I64 | None = None, **params: float | int) -> F64:
    """Run one sensor's series through a fresh :class:`AnomalyScorer`; scores in [0, 1]."""
    x = np.asarray(values, dtype=np.float64)
    t = np.zeros(len(x), dtype=np.int64) if ts_ms is None else np.asarray(ts_ms, dtype=np.int64)
    sc = AnomalyScorer(1, **params)
    out = np.empty(len(x))
    row = np.zeros(1, dtype=np.int32)
    for i in range(len(x)):
        out[i] = sc.score_learn(row, x[i : i + 1], t[i : i + 1])[0]
    return out
