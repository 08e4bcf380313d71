"""Compiled per-sample update of :class:`alerts.anomaly.AnomalyScorer` (numba).

The numpy formulation in ``AnomalyScorer._score_learn_numpy`` is the specification and the
test oracle: about 150 whole-array operations per call, each a gather or scatter over the
call's rows, which costs ~1 us per sample at a thousand rows a call. This kernel walks the
rows once and keeps a row's state in registers (the same state arrays, the same formulas in
the same order): measured ~0.2 us per sample in cache and ~0.3 us at 100k sensors in random
order (memory-bound), where the numpy path took ~1 us and ~0.45 us (docs/benchmarks.md).
The Gaussian tail comes from the table of ``alerts.anomaly.tail_table`` (~7 ns) instead of
the formula's three dependent libm calls (~48 ns). It runs in a second tight loop over the
parts the first loop leaves per sample: introduced to overlap the libm call chains (2,000
rows: 146 -> 123 ns); with the table, folding it back into one loop measured no better
(kernel alone ~118 vs ~125 ns at 100k rows, ~120 vs ~111 at 20k; in the engine with the
scorer, 5.8 vs 6.1 M samples/s, medians of interleaved runs), so it stays.
Results equal the numpy path to rounding (sums over the ring are taken in another order);
``tests/alerts/test_anomaly.py`` compares the two on random streams.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
_SD_TO_MAD = math.sqrt(2.0 / math.pi)


@njit(cache=True, nogil=True, error_model="numpy")
def _log10_gauss_tail(z: float) -> float:  # pragma: no cover - compiled
    x = abs(z) / _SQRT2
    t = 1.0 / (1.0 + 0.5 * x)
    poly = (((((((((0.17087277 * t - 0.82215223) * t + 1.48851587) * t - 1.13520398) * t + 0.27886807) * t
                 - 0.18628806) * t + 0.09678418) * t + 0.37409196) * t + 1.00002368) * t - 1.26551223)
    lq = math.log(t) - x * x + poly - _LN2
    if z < 0.0:
        lq = math.log1p(-math.exp(lq))
    return lq / _LN10


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _neg_log10_tail(z, coef, z0, inv_h):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``-log10_gauss_tail(z)``: the table of ``alerts.anomaly.tail_table`` inside its range,
    the formula outside (rare)."""
    u = (z - z0) * inv_h
    if u >= 0.0 and u < coef.shape[0]:
        j = int(u)
        j0 = int(-z0 * inv_h + 0.5)  # the interval starting at z = 0, where the formula changes branch
        if z < 0.0 and j >= j0:  # z within rounding of 0, below it: the left branch's end
            j = j0 - 1
        s = u - j
        return coef[j, 0] + s * (coef[j, 1] + s * (coef[j, 2] + s * (coef[j, 3] + s * (coef[j, 4] + s * coef[j, 5]))))
    return -_log10_gauss_tail(z)


@njit(cache=True, nogil=True, error_model="numpy")
def tail_values(z, coef, z0, inv_h, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``_neg_log10_tail`` over an array (tests compare it with the formula)."""
    for i in range(z.shape[0]):
        out[i] = _neg_log10_tail(z[i], coef, z0, inv_h)


@njit(cache=True, nogil=True, error_model="numpy")
def score_learn(rows, xs, tss, out, tail_coef, tail_z0, tail_inv_h,  # type: ignore[no-untyped-def]  # pragma: no cover
                n_, mean_, scale_, spread_, short_, mu_u_, var_u_, head_, env_hi_, env_lo_, ref_,
                sum_old_, sumsq_old_, sum_rec_, fired_, ring, s_mean, s_dev, s_cnt,
                t0_, tod_short_, tod_mu_, tod_var_, tod_n_, tod_cnt,
                alpha_mean, alpha_scale, alpha_short, alpha_long, w, warmup, tail_digits, novelty_z,
                envelope_decay, robust_clip, min_sd, max_z, scale_floor, season, season_ms, season_alpha,
                season_c, season_lo, season_min, tod, tod_bins, tod_alpha, tod_digits, tod_gate,
                tod_min_sd, tod_min_learn, t0_unset, fire_level, refractory):
    big = ring.shape[1]
    nbk = s_mean.shape[1]
    nrows = rows.shape[0]
    # the tail transform and the score's assembly run in a second, tight loop over these parts
    zt = np.empty(nrows)  # argument of the Gaussian tail
    nov = np.empty(nrows)  # novelty score (-1: off)
    gate = np.empty(nrows)  # seasonal damping factor (-1: none)
    refr = np.empty(nrows)  # refractory factor (-1: off)
    live = np.empty(nrows, np.bool_)  # past the warm-up
    zt_tod = np.empty(nrows)  # argument of the time-of-day novelty's tail (NaN: not scored)
    season_span = nbk * season_ms
    # the bucket of the last timestamp seen: one integer division per hour boundary, not per sample
    q_lo = np.int64(1)
    q_hi = np.int64(0)
    b = 0
    for i in range(nrows):
        r = rows[i]
        x = xs[i]
        n = n_[r]
        first = n == 0
        mean = x if first else mean_[r]
        scale = scale_[r]
        spread = spread_[r]
        # 1a. point residual
        floor = max(scale_floor * spread, 1e-9 * (1.0 + abs(mean)))
        s = max(scale, floor)
        resid = x - mean
        z_point = abs(resid) / s
        # 1b. level shift from the running ring sums
        ref = ref_[r]
        filled = min(n, big)
        cnt = max(filled - (w - 1), 0)
        cntf = float(max(cnt, 1))
        o_mean_c = sum_old_[r] / cntf
        o_sd = math.sqrt(max(sumsq_old_[r] / cntf - o_mean_c * o_mean_c, 0.0))
        o_dev = max(_SD_TO_MAD * o_sd, max(floor, 0.5 * s))
        recent_c = (sum_rec_[r] + (x - ref)) / w
        z_level = 0.5 * math.sqrt(w) * abs(recent_c - o_mean_c) / o_dev if cnt >= 2 * w else 0.0
        u = min(max(z_point, z_level), max_z)
        if n < 3:
            u = 0.0
        # 2-3. short average and its tail against its long-run distribution
        short = 0.0 if first else (1 - alpha_short) * short_[r] + alpha_short * u
        mu_u = mu_u_[r]
        var_u = var_u_[r]
        sd_u = max(math.sqrt(var_u), min_sd)
        zt[i] = (short - mu_u) / sd_u
        hi = x if first else env_hi_[r]
        lo = x if first else env_lo_[r]
        nov[i] = -1.0
        if novelty_z > 0:
            z_ext = max(max(x - hi, lo - x), 0.0) / max(spread, floor)
            nov[i] = min(max(0.5 * z_ext / novelty_z, 0.0), 1.0)
        live[i] = n >= warmup
        # 4. seasonal damping
        ts = tss[i]
        if ts < q_lo or ts >= q_hi:
            q = ts // season_ms
            q_lo = q * season_ms
            q_hi = q_lo + season_ms
            b = q % nbk
        sm = s_mean[r, b]
        sd = s_dev[r, b]
        sc = s_cnt[r, b]
        gate[i] = -1.0
        if season and sc >= season_min:
            gate[i] = min(max(abs(x - sm) / max(sd, floor) / season_c, season_lo), 1.0)
        # 4b. time-of-day novelty
        lo_b = min(lo, x)
        width = max(hi, x) - lo_b
        band = 0
        if width > 0:
            f = tod_bins * (x - lo_b) / width  # >= 0 (x >= lo_b); inf near the float limit, NaN never
            band = tod_bins - 1 if f >= tod_bins - 1 else int(f)
        key = band * nbk + b
        visits = tod_cnt[r, key]
        t_short = (1 - tod_alpha) * tod_short_[r] + tod_alpha / (1.0 + visits)
        t_mu = tod_mu_[r]
        t_var = tod_var_[r]
        t0 = t0_[r]
        if t0 == t0_unset:
            t0 = ts
        t_n = tod_n_[r]
        zt_tod[i] = np.nan
        if tod and t_short >= tod_gate and ts - t0 >= 2 * season_span and t_n >= tod_min_learn:
            zt_tod[i] = (t_short - t_mu) / max(math.sqrt(t_var), tod_min_sd)
        tod_cnt[r, key] = min(visits + 1, 255)
        tod_short_[r] = t_short
        if ts - t0 >= season_span:
            d_t = t_short - t_mu
            a_t = max(alpha_long, 1.0 / (t_n + 1.0))
            tod_mu_[r] = t_mu + a_t * d_t
            tod_var_[r] = (1 - a_t) * (t_var + a_t * d_t * d_t)
            tod_n_[r] = t_n + 1
        t0_[r] = t0
        # 5. refractory
        refr[i] = -1.0
        if refractory > 0:
            refr[i] = min(max((n - fired_[r]) / refractory, 0.0), 1.0)
        # learn
        nf = float(n)
        a_s = max(alpha_scale, 1.0 / max(nf, 1.0))
        abs_res = abs(resid)
        scale_[r] = 0.0 if first else (1 - a_s) * scale + a_s * abs_res
        spread_[r] = 0.0 if first else (1 - a_s) * spread + a_s * abs_res
        mean_[r] = (1 - alpha_mean) * mean + alpha_mean * x
        short_[r] = short
        d = short - mu_u
        m = nf - (warmup // 2)
        a_l = max(alpha_long, 1.0 / max(m + 1.0, 1.0))
        if robust_clip > 0 and m >= warmup:
            d = min(max(d, -robust_clip * sd_u), robust_clip * sd_u)
        if m >= 0:
            mu_u_[r] = mu_u + a_l * d
            var_u_[r] = (1 - a_l) * (var_u + a_l * d * d)
        # ring and its running sums
        head = head_[r]
        if first:
            ref = x
        ref_[r] = ref
        so = sum_old_[r]
        sq = sumsq_old_[r]
        sr = sum_rec_[r]
        if n >= big:
            v = ring[r, head] - ref
            so -= v
            sq -= v * v
        if n >= w - 1:
            j = head - (w - 1)
            v = ring[r, j + big if j < 0 else j] - ref
            sr -= v
            so += v
            sq += v * v
        ring[r, head] = x
        sr += x - ref
        head = 0 if head + 1 == big else head + 1
        head_[r] = head
        if head == 0:  # once per lap: exact sums around a fresh reference
            filled1 = min(n + 1, big)
            tot = 0.0
            k = 0
            for a in range(w - 1, filled1):
                tot += ring[r, big - 1 - a]
                k += 1
            new_ref = tot / max(k, 1)
            so = 0.0
            sq = 0.0
            sr = 0.0
            for a in range(big):
                c = ring[r, big - 1 - a] - new_ref
                if w - 1 <= a < filled1:
                    so += c
                    sq += c * c
                if a < min(w - 1, filled1):
                    sr += c
            ref_[r] = new_ref
        sum_old_[r] = so
        sumsq_old_[r] = sq
        sum_rec_[r] = sr
        # seasonal profile and envelope
        a_q = max(season_alpha, 1.0 / (sc + 1.0))
        s_dev[r, b] = (1 - a_q) * sd + a_q * abs(x - sm) if sc > 0 else 0.0
        s_mean[r, b] = (1 - a_q) * sm + a_q * x if sc > 0 else x
        s_cnt[r, b] = min(sc + 1.0, 1e9)
        mid = 0.5 * (hi + lo)
        env_hi_[r] = max(x, hi - envelope_decay * (hi - mid))
        env_lo_[r] = min(x, lo + envelope_decay * (mid - lo))
        n_[r] = n + 1
    for i in range(nrows):
        score = 0.0
        if live[i]:
            score = min(max(_neg_log10_tail(zt[i], tail_coef, tail_z0, tail_inv_h) / (2.0 * tail_digits), 0.0), 1.0)
            if nov[i] >= 0.0:
                score = max(score, nov[i])
            if gate[i] >= 0.0:
                score = score * gate[i]
            if zt_tod[i] == zt_tod[i]:  # not NaN
                s_tod = min(max(_neg_log10_tail(zt_tod[i], tail_coef, tail_z0, tail_inv_h) / (2.0 * tod_digits), 0.0),
                            1.0)
                score = max(score, s_tod)
            if refr[i] >= 0.0:
                score = score * refr[i]
        if score >= fire_level:  # also in the warm-up (score 0) when fire_level <= 0, as the numpy path
            fired_[rows[i]] = n_[rows[i]] - 1
        out[i] = score
