"""Property-based tests of the engine: pure inputs, bounded memory, restart equivalence."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.engine import AlarmEngine
from alerts.rules import RULE
from alerts.transitions import Transitions
from plantwatch.registry import OutOfService, Sensor
from tests.alerts.conftest import T0, make_engine, sensor

KINDS = ["gas.combustible", "gas.toxic", "gas.oxygen", "dust.hopper_temperature",
         "dust.pressure_diff", "dust.spark", "dust.water_level", "power.residual_current"]
N = len(KINDS)


def sensors() -> list[Sensor]:
    out = []
    for i, k in enumerate(KINDS):
        params: dict[str, Any] = {"flatline_s": 60.0, "delay_off_s": 10.0}
        if k == "dust.pressure_diff":
            params["baseline"] = 1000.0
        if k == "dust.water_level":
            params["low_limit"] = 1.0
        out.append(sensor(f"S{i}", k, area="A" if i < 4 else "B", interval_s=5.0, **params))
    return out


SCALE = np.array([60.0, 30.0, 26.0, 90.0, 2000.0, 5.0, 3.0, 600.0])

# one batch: list of (row, ts offset in s, value fraction of the kind's scale)
reading = st.tuples(st.integers(-1, N - 1), st.integers(0, 120), st.floats(0.0, 1.2))
batch = st.lists(reading, min_size=0, max_size=12)
series = st.lists(st.tuples(batch, st.booleans()), min_size=1, max_size=12)  # (batch, tick after?)


def arrays(b: list[tuple[int, int, float]], base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.array([r for r, _, _ in b], np.int32)
    ts = np.array([base + s * 1000 for _, s, _ in b], np.int64)
    vals = np.array([f * SCALE[max(r, 0)] for r, _, f in b], np.float64)
    return rows, ts, vals


def run(e: AlarmEngine, ser: list[tuple[list[tuple[int, int, float]], bool]], start: int = 0) -> list[Any]:
    out: list[Any] = []
    for i, (b, tick) in enumerate(ser):
        base = T0 + (start + i) * 30_000
        r, t, v = arrays(b, base)
        out.append(canon(e.evaluate(r, t, v, base + 60_000)))
        if tick:
            out.append(canon(e.tick(base + 90_000)))
    return out


def canon(tr: Transitions) -> list[tuple[int, int, int, int, int, float | None]]:
    """Transitions as sorted tuples, reported value included (NaN as None, so equal NaNs compare equal)."""
    values = [None if v != v else v for v in tr.value.tolist()]
    return sorted(zip(tr.row.tolist(), tr.rule.tolist(), tr.prev.tolist(), tr.level.tolist(),
                      tr.ts_ms.tolist(), values, strict=True), key=lambda x: x[:5])


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(series)
def test_evaluate_never_mutates_its_inputs(ser: list[tuple[list[tuple[int, int, float]], bool]]) -> None:
    e = make_engine(sensors())
    for i, (b, _) in enumerate(ser):
        r, t, v = arrays(b, T0 + i * 30_000)
        copies = (r.copy(), t.copy(), v.copy())
        e.evaluate(r, t, v, T0 + i * 30_000 + 60_000)
        assert all(np.array_equal(a, c) for a, c in zip((r, t, v), copies, strict=True))


@PROPS
@given(series, series)
def test_memory_is_bounded_by_sensors_not_readings(a: Any, b: Any) -> None:
    e = make_engine(sensors())
    run(e, a)
    shapes = {k: v.shape for k, v in e.snapshot().items()}
    per_sensor = e.bytes_per_sensor()
    run(e, b + b + b, start=len(a))
    assert {k: v.shape for k, v in e.snapshot().items()} == shapes
    assert e.bytes_per_sensor() == per_sensor


@PROPS
@given(series, series)
def test_restore_then_continue_equals_never_stopping(a: Any, b: Any) -> None:
    ref = make_engine(sensors())
    run(ref, a)
    snap = ref.snapshot()
    restored = make_engine(sensors())
    restored.restore({k: v.copy() for k, v in snap.items()})
    assert run(restored, b, start=len(a)) == run(ref, b, start=len(a))
    assert np.array_equal(restored.levels(), ref.levels())


@PROPS
@given(series)
def test_fast_path_equals_full_rule_set(ser: Any) -> None:
    fast, full = make_engine(sensors()), make_engine(sensors(), fast_path=False)
    assert run(fast, ser) == run(full, ser)


# values from a few levels, so that repeats (redeliveries), flat runs and crossings are common
coarse_reading = st.tuples(st.integers(-1, N - 1), st.integers(0, 120),
                           st.sampled_from([0.0, 0.05, 0.3, 0.45, 0.6, 0.9, 1.1]) | st.floats(0.0, 1.2))
coarse_series = st.lists(st.tuples(st.lists(coarse_reading, max_size=12), st.booleans()), min_size=1, max_size=16)


@PROPS
@given(coarse_series, st.booleans())
def test_compiled_kernels_equal_the_numpy_formulation(ser: Any, anomaly: bool) -> None:
    """The hot path's numba kernels (quiet round, ladder step, busy flags) against the numpy
    reference: the same transitions after every call and the same state at the end."""
    compiled = make_engine(sensors(), anomaly=anomaly)
    reference = make_engine(sensors(), anomaly=anomaly, kernel=False)
    assert run(compiled, ser) == run(reference, ser)
    a, b = compiled.snapshot(), reference.snapshot()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@PROPS
@given(coarse_series, st.sets(st.integers(0, N - 1), min_size=1, max_size=3), st.booleans())
def test_held_rows_are_as_if_their_readings_were_never_sent(ser: Any, held: set[int], kernel: bool) -> None:
    """Rows out of service (maintenance) from the start: the other rows' transitions equal
    those of an engine that never received the held rows' readings, the held rows have none
    (not even a deadman), and every held reading is counted."""
    hold = OutOfService(since_ms=T0, until_ms=T0 + 86_400_000, by="test", reason="maintenance")
    with_held = [replace(s, out_of_service=hold) if i in held else s for i, s in enumerate(sensors())]
    e_held = make_engine(with_held, kernel=kernel)
    e_ref = make_engine(sensors(), kernel=kernel)
    without = [([x for x in b if x[0] not in held], tick) for b, tick in ser]
    got = run(e_held, ser)
    want = [[x for x in step if x[0] not in held] for step in run(e_ref, without)]
    assert got == want
    assert e_held.levels()[sorted(held)].max() == 0
    assert e_held.out_of_service_readings == sum(x[0] in held for b, _ in ser for x in b)


def test_compiled_anomaly_rule_equals_the_numpy_formulation_when_it_fires() -> None:
    """The anomaly rule fires only after ANOMALY_MIN_SAMPLES samples, which the random
    streams above never reach: 260 batches of noise, then level steps on half the sensors,
    with redeliveries and late readings mixed in (the rule's other input path). The compiled
    rule must raise and clear the same blue alarms with the same scores as the numpy one."""
    rng = np.random.default_rng(3)
    compiled = make_engine(sensors(), anomaly=True)
    reference = make_engine(sensors(), anomaly=True, kernel=False)
    rows = np.arange(N, dtype=np.int32)
    fired = 0
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for b in range(320):
        step = np.where((rows % 2 == 0) & (b >= 260) & (b < 290), 0.25, 0.0)
        vals = (0.3 + step + rng.normal(0.0, 0.01, N)) * SCALE
        ts = np.full(N, T0 + b * 5_000, np.int64)
        r, t, v = rows, ts, vals
        if prev is not None and b % 7 == 0:  # a redelivery of the previous batch and one late reading
            r = np.concatenate([rows, prev[0], rows[:1]])
            t = np.concatenate([ts, prev[1], ts[:1] - 7_000])
            v = np.concatenate([vals, prev[2], vals[:1]])
        now = T0 + b * 5_000 + 500
        a, c = canon(compiled.evaluate(r, t, v, now)), canon(reference.evaluate(r, t, v, now))
        assert a == c
        fired += sum(1 for x in a if x[1] == RULE["anomaly"] and x[3] > 0)
        prev = (rows, ts, vals)
    assert fired >= 2  # the steps really raised anomaly alarms
    sa, sb = compiled.snapshot(), reference.snapshot()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@PROPS
@given(batch)
def test_one_level_per_row_and_rule_and_transitions_chain(b: list[tuple[int, int, float]]) -> None:
    e = make_engine(sensors())
    r, t, v = arrays(b, T0)
    tr = e.evaluate(r, t, v, T0 + 200_000)
    seen: dict[tuple[int, int], int] = {}
    for row, rule, prev, lvl in zip(tr.row, tr.rule, tr.prev, tr.level, strict=True):
        key = (int(row), int(rule))
        assert int(prev) == seen.get(key, 0)  # each transition starts where the last one ended
        assert prev != lvl
        seen[key] = int(lvl)
    for (row, rule), lvl in seen.items():
        assert int(e.levels()[row, rule]) == lvl


@pytest.mark.parametrize("coverage", [1.0, 0.9])  # every sensor per batch; most of them
def test_large_shuffled_batch_equals_row_order(coverage: float) -> None:
    """A large batch in random row order is evaluated in row order internally (a memory-order
    speed-up, two code paths: the whole fleet, or >= 4096 rows and 1/8 of it): the transitions,
    levels and state must equal those of the same readings sent in row order, with the anomaly
    scorer on and incidents in a third of the areas."""
    rng = np.random.default_rng(7)
    n = 5000

    def fleet() -> list[Sensor]:
        out = []
        for i in range(n):
            params: dict[str, Any] = {"baseline": 1000.0} if KINDS[i % N] == "dust.pressure_diff" else {}
            out.append(sensor(f"S{i}", KINDS[i % N], area=f"A{i // 40}", interval_s=5.0, **params))
        return out
    ordered, shuffled = make_engine(fleet(), anomaly=True), make_engine(fleet(), anomaly=True)
    rows = np.arange(n, dtype=np.int32)
    hot = (rows // 40) % 3 == 0
    raised = 0
    for b in range(12):
        frac = rng.random(n) * np.where(hot, min(1.2, 0.2 + b * 0.12), 0.3)
        vals = frac * SCALE[rows % N]
        ts = np.full(n, T0 + b * 5_000, np.int64)
        now = T0 + b * 5_000 + 500
        keep = np.sort(rng.permutation(n)[: int(coverage * n)])  # rows in this batch, in row order
        sub = keep[rng.permutation(len(keep))]  # the same rows shuffled
        a = canon(ordered.evaluate(rows[keep], ts[keep], vals[keep], now))
        c = canon(shuffled.evaluate(rows[sub], ts[sub], vals[sub], now))
        assert a == c
        raised += len(a)
        assert canon(ordered.tick(now + 2_000)) == canon(shuffled.tick(now + 2_000))
    assert raised > 500  # the incidents really raise (and clear) alarms in both
    assert np.array_equal(ordered.levels(), shuffled.levels())
    sa, sb = ordered.snapshot(), shuffled.snapshot()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k], equal_nan=sa[k].dtype.kind == "f"), k


def test_large_batches_with_repeated_rows_match_the_numpy_reference() -> None:
    """Batches above the reorder size in random order, some rows two or three times (redeliveries
    and bursts): the compiled reorder must fall back to rounds exactly like the numpy path."""
    rng = np.random.default_rng(11)
    n = 5000
    fleet = []
    for i in range(n):
        params: dict[str, Any] = {"baseline": 1000.0} if KINDS[i % N] == "dust.pressure_diff" else {}
        fleet.append(sensor(f"S{i}", KINDS[i % N], area=f"A{i // 40}", interval_s=5.0, **params))
    compiled, reference = make_engine(fleet), make_engine(list(fleet), kernel=False)
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    for b in range(8):
        rows = np.concatenate([np.arange(n), rng.integers(0, n, 1500 if b % 2 else 0)]).astype(np.int32)
        rows = rows[rng.permutation(len(rows))]
        ts = T0 + b * 5_000 + rng.integers(0, 4_000, len(rows))
        vals = rng.random(len(rows)) * np.where(rows % 3 == 0, 1.2, 0.4) * SCALE[rows % N]
        if b == 5:  # a redelivery of the previous batch's newest readings
            rows, ts, vals = prev
        now = T0 + b * 5_000 + 4_500
        assert canon(compiled.evaluate(rows, ts, vals, now)) == canon(reference.evaluate(rows, ts, vals, now))
        prev = (rows, ts, vals)
    sa, sb = compiled.snapshot(), reference.snapshot()
    for k in sa:
        assert np.array_equal(sa[k], sb[k], equal_nan=sa[k].dtype.kind == "f"), k


def test_the_compiled_kernels_are_ready_before_the_first_batch() -> None:
    """Engine construction compiles every kernel signature the hot path uses, so no batch
    waits for numba (a new signature would compile on the spot, ~1 s)."""
    from alerts import _engine_kernels as rk

    kernels: list[Any] = [rk.classify, rk.quiet_update, rk.ladder_rule, rk.settle, rk.unique_rows, rk.row_order,
                          rk.in_order, rk.set_level, rk.compound, rk.vote, rk.sparks, rk.anomaly_rule]
    rng = np.random.default_rng(3)
    n = 5000
    e = make_engine([sensor(f"S{i}", KINDS[i % N], area=f"A{i // 40}", interval_s=5.0,
                            baseline=1000.0) for i in range(n)], anomaly=True)
    before = [list(k.signatures) for k in kernels]
    for b in range(6):
        rows = rng.permutation(n).astype(np.int32) if b % 2 else np.arange(n, dtype=np.int32)
        vals = rng.random(n) * 1.2 * SCALE[rows % N]
        e.evaluate(rows, np.full(n, T0 + b * 5000, np.int64), vals, T0 + b * 5000 + 100)
        e.evaluate(rows[:50], np.full(50, T0 + b * 5000 - 1000, np.int64), vals[:50], T0 + b * 5000 + 200)  # late
        e.evaluate(np.array([1, 1, 2], np.int32), np.array([1, 2, 3]) + T0 + b * 5000, np.ones(3), T0 + b * 5000)
        e.tick(T0 + b * 5000 + 3000)
    assert [list(k.signatures) for k in kernels] == before
