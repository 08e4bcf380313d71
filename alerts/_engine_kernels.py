"""Compiled kernels of the alarm engine's hot path (numba): the per-round fast path of
:meth:`alerts.engine.AlarmEngine._round` and the graded-threshold step.

The numpy formulation in ``AlarmEngine._round_numpy`` is the specification and the test
oracle. It makes ~15 whole-array passes per round: gathers of each row's newest reading,
the quiet bounds and the flatline state; the state writes for every row; and a save and
restore of what those writes overwrite on the rows that need the full rule set. These two
kernels walk the rows once each and touch a row's state only where it changes. The
results are identical to the numpy path (no arithmetic on values, only comparisons and
copies). ``tests/alerts/test_engine_props.py`` compares the two on random streams.

Codes written by :func:`classify`: 0 the newest reading again (ignored), 1 quiet (state
update only), 2 the full rule set (in order), 3 the full rule set (late).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alerts.state import NO_TS

DUP, QUIET, SLOW, LATE = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def classify(r, t, v, last_ts, last_v, flat_since, q_hi, q_lo, flat_ms,  # type: ignore[no-untyped-def]
             code, fs):  # pragma: no cover - compiled
    """Per reading: ``code[i]`` (above) and its flat-since time ``fs[i]``. Returns the
    number of readings that need the full rule set (codes 2 and 3)."""
    n_slow = 0
    for i in range(r.shape[0]):
        ri = r[i]
        ti = t[i]
        vi = v[i]
        lt = last_ts[ri]
        lv = last_v[ri]
        if ti == lt and vi == lv:
            code[i] = DUP
            continue
        f = ti if vi != lv else flat_since[ri]  # NaN last value: differs, flat from now
        fs[i] = f
        if ti < lt:
            code[i] = LATE
            n_slow += 1
        elif vi >= q_hi[ri] or vi <= q_lo[ri] or ti - f >= flat_ms[ri]:
            code[i] = SLOW
            n_slow += 1
        else:
            code[i] = QUIET
    return n_slow


@njit(cache=True, nogil=True)
def quiet_update(r, t, v, code, fs, now_ms, seen, last_ts, last_v, flat_since,  # type: ignore[no-untyped-def]
                 count, ring_v, ring_t):  # pragma: no cover - compiled
    """State update of the quiet readings (code 1): newest reading, flat-since, the ring
    (position-major ``(window, cap)``) and the sample count."""
    w = ring_v.shape[0]
    mask = w - 1 if w & (w - 1) == 0 else -1  # power-of-two window: a mask instead of a division
    for i in range(r.shape[0]):
        if code[i] != QUIET:
            continue
        ri = r[i]
        seen[ri] = now_ms
        last_ts[ri] = t[i]
        last_v[ri] = v[i]
        flat_since[ri] = fs[i]
        c = count[ri]
        pos = c & mask if mask >= 0 else c % w
        ring_v[pos, ri] = v[i]
        ring_t[pos, ri] = t[i]
        count[ri] = c + 1


@njit(cache=True, nogil=True, inline="always")
def _ladder_row(thr, clr, don, doff, on_since, off_since, ri, xi, ti, li, p):  # type: ignore[no-untyped-def]
    """One row of :func:`alerts.detectors.ladder_step` (the numpy function is the specification;
    the same comparisons in the same order): updates the row's timers, returns its new level."""  # pragma: no cover
    no_ts = NO_TS
    raw = 0
    hold = 0
    for lv in range(4):
        cond = xi >= thr[ri, lv]
        delayed = don[ri, lv] > 0
        on = on_since[ri, lv]
        if not li:
            on = (on if on != no_ts else ti) if (cond and delayed) else no_ts
            on_since[ri, lv] = on
        if cond and (not delayed or (on != no_ts and ti - on >= don[ri, lv])):
            raw = lv + 1
        if xi >= clr[ri, lv]:
            hold = lv + 1
    if li:  # a late reading only escalates, with the timers already running
        return max(p, raw)
    target = max(raw, min(p, hold))
    if target < p:
        off = off_since[ri]
        off = off if off != no_ts else ti
        if ti - off >= doff[ri]:
            off_since[ri] = no_ts
            return target
        off_since[ri] = off
        return p
    off_since[ri] = no_ts
    return target


@njit(cache=True, nogil=True, inline="always")
def _write_level(level, ri, rule, new, i, k, out_i, out_prev, out_new):  # type: ignore[no-untyped-def]
    """``_set`` for one row: a changed level is written and reported as entry ``k`` (its
    position ``i``, previous and new level); returns the next free entry."""  # pragma: no cover - compiled
    p = level[ri, rule]
    if new == p:
        return k
    level[ri, rule] = new
    out_i[k] = i
    out_prev[k] = p
    out_new[k] = new
    return k + 1


@njit(cache=True, nogil=True, inline="always")
def _write_level_row(level, ri, rule, new, val, ts, k,  # type: ignore[no-untyped-def]
                     out_rows, out_prev, out_new, out_val, out_ts):  # pragma: no cover - compiled
    """As :func:`_write_level` for rules that report rows with their own values and times
    (compound, vote): the entry's position is the row itself."""
    k2 = _write_level(level, ri, rule, new, ri, k, out_rows, out_prev, out_new)
    if k2 > k:
        out_val[k] = val
        out_ts[k] = ts
    return k2


X_VALUE, X_NEGATED, X_BASELINE, X_SPARKS = 0, 1, 2, 3  # quantity of: overload, low, baseline, high


@njit(cache=True, nogil=True, error_model="numpy")
def ladder_rule(mode, thr, clr, don, doff, on_since, off_since, has_rule,  # type: ignore[no-untyped-def]
                baseline, base_rise, spark, ring_v, ring_t, span_ms, in_ring, level, rule, rows, v, ts, late,
                any_late, gate_red, red_while_running, area, fan_stopped, out_i, out_prev, out_new):  # pragma: no cover
    """``AlarmEngine._ladder`` for one round: rows that have the rule (or still hold a level
    of it) take its quantity as ``_ladder_x`` does (``mode``: the value; the same but for
    spark rows the sparks of the last ``span_ms`` in the ring plus the reading unless
    ``in_ring``; its negation; the baseline deviation), the ladder step, the valve hold (``gate_red``) and
    the level write of ``_set``. Returns how many rows changed level; their positions in
    ``rows``, previous and new levels are in ``out_i``, ``out_prev``, ``out_new``."""
    k = 0
    w = ring_v.shape[0]
    for i in range(rows.shape[0]):
        ri = rows[i]
        p = level[ri, rule]
        if not (has_rule[ri] or p > 0):
            continue
        vi = v[i]
        if mode == X_NEGATED:
            xi = -vi
        elif mode == X_BASELINE:
            b = baseline[ri]
            xi = vi - b if base_rise[ri] else abs(vi / b - 1.0) * 100.0
        elif mode == X_SPARKS and spark[ri]:  # detectors.window_sum: ring in position order, NaN skipped
            t_i = ts[i]
            xi = 0.0
            for pos in range(w):
                tt = ring_t[pos, ri]
                vv = ring_v[pos, ri]
                if tt > t_i - span_ms and tt <= t_i and vv == vv:
                    xi += vv
            if not in_ring:
                xi += vi
        else:
            xi = vi
        new = _ladder_row(thr, clr, don, doff, on_since, off_since, ri, xi, ts[i], any_late and late[i], p)
        if gate_red and new > 3 and red_while_running[ri]:  # Level.ORANGE: held while the fan is stopped
            a = area[ri]
            if a >= 0 and fan_stopped[a]:
                new = 3
        k = _write_level(level, ri, rule, new, i, k, out_i, out_prev, out_new)
    return k


@njit(cache=True, nogil=True)
def settle(rows, level, on_a, off_a, on_b, off_b, on_c, off_c, on_d, off_d,  # type: ignore[no-untyped-def]
           busy, q_hi, q_hi_cfg):  # pragma: no cover - compiled
    """``busy`` = a level, or a delay-on / delay-off timer of one of the four ladders, is set;
    busy rows are never quiet (``q_hi = -inf``), the others take the compiled quiet bound."""
    no_ts = NO_TS
    for i in range(rows.shape[0]):
        ri = rows[i]
        b = False
        for k in range(level.shape[1]):
            if level[ri, k] != 0:
                b = True
                break
        if not b:
            b = (off_a[ri] != no_ts) | (off_b[ri] != no_ts) | (off_c[ri] != no_ts) | (off_d[ri] != no_ts)
        if not b:
            for k in range(4):
                if (on_a[ri, k] != no_ts) | (on_b[ri, k] != no_ts) | (on_c[ri, k] != no_ts) | (on_d[ri, k] != no_ts):
                    b = True
                    break
        busy[ri] = b
        q_hi[ri] = -np.inf if b else q_hi_cfg[ri]


@njit(cache=True, nogil=True)
def scan_rows(r, n, off):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """One pass over a batch's rows: bit 1 set if a row lies outside ``[0, n)``, bit 2 if the
    rows strictly increase, bit 4 if an in-range row is out of service (``off``)."""
    flags = 2
    prev = -1
    for i in range(len(r)):
        ri = r[i]
        if ri <= prev:
            flags &= ~2
        prev = ri
        if ri < 0 or ri >= n:
            flags |= 1
        elif off[ri]:
            flags |= 4
    return flags


@njit(cache=True, nogil=True)
def keep_rows(r, t, v, n, off, r2, t2, v2):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Copy the readings whose row is in ``[0, n)`` and not ``off`` into ``r2, t2, v2`` (in
    order); returns (how many were kept, how many were dropped for ``off``)."""
    k = 0
    held = 0
    for i in range(len(r)):
        ri = r[i]
        if ri < 0 or ri >= n:
            continue
        if off[ri]:
            held += 1
            continue
        r2[k] = ri
        t2[k] = t[i]
        v2[k] = v[i]
        k += 1
    return k, held


@njit(cache=True, nogil=True)
def unique_rows(r, mark):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """True when no row repeats in ``r``. ``mark`` (one slot per row) is -1 on entry and on exit."""
    n = r.shape[0]
    ok = True
    k = 0
    while k < n:
        ri = r[k]
        if mark[ri] >= 0:
            ok = False
            break
        mark[ri] = k
        k += 1
    for i in range(k):
        mark[r[i]] = -1
    return ok


@njit(cache=True, nogil=True)
def row_order(r, t, v, mark, limit, r2, t2, v2):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """If no row repeats in ``r``: write the readings in row order to ``r2, t2, v2`` and return
    True (else False, outputs unspecified). Rows are below ``limit``; ``mark`` is -1 on entry
    and on exit. Two passes: a scatter of positions, then a scan of the marks in row order."""
    n = r.shape[0]
    for k in range(n):
        ri = r[k]
        if mark[ri] >= 0:
            for i in range(k):
                mark[r[i]] = -1
            return False
        mark[ri] = k
    j = 0
    for row in range(limit):
        p = mark[row]
        if p >= 0:
            r2[j] = row
            t2[j] = t[p]
            v2[j] = v[p]
            mark[row] = -1
            j += 1
    return True


@njit(cache=True, nogil=True)
def compound(areas, temp_ptr, temp_rows, area, area_spark, level, last_ts, last_v,  # type: ignore[no-untyped-def]
             now_ms, tick_ts, use_tick, span_ms, r_high, r_base, r_comp, temp_level,
             out_rows, out_prev, out_new, out_val, out_ts):  # pragma: no cover - compiled
    """``AlarmEngine._compound``: the compound red of the temperature rows of ``areas`` (in
    order) and the level write of ``_set``. Returns how many rows changed; their rows,
    previous and new levels, values and times are in the ``out_*`` arrays."""
    k = 0
    for j in range(areas.shape[0]):
        a = areas[j]
        for q in range(temp_ptr[a], temp_ptr[a + 1]):
            ri = temp_rows[q]
            ls = area_spark[area[ri]]
            recent = ls != NO_TS and now_ms - ls <= span_ms
            hot = level[ri, r_high] >= temp_level or level[ri, r_base] >= 1  # Level.BLUE
            new = 4 if recent and hot else 0  # Level.RED
            k = _write_level_row(level, ri, r_comp, new, last_v[ri], tick_ts if use_tick else max(last_ts[ri], ls),
                                 k, out_rows, out_prev, out_new, out_val, out_ts)
    return k


@njit(cache=True, nogil=True)
def set_level(level, rule, rows, new, out_i, out_prev, out_new):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``AlarmEngine._set``'s level write: rows whose level of ``rule`` changes take ``new``;
    returns how many (as :func:`_write_level`)."""
    k = 0
    for i in range(rows.shape[0]):
        k = _write_level(level, rows[i], rule, new[i], i, k, out_i, out_prev, out_new)
    return k


@njit(cache=True, nogil=True)
def anomaly_rule(r, t, score, count, score_col, last, level, rule, blue, min_n,  # type: ignore[no-untyped-def]
                 hold_ms, out_i, out_prev, out_new):  # pragma: no cover - compiled
    """``AlarmEngine._anomaly_rule`` after scoring: keep each row's last score, note firings
    (score >= ``blue`` after ``min_n`` samples), blue while the last firing is younger than
    ``hold_ms``, and the level write of ``_set``. Returns how many rows changed (as
    :func:`set_level`)."""
    k = 0
    for i in range(r.shape[0]):
        ri = r[i]
        sc = score[i]
        score_col[ri] = sc
        if sc >= blue and count[ri] >= min_n:
            last[ri] = t[i]
        lm = last[ri]
        new = 1 if lm != NO_TS and t[i] - lm < hold_ms else 0  # Level.BLUE
        k = _write_level(level, ri, rule, new, i, k, out_i, out_prev, out_new)
    return k


@njit(cache=True, nogil=True)
def vote(r, t, votes, area, level, r_high, r_vote, s2_before, n_vote,  # type: ignore[no-untyped-def]
         area_s2, vote_row, voter_ptr, voter_rows, area_ts, touched,
         out_rows, out_prev, out_new, out_val, out_ts):  # pragma: no cover - compiled
    """``AlarmEngine._vote``: the voting rows of ``r`` whose stage-2 status moved change
    their area's count; then, area by area in index order (time: the newest such reading),
    the vote red is raised on the lowest row at stage 2 when the count reaches ``n_vote``,
    and cleared when it falls below. ``area_ts`` is NO_TS on entry and on exit. Returns
    how many rows changed level (``out_*`` as :func:`compound`)."""
    m = 0
    for i in range(r.shape[0]):
        ri = r[i]
        a = area[ri]
        if not votes[ri] or a < 0:
            continue
        s2 = level[ri, r_high] >= 3  # Level.ORANGE
        if s2 == s2_before[i]:
            continue
        area_s2[a] += 1 if s2 else -1
        if area_ts[a] == NO_TS:
            touched[m] = a
            m += 1
        area_ts[a] = max(area_ts[a], t[i])
    areas = np.sort(touched[:m])
    k = 0
    for j in range(m):
        a = areas[j]
        ts_a = area_ts[a]
        area_ts[a] = NO_TS
        cnt = area_s2[a]
        cur = vote_row[a]
        if cnt >= n_vote and cur < 0:  # carried by a participating detector: the lowest row at stage 2
            for q in range(voter_ptr[a], voter_ptr[a + 1]):
                vr = voter_rows[q]
                if level[vr, r_high] >= 3 and (cur < 0 or vr < cur):
                    cur = vr
            vote_row[a] = cur
        if cur < 0:
            continue
        lvl = 4 if cnt >= n_vote else 0  # Level.RED / NONE
        k = _write_level_row(level, cur, r_vote, lvl, float(cnt), ts_a, k, out_rows, out_prev, out_new, out_val,
                             out_ts)
        if lvl == 0:
            vote_row[a] = -1
    return k


@njit(cache=True, nogil=True)
def sparks(r, t, v, spark, area, spark_ms, area_spark):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``AlarmEngine._sparks_and_power``'s spark part: spark rows reading > 0 note the time,
    per sensor and (the newest) per area."""
    for i in range(r.shape[0]):
        ri = r[i]
        if spark[ri] and v[i] > 0:
            spark_ms[ri] = t[i]
            a = area[ri]
            if a >= 0 and t[i] > area_spark[a]:
                area_spark[a] = t[i]


def warm() -> None:
    """Compile (or load from numba's cache) every kernel for the row dtypes the engine passes
    (intp from ``evaluate``, int32 from ``tick`` and the slow path), so that the first batch
    does not pay ~1 s of compilation."""
    f8, i8, b1, i1 = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int8)
    f8_4, i8_4, i1_2 = np.zeros((0, 4)), np.zeros((0, 4), np.int64), np.zeros((0, 2), np.int8)
    mark = np.zeros(0, np.int32)
    for rows in (np.zeros(0, np.intp), np.zeros(0, np.int32)):
        classify(rows, i8, f8, i8, f8, i8, f8, f8, i8, i1, i8)
        quiet_update(rows, i8, f8, i1, i8, 0, i8, i8, f8, i8, i8, np.zeros((2, 0)), np.zeros((2, 0), np.int64))
        ladder_rule(0, f8_4, f8_4, i8_4, i8, i8_4, i8, b1, f8, b1, b1, np.zeros((2, 0)), np.zeros((2, 0), np.int64),
                    0, False, i1_2, 0, rows, f8, i8, b1, False, False, b1, np.zeros(0, np.int32), b1,
                    np.zeros(0, np.intp), i1, i1)
        settle(rows, i1_2, i8_4, i8, i8_4, i8, i8_4, i8, i8_4, i8, b1, f8, f8)
        in_order(rows, i8, f8, i8, f8, i8, i8, i8, np.zeros((2, 0)), np.zeros((2, 0), np.int64), 1, f8, f8, i8,
                 f8_4, i1, i1, f8, i1)
        set_level(i1_2, 0, rows, i1, np.zeros(0, np.intp), i1, i1)
        anomaly_rule(rows, i8, f8, i8, np.zeros(0, np.float32), i8, i1_2, 0, 0.0, 0, 0, np.zeros(0, np.intp), i1, i1)
        vote(rows, i8, b1, np.zeros(0, np.int32), i1_2, 0, 0, b1, 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
             i8, np.zeros(0, np.int32), i8, np.zeros(0, np.int32), np.zeros(0, np.int32), i1, i1, f8, i8)
        sparks(rows, i8, f8, b1, np.zeros(0, np.int32), i8, i8)
        scan_rows(rows, 0, b1)
        keep_rows(rows, i8, f8, 0, b1, np.zeros(0, np.intp), i8, f8)
    i4 = np.zeros(0, np.int32)
    compound(i4, i8, i4, i4, i8, i1_2, i8, f8, 0, 0, False, 0, 0, 0, 0, 0, i4, i1, i1, f8, i8)
    unique_rows(np.zeros(0, np.intp), mark)
    row_order(np.zeros(0, np.intp), i8, f8, mark, 0, np.zeros(0, np.intp), i8, f8)


@njit(cache=True, nogil=True)
def in_order(r, t, v, last_ts, last_v, flat_since, flat_ms, count, ring_v, ring_t, lag,  # type: ignore[no-untyped-def]
             rate_floor, rate_min, rate_eta_ms, high_thr, rate_prev, flat_new, rate, rate_new):  # pragma: no cover
    """``AlarmEngine._in_order`` up to the spark and power steps, row by row: flatline, the
    ring write, the rate over the window and over its newest quarter (``lag`` readings),
    the rate rule with its time to the next high threshold, and the newest reading. Writes
    the flatline and rate levels (``flat_new``, ``rate_new``) and the reported ``rate``."""
    w = ring_v.shape[0]
    for i in range(r.shape[0]):
        ri = r[i]
        ti = t[i]
        vi = v[i]
        f = ti if vi != last_v[ri] else flat_since[ri]
        flat_since[ri] = f
        flat_new[i] = 3 if ti - f >= flat_ms[ri] else 0  # Level.ORANGE
        c = count[ri]
        ring_v[c % w, ri] = vi
        ring_t[c % w, ri] = ti
        cnt = c + 1
        count[ri] = cnt
        oldest = cnt % w if cnt > w else 0
        dt = ti - ring_t[oldest, ri]
        whole = (vi - ring_v[oldest, ri]) * 60000.0 / dt if dt > 0 else 0.0
        back = cnt - 1 - lag
        oldest = back % w if back >= 0 else 0
        dt = ti - ring_t[oldest, ri]
        recent = (vi - ring_v[oldest, ri]) * 60000.0 / dt if dt > 0 else 0.0
        rr = whole if whole != whole or whole <= recent else recent  # np.minimum (NaN wins)
        if recent != recent:
            rr = recent
        rate[i] = whole
        floor = rate_floor[ri]
        new = 0
        if floor == floor:
            rmin = rate_min[ri]
            rising = vi >= floor and rr >= rmin
            raw = 1 if rising else 0
            eta_ms = rate_eta_ms[ri]
            if rising and eta_ms > 0:
                nxt = np.inf
                for k in range(high_thr.shape[1]):
                    th = high_thr[ri, k]
                    if th > vi and th < nxt:
                        nxt = th
                eta = (nxt - vi) / rr * 60000.0 if rr > 0 else np.inf
                if eta <= eta_ms:
                    raw = 2  # Level.YELLOW
            p = rate_prev[i]
            hold = vi >= 0.9 * floor and rr >= 0.5 * rmin
            new = max(raw, p if hold else 0)
        rate_new[i] = new
        last_ts[ri] = ti
        last_v[ri] = vi
