"""AnomalyScorer: contract (range, causality, vectorisation, state) and behaviour on crafted series."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.anomaly import EP_NEVER, AnomalyScorer, log10_gauss_tail, score_series

MIN_MS = 60_000


def _ts(n: int) -> np.ndarray:
    return 1_700_000_000_000 + np.arange(n, dtype=np.int64) * MIN_MS


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return 20.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def test_gauss_tail_matches_scipy_including_far_tail() -> None:
    z = np.linspace(-5.0, 30.0, 141)
    expected = np.array([math.log10(0.5 * math.erfc(v / math.sqrt(2.0))) for v in z])
    np.testing.assert_allclose(log10_gauss_tail(z), expected, rtol=1e-6, atol=1e-6)


def test_the_compiled_tail_table_equals_the_formula_to_its_rounding() -> None:
    """The compiled scorer reads -log10 Q(z) from a table of degree-5 pieces (the formula's
    three libm calls per sample cost more than the rest of the update). On a dense grid over
    the table, its edges and beyond (where the formula itself is used), it agrees with the
    formula to 5e-12 absolute (the score is this over 2 x tail_digits = 16: ~3e-13)."""
    from alerts._anomaly_kernel import tail_values
    from alerts.anomaly import TAIL_H, TAIL_Z0, TAIL_Z1, _tail_coef

    rng = np.random.default_rng(5)
    z = np.concatenate([np.linspace(-12.0, 40.0, 1_000_003), rng.uniform(-9.5, 12.5, 200_000),
                        TAIL_Z0 + np.arange(0, 700) * TAIL_H,  # every interval edge, 0 and both ends
                        np.nextafter(TAIL_Z1, -np.inf) + np.zeros(1), np.array([0.0, -0.0, 1e-300, -1e-300])])
    got = np.empty_like(z)
    tail_values(z, _tail_coef(), TAIL_Z0, 1.0 / TAIL_H, got)
    want = -log10_gauss_tail(z)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=5e-12)


def test_scores_are_finite_and_in_unit_interval() -> None:
    x = _noise(800)
    x[400] += 50.0
    s = score_series(x, _ts(800))
    assert s.shape == x.shape
    assert np.all(np.isfinite(s))
    assert s.min() >= 0.0
    assert s.max() <= 1.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=80))
def test_any_finite_series_scores_in_unit_interval(values: list[float]) -> None:
    s = score_series(np.asarray(values), _ts(len(values)))
    assert np.all((s >= 0.0) & (s <= 1.0))


def test_online_a_prefix_scores_the_same_as_the_full_series() -> None:
    x = _noise(600, 1)
    x[300:] += 8.0
    full = score_series(x, _ts(600))
    part = score_series(x[:350], _ts(350))
    np.testing.assert_array_equal(part, full[:350])


def test_white_noise_rarely_fires_a_spike_does() -> None:
    # measured calibration (module docstring): on white noise a score >= 0.5 comes about
    # 4.5e-5 per sample, >= 0.7 never; the bounds below leave a margin for other seeds
    k, n = 20, 5000
    x = 20.0 + np.random.default_rng(2).normal(0.0, 1.0, (k, n))
    x[:, 3000] += 15.0
    sc = AnomalyScorer(k)
    rows = np.arange(k, dtype=np.int32)
    s = np.zeros((k, n))
    for t in range(n):
        s[:, t] = sc.score_learn(rows, x[:, t], np.full(k, _ts(n)[t]))
    fires = s[:, 1000:] >= 0.5
    fires[:, 2000] = False  # the spike (column 3000 - 1000)
    assert fires.sum() <= 0.0002 * fires.size
    assert s[:, 1000:3000].max() < 0.8
    assert np.all(s[:, 3000] >= 0.5)


def test_level_shift_fires_within_a_few_samples() -> None:
    x = _noise(2000, 3)
    x[1500:] += 6.0
    s = score_series(x, _ts(2000))
    assert s[1000:1500].max() < 0.5
    assert np.flatnonzero(s[1500:] >= 0.5)[0] < 10


def test_one_incident_fires_once() -> None:
    x = _noise(2000, 4)
    x[1500:1520] += 30.0  # a 20-sample excursion
    s = score_series(x, _ts(2000))
    assert int((s[1490:1600] >= 0.5).sum()) == 1


def test_vectorised_rows_equal_independent_series_and_inputs_untouched() -> None:
    n = 400
    series = [_noise(n, k) + (k * 10.0) for k in range(3)]
    series[1][250] += 40.0
    solo = [score_series(s, _ts(n)) for s in series]
    sc = AnomalyScorer(3)
    out = np.zeros((3, n))
    ts = _ts(n)
    for t in range(n):
        rows = np.array([2, 0, 1], dtype=np.int32)  # order within a call must not matter
        vals = np.array([series[r][t] for r in rows])
        tss = np.full(3, ts[t], dtype=np.int64)
        vals_copy, rows_copy = vals.copy(), rows.copy()
        out[rows, t] = sc.score_learn(rows, vals, tss)
        np.testing.assert_array_equal(vals, vals_copy)
        np.testing.assert_array_equal(rows, rows_copy)
    for k in range(3):
        np.testing.assert_allclose(out[k], solo[k], rtol=0, atol=1e-12)


def test_grow_keeps_state_of_existing_rows() -> None:
    x = _noise(300, 5)
    ts = _ts(300)
    a, b = AnomalyScorer(1), AnomalyScorer(4)
    row = np.zeros(1, dtype=np.int32)
    sa, sb = np.zeros(300), np.zeros(300)
    for t in range(300):
        if t == 150:
            a.grow(4)
            assert a.capacity == 4
        sa[t] = a.score_learn(row, x[t : t + 1], ts[t : t + 1])[0]
        sb[t] = b.score_learn(row, x[t : t + 1], ts[t : t + 1])[0]
    np.testing.assert_array_equal(sa, sb)


def test_restore_after_restart_equals_never_stopping() -> None:
    x = _noise(500, 6)
    x[400] += 25.0
    ts = _ts(500)
    row = np.zeros(1, dtype=np.int32)
    ref = score_series(x, ts)
    first = AnomalyScorer(1)
    for t in range(250):
        first.score_learn(row, x[t : t + 1], ts[t : t + 1])
    snap = first.snapshot()
    second = AnomalyScorer(1)
    second.restore(snap)
    rest = np.array([second.score_learn(row, x[t : t + 1], ts[t : t + 1])[0] for t in range(250, 500)])
    np.testing.assert_array_equal(rest, ref[250:])


def test_state_memory_is_bounded() -> None:
    sc = AnomalyScorer(2)
    row = np.zeros(1, dtype=np.int32)
    x = _noise(2000, 7)
    ts = _ts(2000)

    def nbytes() -> int:
        return sum(v.nbytes for v in sc.snapshot().values())

    for t in range(20):
        sc.score_learn(row, x[t : t + 1], ts[t : t + 1])
    early = nbytes()
    for t in range(20, 2000):
        sc.score_learn(row, x[t : t + 1], ts[t : t + 1])
    assert nbytes() == early
    assert sc.bytes_per_sensor() * 2 <= early


def test_bad_rows_and_params_are_refused() -> None:
    sc = AnomalyScorer(2)
    with pytest.raises(IndexError):
        sc.score_learn(np.array([2], dtype=np.int32), np.array([1.0]), np.array([0], dtype=np.int64))
    with pytest.raises(ValueError, match="alpha_mean"):
        AnomalyScorer(1, alpha_mean=0.0)
    with pytest.raises(TypeError):
        AnomalyScorer(1, no_such_param=1)


def test_running_ring_sums_match_an_exact_recount() -> None:
    # O(1) level test: the running sums must equal a recount of the ring at every step,
    # also for large values with a small spread (centred sums, no cancellation)
    big, w = 16, 4
    sc = AnomalyScorer(3, ring=big, level_window=w)
    rng = np.random.default_rng(0)
    ages = np.arange(big)
    for t in range(200):
        rows = rng.permutation(3)[: rng.integers(1, 4)].astype(np.int32)
        sc.score_learn(rows, rng.normal(1e6, 1.0, len(rows)), np.full(len(rows), t * MIN_MS, dtype=np.int64))
        for r in range(3):
            filled = min(int(sc.n[r]), big)
            by_age = sc.ring[r, (sc.head[r] - 1 - ages) % big] - sc.ref[r]
            older = (ages >= w - 1) & (ages < filled)
            recent = ages < min(w - 1, filled)
            assert by_age[older].sum() == pytest.approx(sc.sum_old[r], abs=1e-9)
            assert (by_age[older] ** 2).sum() == pytest.approx(sc.sumsq_old[r], abs=1e-9)
            assert by_age[recent].sum() == pytest.approx(sc.sum_rec[r], abs=1e-9)


def test_restore_of_a_smaller_snapshot_keeps_capacity_and_fresh_rows() -> None:
    x = _noise(300, 8)
    ts = _ts(300)
    row = np.zeros(1, dtype=np.int32)
    small = AnomalyScorer(1)
    for t in range(300):
        small.score_learn(row, x[t : t + 1], ts[t : t + 1])
    big = AnomalyScorer(3)
    big.restore(small.snapshot())
    assert big.capacity == 3
    assert big.n.tolist() == [300, 0, 0]
    fresh = AnomalyScorer(1)
    a = big.score_learn(np.array([2], dtype=np.int32), x[:1], ts[:1])
    b = fresh.score_learn(row, x[:1], ts[:1])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("seed", "params"), [(0, {}), (1, {}), (2, {}),
                                              (3, {"fire_level": 0.0, "refractory": 10, "season": False}),
                                              (4, {"episode_slots": 2, "episode_memory": 150, "episode_gap": 2,
                                                   "episode_z": 2.0, "episode_beta": 0.5})])
def test_compiled_kernel_equals_the_numpy_specification(seed: int, params: dict[str, Any]) -> None:
    """The numba kernel (default backend) against the whole-array formulation: same scores
    and the same state after a stream with noise, level shifts, spikes and a flat stretch,
    rows in a different random order every call, past several ring laps and hour buckets.
    The last case fires on every sample, the warm-up included (a fire level of 0)."""
    k, n = 12, 900
    rng = np.random.default_rng(seed)
    x = 20.0 + rng.normal(0.0, 1.0, (k, n)) * rng.uniform(0.1, 5.0, (k, 1))
    x[:, 400:] += rng.uniform(-10.0, 10.0, (k, 1))
    x[rng.random((k, n)) < 0.01] += 40.0
    x[3, 200:500] = 7.0
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64)[None, :] * 600_000 + rng.integers(0, 1000, (k, 1))
    comp, ref = AnomalyScorer(k, **params), AnomalyScorer(k, backend="numpy", **params)
    assert comp.backend == "compiled"
    for t in range(n):
        live = np.flatnonzero(rng.random(k) < 0.9)  # some sensors skip a sample
        rows = rng.permutation(live).astype(np.int32)
        a = comp.score_learn(rows, x[rows, t], ts[rows, t])
        b = ref.score_learn(rows, x[rows, t], ts[rows, t])
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    sa, sb = comp.snapshot(), ref.snapshot()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_allclose(sa[key], sb[key], rtol=1e-9, atol=1e-9, err_msg=key)
    assert (sa["ep_ends"] >= 45).any()  # episodes ended (and were remembered) past the warm-up and its settling


def test_the_kernel_reads_the_state_records_by_the_scorers_column_order() -> None:
    """The compiled kernel addresses a row's scalars by column of one record: its column list
    must be the scorer's field order, and every field 8 bytes (float64 and int64 views)."""
    from alerts._anomaly_kernel import COLUMNS
    from alerts.anomaly import _STATE1

    assert tuple(name for name, _, _ in _STATE1) == COLUMNS
    assert all(np.dtype(dt).itemsize == 8 for _, dt, _ in _STATE1)
    s = AnomalyScorer(3)
    s.score_learn(np.array([1], np.int32), np.array([5.0]), np.array([1_700_000_000_000], np.int64))
    assert s.n.tolist() == [0, 1, 0]
    assert s.mean[1] == 5.0
    assert s.t0[1] == 1_700_000_000_000


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        AnomalyScorer(1, backend="gpu")


def _daily(days: int, step_ms: int = 300_000, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle (low at night, high by day) with a little noise, ``step_ms`` apart."""
    per_day = 86_400_000 // step_ms
    n = days * per_day
    ts = 1_700_006_400_000 + np.arange(n, dtype=np.int64) * step_ms  # 00:00 UTC
    hour = (ts // 3_600_000) % 24
    x = np.where((hour >= 8) & (hour < 18), 80.0, 20.0) + np.random.default_rng(seed).normal(0.0, 1.0, n)
    return x, ts


def test_a_value_unusual_for_its_time_of_day_fires_where_the_residual_tests_cannot() -> None:
    """Day 7 stays at its night level through the working day (a plant that did not start,
    a sensor left covered): every value lies inside the range seen, the change is one step,
    yet the time-of-day novelty catches it within the hour; without it nothing fires."""
    x, ts = _daily(8)
    per_day = 288
    day7 = slice(6 * per_day + 8 * 12, 6 * per_day + 18 * 12)  # 08:00-18:00 of day 7
    x[day7] = 20.0 + np.random.default_rng(6).normal(0.0, 1.0, day7.stop - day7.start)
    on = score_series(x, ts)
    off = score_series(x, ts, tod=False)
    assert on[per_day : day7.start].max() < 0.5  # after the first 08:00 step (new to it): five ordinary days
    first = np.flatnonzero(on[day7] >= 0.5)
    assert len(first) > 0
    assert first[0] <= 12  # within an hour of 08:00
    assert off[day7].max() < 0.5
    np.testing.assert_allclose(on, _numpy_series(x, ts), rtol=1e-9, atol=1e-12)  # the kernel equals the spec


def test_time_of_day_novelty_stays_quiet_on_noise_past_its_two_day_wait() -> None:
    """One sample every 10 s for three days: the first day visits every hour for the first
    time, which is not news; white noise then stays quiet once the novelty is scoring too."""
    n = 3 * 8640
    x = 20.0 + np.random.default_rng(7).normal(0.0, 1.0, n)
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 10_000
    sc = AnomalyScorer(1)
    row = np.zeros(1, np.int32)
    s = np.array([sc.score_learn(row, x[i : i + 1], ts[i : i + 1])[0] for i in range(n)])
    assert int(sc.snapshot()["tod_n"][0]) > 2 * 8640 - 10  # it learnt from day 2 on
    assert s[1000:].max() < 0.7  # as on the one-a-minute noise above: nothing near blue (0.9)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_time_of_day_novelty_needs_learnt_history_not_only_elapsed_time(backend: str) -> None:
    """A sensor that reported for five hours, then fell silent for three days (a gateway down
    over a weekend): back, it is two days past its first sample but its novelty statistics
    have learnt nothing yet, so the novelty does not score its first samples back."""
    x = 20.0 + np.random.default_rng(8).normal(0.0, 1.0, 900)
    ts = 1_700_000_000_000 + np.arange(900, dtype=np.int64) * MIN_MS
    ts[300:] += 3 * 86_400_000
    on = score_series(x, ts) if backend == "compiled" else _numpy_series(x, ts)
    off = score_series(x, ts, tod=False)
    np.testing.assert_allclose(on[300:400], off[300:400])  # not scoring yet: the same as without it
    assert (on[300:] - off[300:]).max() < 0.2  # and once it scores, no fire of its own (it was 1.0)


def _numpy_series(x: np.ndarray, ts: np.ndarray, **params: Any) -> np.ndarray:
    ref = AnomalyScorer(1, backend="numpy", **params)
    row = np.zeros(1, np.int32)
    return np.array([ref.score_learn(row, x[i : i + 1], ts[i : i + 1])[0] for i in range(len(x))])


def test_compiled_equals_numpy_when_days_pass_within_the_warm_up() -> None:
    """Five samples, three days of silence, then more: the time-of-day state is past its wait
    while the scorer is still in its 30-sample warm-up (both must score 0 there)."""
    x = 20.0 + np.random.default_rng(9).normal(0.0, 1.0, 60)
    x[5:] += 30.0
    ts = 1_700_000_000_000 + np.arange(60, dtype=np.int64) * MIN_MS
    ts[5:] += 3 * 86_400_000
    np.testing.assert_allclose(score_series(x, ts), _numpy_series(x, ts), rtol=1e-9, atol=1e-12)


def test_old_snapshots_without_time_of_day_state_restore_with_it_fresh() -> None:
    x, ts = _daily(2)
    sc = AnomalyScorer(2)
    rows = np.array([0, 1], np.int32)
    for i in range(300):
        sc.score_learn(rows, np.full(2, x[i]), np.full(2, ts[i]))
    new_keys = ("t0", "tod_short", "tod_mu", "tod_var", "tod_n", "tod_cnt")
    old = {k: v for k, v in sc.snapshot().items() if k not in new_keys}
    restored = AnomalyScorer(2)
    restored.restore(old)
    snap = restored.snapshot()
    assert int(snap["n"][0]) == 300
    assert not snap["tod_cnt"].any()
    for key in ("tod_short", "tod_mu", "tod_var", "tod_n"):
        assert not snap[key].any(), key
    assert np.isfinite(restored.score_learn(rows, np.full(2, x[300]), np.full(2, ts[300]))).all()
    assert int(restored.snapshot()["t0"][0]) == ts[300]  # the day of history counts from here


def _daily_spikes(n: int, heights: list[float], seed: int = 0) -> np.ndarray:
    """A quiet CPU-like series (0.07 +- 0.005) with a spike of ``heights[k]`` every 290 samples
    (ec2_cpu_utilization_c6585a of NAB: a daily job, not an incident)."""
    x = 0.07 + np.random.default_rng(seed).normal(0.0, 0.005, n)
    for k, h in enumerate(heights):
        x[300 + 290 * k] = h
    return x


def test_a_spike_that_recurs_at_one_size_is_learnt_as_usual_a_larger_one_still_fires() -> None:
    """The tail score of an episode of surprise is divided by 1 + beta x the remembered past
    episodes at least as large, and a new maximum counts as novel only by a margin that is a
    fraction of the envelope's width (a spike 0.05 above the last on a 1.4 spike is not new)."""
    heights = [1.40 + 0.01 * k for k in range(12)] + [4.0]
    x = _daily_spikes(300 + 290 * 13, heights)
    ts = _ts(len(x))
    at = [300 + 290 * k for k in range(13)]
    now = score_series(x, ts)
    before = score_series(x, ts, episode_beta=0.0, novelty_width=0.0)  # without both
    assert (before[at[1:12]] >= 0.5).sum() >= 10  # every daily spike fired
    assert (now[at[4:12]] < 0.5).all()  # from the fifth on they no longer do
    assert (now[at[1:12]] <= before[at[1:12]] + 1e-12).all()
    assert now[at[12]] >= 0.5  # a spike almost three times the usual one is news


def test_episode_memory_expires() -> None:
    """Past episodes count only within ``episode_memory`` samples: a spike after a long quiet
    spell scores as the first did."""
    heights = [1.4] * 6
    x = _daily_spikes(300 + 290 * 6 + 3000, heights)
    x[300 + 290 * 6 + 2500] = 1.4
    ts = _ts(len(x))
    # the tail score alone (the envelope has contracted meanwhile: the spike is also a new extreme)
    short_memory = score_series(x, ts, episode_memory=1000, novelty_z=0.0)
    long_memory = score_series(x, ts, episode_memory=100_000, novelty_z=0.0)
    late = 300 + 290 * 6 + 2500
    assert short_memory[late] == 1.0 > long_memory[late]  # forgotten: undamped; remembered: damped


def test_old_snapshots_without_episode_state_restore_with_it_fresh() -> None:
    x = _daily_spikes(1200, [1.4, 1.4, 1.4])
    ts = _ts(len(x))
    sc = AnomalyScorer(1)
    row = np.zeros(1, np.int32)
    for i in range(1000):
        sc.score_learn(row, x[i : i + 1], ts[i : i + 1])
    new_keys = ("ep_in", "ep_peak", "ep_last", "ep_head", "ep_peaks", "ep_ends")
    assert (sc.snapshot()["ep_ends"] > EP_NEVER).any()
    restored = AnomalyScorer(1)
    restored.restore({k: v for k, v in sc.snapshot().items() if k not in new_keys})
    snap = restored.snapshot()
    assert int(snap["n"][0]) == 1000
    assert (snap["ep_ends"] == EP_NEVER).all()
    assert not snap["ep_peaks"].any()
    assert not snap["ep_in"].any()
    assert int(snap["ep_last"][0]) == EP_NEVER
    assert np.isfinite(restored.score_learn(row, x[1000:1001], ts[1000:1001])).all()


def test_compiled_equals_numpy_for_an_episode_left_open_by_a_restore_before_settling() -> None:
    """An episode can only be open before the long-run statistics settle in a restored state
    (here: restored into a scorer with a longer warm-up). Both backends end it the same way."""
    x = _daily_spikes(1500, [1.4, 1.4, 1.4, 1.4])
    x[600:700] = 1.5  # a level shift: the episode is open when the state is saved, and the surprise
    # stays above the episode threshold for a while after the restore, before the new scorer settles
    ts = _ts(len(x))
    row = np.zeros(1, np.int32)
    src = AnomalyScorer(1)
    for i in range(603):
        src.score_learn(row, x[i : i + 1], ts[i : i + 1])
    snap = src.snapshot()
    assert int(snap["ep_in"][0]) == 1
    comp, ref = AnomalyScorer(1, warmup=600), AnomalyScorer(1, warmup=600, backend="numpy")
    comp.restore(snap)
    ref.restore(snap)
    for i in range(603, 1500):
        a = comp.score_learn(row, x[i : i + 1], ts[i : i + 1])
        b = ref.score_learn(row, x[i : i + 1], ts[i : i + 1])
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    sa, sb = comp.snapshot(), ref.snapshot()
    for key in ("ep_in", "ep_peak", "ep_last", "ep_head", "ep_peaks", "ep_ends"):
        np.testing.assert_allclose(sa[key], sb[key], rtol=1e-9, err_msg=key)
    assert int(sa["ep_ends"].max()) > 603  # the restored episode ended (before settling: 603 < 900)
