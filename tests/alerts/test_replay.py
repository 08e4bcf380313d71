"""alerts.replay: a recorded series through the service's engine, reading by reading."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.replay import build_registry, infer_interval_s, replay
from plantwatch.domain import Level
from plantwatch.registry import RegistryError

T0 = 1_795_459_488_000


def _series(values: list[float], step_ms: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    return T0 + np.arange(len(values), dtype=np.int64) * step_ms, np.asarray(values, dtype=np.float64)


def test_gas_crossings_hysteresis_and_clear_row_by_row() -> None:
    quiet = [2.0 + 0.1 * (i % 3) for i in range(30)]
    values = [*quiet, 28.0, 28.5, 55.0, 55.5, 56.0, 24.0, 23.5, 20.0, 2.0]
    ts, v = _series(values)
    res = replay(ts, v, "gas.combustible")
    lv = [Level(int(x)) for x in res.level]
    assert set(lv[:30]) == {Level.NONE}
    assert lv[30:32] == [Level.YELLOW, Level.YELLOW]  # >= 25 %LEL
    assert lv[32:35] == [Level.ORANGE] * 3  # >= 50 %LEL, for less than the 60 s that makes red
    assert lv[35:37] == [Level.YELLOW, Level.YELLOW]  # below 50 and 45 but above 22.5 (hysteresis)
    assert lv[37:] == [Level.NONE, Level.NONE]  # below 90 % of 25: cleared
    assert res.rule[30] in ("high", "rate")
    assert res.rule[33] == "high"
    assert ((res.score >= 0.0) & (res.score <= 1.0)).all()


def test_orange_held_for_a_minute_is_red() -> None:
    ts, v = _series([2.0, 2.1, *[55.0 + 0.1 * i for i in range(8)]])
    res = replay(ts, v, "gas.combustible")
    assert Level(int(res.level[2])) is Level.ORANGE
    assert Level(int(res.level[-1])) is Level.RED  # 70 s at >= 50 %LEL


def test_rules_override_thresholds_and_bad_rules_name_the_field() -> None:
    ts, v = _series([12.0 + 0.1 * (i % 2) for i in range(10)])  # steady: no rate of rise
    assert Level(int(replay(ts, v, "gas.combustible").level[-1])) is Level.NONE
    res = replay(ts, v, "gas.combustible", {"sensor": {"thresholds": {"yellow": 10.0, "orange": 20.0}}})
    assert Level(int(res.level[-1])) is Level.YELLOW
    with pytest.raises(RegistryError, match=r"thresholds\.purple"):
        replay(ts, v, "gas.combustible", {"sensor": {"thresholds": {"purple": 1.0}}})
    with pytest.raises(ValueError, match="unknown table"):
        replay(ts, v, "gas.combustible", {"alarm": {}})
    with pytest.raises(ValueError, match=r"unknown sensor kind 'gas\.nope'"):
        replay(ts, v, "gas.nope")


def test_interval_follows_a_coarse_recording_so_gaps_are_not_deadman() -> None:
    ts, v = _series([70.0 + 0.2 * (i % 5) for i in range(50)], step_ms=300_000)  # every 5 min
    assert infer_interval_s(ts, "dust.hopper_temperature") == 300.0
    res = replay(ts, v, "dust.hopper_temperature")
    assert "deadman" not in res.rule
    reg = build_registry("dust.hopper_temperature", {"sensor": {"interval_s": 5.0}}, 300.0)
    assert reg.sensors[0].interval_s == 5.0  # an explicit interval in the rules wins


def test_non_finite_values_change_nothing_and_input_is_not_mutated() -> None:
    ts, v = _series([2.0, 30.0, float("nan"), 31.0])
    before = v.copy()
    res = replay(ts, v, "gas.combustible")
    assert Level(int(res.level[2])) == Level(int(res.level[1]))
    np.testing.assert_array_equal(v, before)
