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
The scalar state is read through two 2-D views of one record per row (below), and divisions
by loop constants or by counts past an adaptive rate's limit are gone (a division costs more
than the rest of a line): measured in this session's scorer-alone run at 2,000 / 100,000 rows,
registry order, 121 / 152 ns -> 107 / 135 ns per sample, identical scores and NAB results.
The recurring-episode damping (step 3a) reads its slots only at a surprise; it measured +4-6 ns
per sample in cache (~103 -> ~107-109 ns at 2,000 rows), ~1 % in the engine with the scorer.
At fleet size the kernel waited on memory: a sample touches ~7 cache lines of state in four
arrays with row strides of 120 B to 1 KB, which the hardware prefetchers do not follow (on the
2026-12-05 machine 59 ns per sample at 2,000 rows, ~145 at 100k). A software prefetch of the
rows ahead (``alerts._prefetch``) and the two loops run a chunk of rows at a time, so the
second reads its parts from L1/L2, measured ~145 -> ~67 ns at 100k rows (interleaved runs).
Results equal the numpy path to rounding (sums over the ring are taken in another order);
``tests/alerts/test_anomaly.py`` compares the two on random streams.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from alerts._prefetch import prefetch

# software prefetch distance (rows ahead; the record at twice it), and rows per chunk of the two loops
# (their per-sample parts stay in L1/L2: 7 x 8 bytes a row). Measured at 100k rows: docs/benchmarks.md §1
PF_ROWS = 8
CHUNK = 512
_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
_SD_TO_MAD = math.sqrt(2.0 / math.pi)

# Columns of a row's scalar state. The scorer keeps it in one record of 8-byte fields per row
# (``alerts.anomaly._STATE1``, in this order), passed here as two 2-D views of the same memory:
# ``rf`` (float64) and ``ri`` (int64). One base pointer and constant offsets instead of twenty
# strided arrays: fewer registers spilled per sample (~12 % faster, docs/benchmarks.md).
COLUMNS = ("n", "mean", "scale", "spread", "short", "mu_u", "var_u", "head", "env_hi", "env_lo", "ref",
           "sum_old", "sumsq_old", "sum_rec", "fired", "t0", "tod_short", "tod_mu", "tod_var", "tod_n",
           "ep_in", "ep_peak", "ep_last", "ep_head")
(C_N, C_MEAN, C_SCALE, C_SPREAD, C_SHORT, C_MU_U, C_VAR_U, C_HEAD, C_ENV_HI, C_ENV_LO, C_REF, C_SUM_OLD,
 C_SUMSQ_OLD, C_SUM_REC, C_FIRED, C_T0, C_TOD_SHORT, C_TOD_MU, C_TOD_VAR, C_TOD_N,
 C_EP_IN, C_EP_PEAK, C_EP_LAST, C_EP_HEAD) = range(len(COLUMNS))


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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _end_episode(r, n, ri, rf, ep_peaks, ep_ends, ep_gap, slots):  # type: ignore[no-untyped-def]  # pragma: no cover
    """A sample that does not extend the row's open episode: after more than ``ep_gap``
    samples since its last one the episode ends, and its peak goes into the next slot."""
    if ri[r, C_EP_IN] == 1 and n - ri[r, C_EP_LAST] > ep_gap:
        hd = ri[r, C_EP_HEAD]
        ep_peaks[r, hd] = rf[r, C_EP_PEAK]
        ep_ends[r, hd] = n
        ri[r, C_EP_HEAD] = 0 if hd + 1 == slots else hd + 1
        ri[r, C_EP_IN] = 0


@njit(cache=True, nogil=True, error_model="numpy")
def score_learn(rows, xs, tss, out, tail_coef, tail_z0, tail_inv_h,  # type: ignore[no-untyped-def]  # pragma: no cover
                rf, ri, ring, sea, tod_cnt, ep_peaks, ep_ends,
                alpha_mean, alpha_scale, alpha_short, alpha_long, w, warmup, tail_digits, novelty_z, novelty_width,
                envelope_decay, robust_clip, min_sd, max_z, scale_floor, season, season_ms, season_alpha,
                season_c, season_lo, season_min, tod, tod_bins, tod_alpha, tod_digits, tod_gate,
                tod_min_sd, tod_min_learn, t0_unset, ep_z, ep_gap, ep_memory, ep_rho, ep_beta,
                fire_level, refractory):
    big = ring.shape[1]
    slots = ep_peaks.shape[1]
    nbk = sea.shape[1]
    nrows = rows.shape[0]
    # the tail transform and the score's assembly run in a second, tight loop over these parts, a
    # chunk of rows at a time
    nt = min(nrows, CHUNK)
    zt = np.empty(nt)  # argument of the Gaussian tail
    damp = np.empty(nt)  # factor of the tail score for past episodes as large (set where zt >= ep_z)
    nov = np.empty(nt)  # novelty score (-1: off)
    gate = np.empty(nt)  # seasonal damping factor (-1: none)
    refr = np.empty(nt)  # refractory factor (-1: off)
    live = np.empty(nt, np.bool_)  # past the warm-up
    zt_tod = np.empty(nt)  # argument of the time-of-day novelty's tail (NaN: not scored)
    season_span = nbk * season_ms
    # constants of the loop, and the counts past which an adaptive rate max(alpha, 1 / k) is alpha
    # (~20 divisions a sample before these)
    inv_w = 1.0 / w
    half_sqrt_w = 0.5 * math.sqrt(w)
    inv_nov = 0.5 / novelty_z if novelty_z > 0 else 0.0
    inv_season_c = 1.0 / season_c
    settle_n = warmup + warmup // 2  # the long-run statistics have learnt warmup samples (the robust clip's start)
    # k >= lim: 1 / k <= alpha / (1 + alpha) < alpha. Integer-valued on purpose: the same limits
    # as floats (1 / alpha + 1) measured 126 -> 210 ns per sample at 100k rows; min() keeps
    # ceil inside int64 for a tiny alpha
    lim_scale = math.ceil(min(1.0 / alpha_scale, 1e18)) + 1.0
    lim_long = math.ceil(min(1.0 / alpha_long, 1e18)) + 1.0
    lim_season = math.ceil(min(1.0 / season_alpha, 1e18)) + 1.0
    # the bucket of the last timestamp seen: one integer division per hour boundary, not per sample
    q_lo = np.int64(1)
    q_hi = np.int64(0)
    b = 0
    sea2 = sea.reshape(sea.shape[0], nbk * 3)
    for c0 in range(0, nrows, CHUNK):
        c1 = min(c0 + CHUNK, nrows)
        for i in range(c0, c1):
            # software prefetch (the hardware's does not follow these strides): the record of the row
            # 2 * PF_ROWS ahead (24 columns of 8 bytes: three lines), then, its record in cache by now, the
            # ring, season and visit-count lines of the row PF_ROWS ahead (the season bucket: this sample's)
            if i + 2 * PF_ROWS < nrows:
                rp = rows[i + 2 * PF_ROWS]
                prefetch(rf, rp, 0)
                prefetch(rf, rp, 8)
                prefetch(rf, rp, 16)
            if i + PF_ROWS < nrows:
                rp = rows[i + PF_ROWS]
                hp = ri[rp, C_HEAD]
                prefetch(ring, rp, hp)
                jp = hp - (w - 1)
                prefetch(ring, rp, jp + big if jp < 0 else jp)
                prefetch(sea2, rp, 3 * b)
                prefetch(sea2, rp, 3 * b + 2)
                xp = xs[i + PF_ROWS]  # its visit count: the band as step 4b finds it (a guess; never faults)
                lo_p = min(rf[rp, C_ENV_LO], xp)
                wd_p = max(rf[rp, C_ENV_HI], xp) - lo_p
                bp = 0
                if wd_p > 0:
                    fp = tod_bins * (xp - lo_p) / wd_p
                    if fp >= 0 and fp < tod_bins:
                        bp = int(fp)
                prefetch(tod_cnt, rp, bp * nbk + b)
            r = rows[i]
            x = xs[i]
            n = ri[r, C_N]
            first = n == 0
            mean = x if first else rf[r, C_MEAN]
            scale = rf[r, C_SCALE]
            spread = rf[r, C_SPREAD]
            # 1a. point residual
            floor = max(scale_floor * spread, 1e-9 * (1.0 + abs(mean)))
            s = max(scale, floor)
            resid = x - mean
            z_point = abs(resid) / s
            # 1b. level shift from the running ring sums
            ref = rf[r, C_REF]
            filled = min(n, big)
            cnt = max(filled - (w - 1), 0)
            z_level = 0.0
            if cnt >= 2 * w:
                inv_cnt = 1.0 / cnt
                o_mean_c = rf[r, C_SUM_OLD] * inv_cnt
                o_sd = math.sqrt(max(rf[r, C_SUMSQ_OLD] * inv_cnt - o_mean_c * o_mean_c, 0.0))
                o_dev = max(_SD_TO_MAD * o_sd, max(floor, 0.5 * s))
                recent_c = (rf[r, C_SUM_REC] + (x - ref)) * inv_w
                z_level = half_sqrt_w * abs(recent_c - o_mean_c) / o_dev
            u = min(max(z_point, z_level), max_z)
            if n < 3:
                u = 0.0
            # 2-3. short average and its tail against its long-run distribution
            short = 0.0 if first else (1 - alpha_short) * rf[r, C_SHORT] + alpha_short * u
            mu_u = rf[r, C_MU_U]
            var_u = rf[r, C_VAR_U]
            sd_u = max(math.sqrt(var_u), min_sd)
            z_t = (short - mu_u) / sd_u
            zt[i - c0] = z_t
            # 3a. recurring episodes of surprise (the slots are read only at a surprise: rare). An
            # episode opens only once the long-run statistics have settled (n >= settle_n), so a row
            # below it has none open
            if z_t >= ep_z:  # (loop 2 reads damp only for these rows)
                d = 1.0
                if n >= settle_n:
                    if ep_beta > 0:
                        past = 0
                        lim = ep_rho * z_t
                        for j in range(slots):
                            if ep_peaks[r, j] >= lim and n - ep_ends[r, j] <= ep_memory:
                                past += 1
                        d = 1.0 / (1.0 + ep_beta * past)  # (a division is fine here)
                    rf[r, C_EP_PEAK] = max(rf[r, C_EP_PEAK], z_t) if ri[r, C_EP_IN] == 1 else z_t
                    ri[r, C_EP_LAST] = n
                    ri[r, C_EP_IN] = 1
                else:  # (an episode open this early only comes from a restored state: the spec's case)
                    _end_episode(r, n, ri, rf, ep_peaks, ep_ends, ep_gap, slots)
                damp[i - c0] = d
            else:
                _end_episode(r, n, ri, rf, ep_peaks, ep_ends, ep_gap, slots)
            hi = x if first else rf[r, C_ENV_HI]
            lo = x if first else rf[r, C_ENV_LO]
            nov[i - c0] = -1.0
            if novelty_z > 0:
                z_ext = max(max(x - hi, lo - x), 0.0) / max(max(spread, floor), novelty_width * (hi - lo))
                nov[i - c0] = min(max(z_ext * inv_nov, 0.0), 1.0)
            live[i - c0] = n >= warmup
            # 4. seasonal damping
            ts = tss[i]
            if ts < q_lo or ts >= q_hi:
                q = ts // season_ms
                q_lo = q * season_ms
                q_hi = q_lo + season_ms
                b = q % nbk
            sm = sea[r, b, 0]
            sd = sea[r, b, 1]
            sc = sea[r, b, 2]
            gate[i - c0] = -1.0
            if season and sc >= season_min:
                gate[i - c0] = min(max(abs(x - sm) / max(sd, floor) * inv_season_c, season_lo), 1.0)
            # 4b. time-of-day novelty
            lo_b = min(lo, x)
            width = max(hi, x) - lo_b
            band = 0
            if width > 0:
                f = tod_bins * (x - lo_b) / width  # >= 0 (x >= lo_b); inf near the float limit, NaN never
                band = tod_bins - 1 if f >= tod_bins - 1 else int(f)
            key = band * nbk + b
            visits = tod_cnt[r, key]
            t_short = (1 - tod_alpha) * rf[r, C_TOD_SHORT] + tod_alpha / (1.0 + visits)
            t_mu = rf[r, C_TOD_MU]
            t_var = rf[r, C_TOD_VAR]
            t0 = ri[r, C_T0]
            if t0 == t0_unset:
                t0 = ts
            t_n = ri[r, C_TOD_N]
            zt_tod[i - c0] = np.nan
            if tod and t_short >= tod_gate and ts - t0 >= 2 * season_span and t_n >= tod_min_learn:
                zt_tod[i - c0] = (t_short - t_mu) / max(math.sqrt(t_var), tod_min_sd)
            tod_cnt[r, key] = min(visits + 1, 255)
            rf[r, C_TOD_SHORT] = t_short
            if ts - t0 >= season_span:
                d_t = t_short - t_mu
                a_t = alpha_long if t_n + 1.0 >= lim_long else max(alpha_long, 1.0 / (t_n + 1.0))
                rf[r, C_TOD_MU] = t_mu + a_t * d_t
                rf[r, C_TOD_VAR] = (1 - a_t) * (t_var + a_t * d_t * d_t)
                ri[r, C_TOD_N] = t_n + 1
            ri[r, C_T0] = t0
            # 5. refractory
            refr[i - c0] = -1.0
            if refractory > 0:
                k_r = n - ri[r, C_FIRED]
                refr[i - c0] = 1.0 if k_r >= refractory else max(k_r / refractory, 0.0)
            # learn
            nf = float(n)
            a_s = alpha_scale if nf >= lim_scale else max(alpha_scale, 1.0 / max(nf, 1.0))
            abs_res = abs(resid)
            rf[r, C_SCALE] = 0.0 if first else (1 - a_s) * scale + a_s * abs_res
            rf[r, C_SPREAD] = 0.0 if first else (1 - a_s) * spread + a_s * abs_res
            rf[r, C_MEAN] = (1 - alpha_mean) * mean + alpha_mean * x
            rf[r, C_SHORT] = short
            d = short - mu_u
            m = nf - (warmup // 2)
            a_l = alpha_long if m + 1.0 >= lim_long else max(alpha_long, 1.0 / max(m + 1.0, 1.0))
            if robust_clip > 0 and m >= warmup:
                d = min(max(d, -robust_clip * sd_u), robust_clip * sd_u)
            if m >= 0:
                rf[r, C_MU_U] = mu_u + a_l * d
                rf[r, C_VAR_U] = (1 - a_l) * (var_u + a_l * d * d)
            # ring and its running sums
            head = ri[r, C_HEAD]
            if first:
                ref = x
            rf[r, C_REF] = ref
            so = rf[r, C_SUM_OLD]
            sq = rf[r, C_SUMSQ_OLD]
            sr = rf[r, C_SUM_REC]
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
            ri[r, C_HEAD] = head
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
                rf[r, C_REF] = new_ref
            rf[r, C_SUM_OLD] = so
            rf[r, C_SUMSQ_OLD] = sq
            rf[r, C_SUM_REC] = sr
            # seasonal profile and envelope
            a_q = season_alpha if sc + 1.0 >= lim_season else max(season_alpha, 1.0 / (sc + 1.0))
            sea[r, b, 1] = (1 - a_q) * sd + a_q * abs(x - sm) if sc > 0 else 0.0
            sea[r, b, 0] = (1 - a_q) * sm + a_q * x if sc > 0 else x
            sea[r, b, 2] = min(sc + 1.0, 1e9)
            mid = 0.5 * (hi + lo)
            rf[r, C_ENV_HI] = max(x, hi - envelope_decay * (hi - mid))
            rf[r, C_ENV_LO] = min(x, lo + envelope_decay * (mid - lo))
            ri[r, C_N] = n + 1
        for i in range(c0, c1):
            k = i - c0
            score = 0.0
            if live[k]:
                score = min(max(_neg_log10_tail(zt[k], tail_coef, tail_z0, tail_inv_h) / (2.0 * tail_digits), 0.0), 1.0)
                if zt[k] >= ep_z and ep_beta > 0:
                    score = score * damp[k]
                if nov[k] >= 0.0:
                    score = max(score, nov[k])
                if gate[k] >= 0.0:
                    score = score * gate[k]
                if zt_tod[k] == zt_tod[k]:  # not NaN
                    s_tod = _neg_log10_tail(zt_tod[k], tail_coef, tail_z0, tail_inv_h) / (2.0 * tod_digits)
                    s_tod = min(max(s_tod, 0.0), 1.0)
                    score = max(score, s_tod)
                if refr[k] >= 0.0:
                    score = score * refr[k]
            if score >= fire_level:  # also in the warm-up (score 0) when fire_level <= 0, as the numpy path
                ri[rows[i], C_FIRED] = ri[rows[i], C_N] - 1
            out[i] = score
