"""Vectorised detector steps: graded thresholds with hysteresis and delays, rate, flatline.

Each function takes one *round* of readings (unique rows), the compiled per-row vectors
and the state arrays, updates the state in place for those rows only and returns the new
level per reading. No Python loop runs per reading.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alerts.compile import LadderArrays
from alerts.state import NO_TS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]



def _top(mask: npt.NDArray[np.bool_]) -> I8:
    """Highest level whose column is True (0 if none); thresholds are monotone per row."""
    # nested 1-D selects: ~4x faster than a max-reduction over the 4-wide rows
    top: I8 = np.where(mask[:, 3], np.int8(4), np.where(mask[:, 2], np.int8(3), np.where(
        mask[:, 1], np.int8(2), mask[:, 0].astype(np.int8)))).astype(np.int8, copy=False)
    return top


def ladder_step(
    lad: LadderArrays, on_since: I64, off_since: I64, rows: I32, x: F64, ts: I64, prev: I8,
    late: B | None = None,
) -> I8:
    """New level of a graded threshold rule for one round of unique ``rows``.

    ``x`` is the rule's quantity (the value, its negation for low rules, a % deviation, ...).
    Raise level L when ``x >= thr[L]`` has held ``don_ms[L]`` (per-level delay-on timer in
    ``on_since``, started by the first in-order reading above the threshold). A raised
    level is kept while ``x >= clr[L]`` (hysteresis); a lower target takes effect only
    after ``doff_ms`` (delay-off timer ``off_since``). Late readings (``late``) may only
    raise the level with already-running timers and never start, reset or move timers.
    """
    thr = lad.thr[rows]
    don = lad.don_ms[rows]
    xc = x[:, None]
    tc = ts[:, None]
    cond = xc >= thr  # NaN threshold -> False
    delayed = don > 0
    on = on_since[rows]
    if late is None or not late.any():
        on_new = np.where(cond & delayed, np.where(on == NO_TS, tc, on), NO_TS)
        on_since[rows] = on_new
        inorder = True
    else:
        on_new = np.where(late[:, None], on, np.where(cond & delayed, np.where(on == NO_TS, tc, on), NO_TS))
        on_since[rows] = on_new
        inorder = False
    qualified = cond & (~delayed | ((on_new != NO_TS) & (tc - on_new >= don)))
    raw = _top(qualified)
    hold = _top(xc >= lad.clr[rows])
    target = np.maximum(raw, np.minimum(prev, hold))
    doff = lad.doff_ms[rows]
    off = off_since[rows]
    lower = target < prev
    off_new = np.where(lower, np.where(off == NO_TS, ts, off), NO_TS)
    expired = lower & (ts - off_new >= doff)
    new = np.where(lower & ~expired, prev, target).astype(np.int8, copy=False)
    off_new = np.where(expired, NO_TS, off_new)
    if inorder:
        off_since[rows] = off_new
        return new
    assert late is not None
    off_since[rows] = np.where(late, off, off_new)
    # a late reading only escalates: the newest in-order reading defines the current state
    return np.where(late, np.maximum(prev, raw), new).astype(np.int8, copy=False)


def rate_per_min(ring_v: F64, ring_t: I64, count: I64, rows: I32, v: F64, ts: I64, lag: int | None = None) -> F64:
    """Rate of change (unit/min) between ``v`` at ``ts`` and the oldest sample in the ring,
    or the sample ``lag`` readings back (``1 <= lag < window``; the oldest when fewer).

    Rings are position-major ``(window, cap)``.
    Call after the reading was written (the ring spans the last ``w`` readings). 0 where
    there is no older sample.
    """
    w = ring_v.shape[0]
    cnt = count[rows]
    if lag is None:
        oldest = np.where(cnt > w, cnt % w, 0)
    else:
        back = cnt - 1 - lag  # absolute index of the sample lag readings before the newest
        oldest = np.where(back >= 0, back % w, 0)
    v0 = ring_v[oldest, rows]
    t0 = ring_t[oldest, rows]
    dt = ts - t0
    ok = (cnt > 0) & (dt > 0)
    return np.where(ok, (v - v0) * 60000.0 / np.where(ok, dt, 1), 0.0)


def ring_write(ring_v: F64, ring_t: I64, count: I64, rows: I32, v: F64, ts: I64) -> None:
    """Append one reading per row to the position-major ``(window, cap)`` rings (no allocation)."""
    w, cap = ring_v.shape
    cnt = count[rows]
    pos = (cnt & (w - 1)) if w & (w - 1) == 0 else cnt % w  # power-of-two window: a mask
    flat = pos * cap + rows  # flat index into the (window, cap) planes
    ring_v.reshape(-1)[flat] = v
    ring_t.reshape(-1)[flat] = ts
    count[rows] = cnt + 1


def window_sum(ring_v: F64, ring_t: I64, rows: I32, ts: I64, span_ms: int) -> F64:
    """Sum of ring values with ``ts - span_ms < t <= ts`` per row (position-major rings)."""
    vv = ring_v[:, rows]
    tt = ring_t[:, rows]
    inside = (tt > ts - span_ms) & (tt <= ts) & ~np.isnan(vv)
    return np.asarray(np.where(inside, vv, 0.0).sum(axis=0), np.float64)
