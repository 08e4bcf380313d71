"""Per-kind default rules and cross-sensor rules on crafted series (fake clock, epoch ms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alerts.compile import compile_config
from alerts.rules import KIND_RULES, RULE_NAMES
from plantwatch.domain import KINDS, Level
from tests.alerts.conftest import T0, enterprises, feed, make_engine, of_rule, sensor

S = 1000
MIN = 60 * S


def test_rule_names_are_stable() -> None:
    assert RULE_NAMES[:16] == (
        "high", "low", "rate", "flatline", "range", "deadman", "gateway_offline", "baseline",
        "compound", "area_vote", "suspension", "overload", "night", "critical_feeder", "anomaly", "interlock")


def test_every_catalogue_kind_has_default_rules_and_compiles() -> None:
    assert set(KIND_RULES) == set(KINDS)
    sensors = [sensor(f"S{i}", k) for i, k in enumerate(KINDS)]
    c = compile_config(sensors, enterprises())
    assert c.n == len(KINDS)
    assert (c.dm_blue_ms > 0).all()


def test_area_vote_two_detectors_at_stage2_is_one_red_on_the_area() -> None:
    e = make_engine([sensor(f"GT-{i}", "gas.combustible", area="tank-farm") for i in range(4)]
                    + [sensor("GT-x", "gas.combustible", area="other")])
    tr = feed(e, [2, 4], [T0, T0], [55.0, 55.0])
    assert of_rule(e, tr, "area_vote") == []
    tr = feed(e, 1, T0 + 5 * S, 52.0)
    # one alarm for the area, carried by a participating detector (the lowest row at stage 2)
    assert of_rule(e, tr, "area_vote") == [(1, "none", "red")]
    assert float(tr.value[list(tr.rule).index(RULE_NAMES.index("area_vote"))]) == 2.0
    assert of_rule(e, feed(e, 3, T0 + 6 * S, 60.0), "area_vote") == []  # a third: still the one alarm
    assert of_rule(e, feed(e, 1, T0 + 10 * S, 10.0), "area_vote") == []  # 2 left at stage 2
    tr = feed(e, 2, T0 + 11 * S, 10.0)
    assert of_rule(e, tr, "area_vote") == [(1, "red", "none")]  # cleared where it was raised


def test_area_vote_survives_restart() -> None:
    sensors = [sensor(f"GT-{i}", "gas.combustible") for i in range(3)]
    a = make_engine(sensors)
    feed(a, [1, 2], [T0, T0], [55.0, 55.0])
    b = make_engine(sensors)
    b.restore(a.snapshot())
    assert b.level(1, "area_vote") == Level.RED
    assert of_rule(b, feed(b, 2, T0 + 5 * S, 1.0), "area_vote") == [(1, "red", "none")]


def test_toxic_and_combustible_of_one_area_vote_together() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible"), sensor("H2S-1", "gas.toxic", oel_ppm=10.0)])
    tr = feed(e, [0, 1], [T0, T0], [55.0, 25.0])
    assert of_rule(e, tr, "area_vote") == [(0, "none", "red")]


def test_compound_dust_temperature_70_with_spark_is_red() -> None:
    e = make_engine([sensor("TT-1", "dust.hopper_temperature", area="DC1", interval_s=10.0),
                     sensor("SP-1", "dust.spark", area="DC1", interval_s=10.0),
                     sensor("TT-2", "dust.hopper_temperature", area="DC2", interval_s=10.0)])
    tr = feed(e, [0, 2], [T0, T0], [72.0, 75.0])
    assert sorted(of_rule(e, tr, "high")) == [(0, "none", "orange"), (2, "none", "orange")]
    assert of_rule(e, tr, "compound") == []
    tr = feed(e, 1, T0 + 10 * S, 2.0)
    assert of_rule(e, tr, "high") == [(1, "none", "yellow")]
    assert of_rule(e, tr, "compound") == [(0, "none", "red")]  # only the same area
    assert of_rule(e, e.tick(T0 + 69 * S), "compound") == []
    assert of_rule(e, e.tick(T0 + 71 * S), "compound") == [(0, "red", "none")]  # spark aged out


def test_compound_when_temperature_reaches_70_after_the_spark() -> None:
    e = make_engine([sensor("TT-1", "dust.inlet_temperature", area="DC1", interval_s=10.0),
                     sensor("SP-1", "dust.spark", area="DC1", interval_s=10.0)])
    feed(e, 1, T0, 1.0)
    tr = feed(e, 0, T0 + 20 * S, 71.0)
    assert of_rule(e, tr, "compound") == [(0, "none", "red")]


def test_compound_on_a_temperature_rise_below_70_with_a_spark() -> None:
    """"Temperature rise with sparks -> red": 60 °C (yellow) or 15 °C over the baseline is a rise."""
    e = make_engine([sensor("TT-1", "dust.hopper_temperature", area="DC1", interval_s=10.0),
                     sensor("TT-2", "dust.hopper_temperature", area="DC2", interval_s=10.0, baseline=25.0),
                     sensor("TT-3", "dust.hopper_temperature", area="DC3", interval_s=10.0),
                     sensor("SP-1", "dust.spark", area="DC1", interval_s=10.0),
                     sensor("SP-2", "dust.spark", area="DC2", interval_s=10.0),
                     sensor("SP-3", "dust.spark", area="DC3", interval_s=10.0)])
    feed(e, [0, 1, 2], [T0] * 3, [62.0, 45.0, 45.0])  # yellow; +20 °C over baseline; neither
    tr = feed(e, [3, 4, 5], [T0 + 10 * S] * 3, [1.0, 1.0, 1.0])
    assert sorted(of_rule(e, tr, "compound")) == [(0, "none", "red"), (1, "none", "red")]
    tr = feed(e, [0, 1], [T0 + 20 * S] * 2, [50.0, 30.0])  # cooled down: the condition ends
    assert sorted(of_rule(e, tr, "compound")) == [(0, "red", "none"), (1, "red", "none")]


def test_pressure_diff_baseline_bands() -> None:
    e = make_engine([sensor("DP-1", "dust.pressure_diff", baseline=1000.0, interval_s=10.0)])
    assert of_rule(e, feed(e, 0, T0, 1050.0), "baseline") == []
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 1150.0), "baseline") == [(0, "none", "blue")]
    # +25 %: yellow only after 5 min held
    assert of_rule(e, feed(e, 0, T0 + 20 * S, 1250.0), "baseline") == []
    assert of_rule(e, feed(e, 0, T0 + 310 * S, 1250.0), "baseline") == []
    assert of_rule(e, feed(e, 0, T0 + 320 * S, 1250.0), "baseline") == [(0, "blue", "yellow")]
    # bag rupture: ≈0 is -100 %: orange at once
    assert of_rule(e, feed(e, 0, T0 + 330 * S, 5.0), "baseline") == [(0, "yellow", "orange")]
    assert of_rule(e, feed(e, 0, T0 + 340 * S, 1000.0), "baseline") == [(0, "orange", "none")]


def test_pressure_diff_without_baseline_has_no_baseline_rule() -> None:
    e = make_engine([sensor("DP-1", "dust.pressure_diff")])
    assert of_rule(e, feed(e, 0, T0, 5000.0), "baseline") == []


def test_spark_counts_and_valve_fault_held() -> None:
    e = make_engine([sensor("SP-1", "dust.spark", interval_s=10.0),
                     sensor("RV-1", "dust.rotary_valve", interval_s=10.0)])
    tr = feed(e, [0, 1], [T0, T0], [3.0, 1.0])
    assert sorted(of_rule(e, tr, "high")) == [(0, "none", "orange"), (1, "none", "orange")]
    for i in range(1, 60):
        feed(e, 1, T0 + i * 10 * S, 1.0)
    assert of_rule(e, feed(e, 1, T0 + 600 * S, 1.0), "high") == [(1, "orange", "red")]


def test_residual_current_ladder() -> None:
    e = make_engine([sensor("RC-1", "power.residual_current", interval_s=60.0)])
    got = [of_rule(e, feed(e, 0, T0 + i * MIN, v), "high") for i, v in enumerate([100.0, 210.0, 320.0, 520.0])]
    assert got == [[], [(0, "none", "blue")], [(0, "blue", "yellow")], [(0, "yellow", "orange")]]


def test_fast_path_off_gives_the_same_transitions() -> None:
    kinds = ["gas.combustible", "gas.oxygen", "dust.pressure_diff", "dust.spark", "gas.toxic"]
    sensors = [sensor(f"S{i}", k, baseline=1000.0) if k == "dust.pressure_diff" else sensor(f"S{i}", k)
               for i, k in enumerate(kinds)]
    a = make_engine(sensors)
    b = make_engine(sensors, fast_path=False)
    rng = np.random.default_rng(7)
    centre = np.array([20.0, 20.0, 1000.0, 0.3, 8.0])
    for step in range(200):
        v = centre + rng.normal(0, 1, 5) * np.array([10.0, 1.0, 300.0, 1.0, 6.0])
        v = np.maximum(v, 0.0)
        t = [T0 + step * 5 * S] * 5
        ta, tb = feed(a, list(range(5)), t, list(v)), feed(b, list(range(5)), t, list(v))
        assert sorted(zip(ta.row, ta.rule, ta.level, strict=True)) == \
            sorted(zip(tb.row, tb.rule, tb.level, strict=True))
    assert np.array_equal(a.levels(), b.levels())
    assert a.level(0, "high") >= Level.NONE


def test_sparks_are_counted_per_minute() -> None:
    e = make_engine([sensor("SP-1", "dust.spark", interval_s=10.0)])
    got = []
    for i, n in enumerate([0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]):
        got += [(i, *x[1:]) for x in of_rule(e, feed(e, 0, T0 + i * 10 * S, float(n)), "high")]
    # 1 spark: yellow; the third within a minute: orange; two left in the minute: yellow;
    # none in the last minute: cleared
    assert got == [(1, "none", "yellow"), (5, "yellow", "orange"), (7, "orange", "yellow"), (11, "yellow", "none")]


def test_dust_temperature_15_above_its_baseline_is_blue() -> None:
    e = make_engine([sensor("TT-1", "dust.hopper_temperature", baseline=35.0, interval_s=10.0),
                     sensor("TT-2", "dust.hopper_temperature", interval_s=10.0)])
    assert of_rule(e, feed(e, [0, 1], [T0, T0], [49.0, 52.0]), "baseline") == []   # no baseline: no rule
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 50.0), "baseline") == [(0, "none", "blue")]
    assert of_rule(e, feed(e, 0, T0 + 20 * S, 47.5), "baseline") == []   # band 3 °C
    assert of_rule(e, feed(e, 0, T0 + 30 * S, 46.9), "baseline") == [(0, "blue", "none")]


def test_toxic_thresholds_fall_back_to_idlh_when_the_detector_range_is_too_small() -> None:
    """GB/T 50493-2019 5.5.2: range below 200 %OEL -> stage 1 at 5 %, stage 2 at 10 % IDLH."""
    sensors = [sensor("H2S-1", "gas.toxic", oel_ppm=7.0, idlh_ppm=100.0, range_ppm=10.0),   # 14 ppm out of range
               sensor("H2S-2", "gas.toxic", oel_ppm=7.0, idlh_ppm=100.0, range_ppm=50.0),   # OEL basis
               sensor("H2S-3", "gas.toxic", oel_ppm=7.0)]
    c = compile_config(sensors, enterprises())
    np.testing.assert_allclose(c.high.thr[0, :3], [2.5, 5.0, 10.0])
    np.testing.assert_allclose(c.high.thr[1, :3], [3.5, 7.0, 14.0])
    np.testing.assert_allclose(c.high.thr[2, :3], [3.5, 7.0, 14.0])
    e = make_engine(sensors)
    assert of_rule(e, feed(e, 0, T0, 6.0), "high") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 10.0), "high") == [(0, "yellow", "orange")]


def test_residual_current_flat_for_a_day_is_a_dead_sensor() -> None:
    e = make_engine([sensor("RC-1", "power.residual_current", interval_s=600.0)])
    for k in range(24 * 6):
        feed(e, 0, T0 + k * 600 * S, 42.0)
    assert e.level(0, "flatline") == Level.NONE
    assert of_rule(e, feed(e, 0, T0 + 24 * 3600 * S, 42.0), "flatline") == [(0, "none", "orange")]


def test_settings_keys_tell_apart_what_json_tells_apart() -> None:
    """Rows share a compiled row only when their settings are equal values of equal types
    (as their JSON would be); key order does not matter; a non-JSON value shares nothing."""
    from alerts.compile import _settings_key

    def key(**params: Any) -> object:
        return _settings_key(sensor("S", "power.feeder_current", **params), {})

    assert key(a=1.0, b={"x": [1, 2]}) == key(b={"x": [1, 2]}, a=1.0)
    assert len({key(critical=True), key(critical=1), key(critical=1.0), key(critical="1"), key()}) == 5
    assert key(a=[1, 2]) != key(a={"1": 2})
    assert key(a={1, 2}) is None


def test_compiling_with_reused_rows_equals_compiling_every_row() -> None:
    """Sensors with equal settings copy one compiled row; every field must come out as if
    each row had been compiled on its own, across kinds, overrides, params, capacities and
    identities (devices, areas, holds)."""
    import random
    from dataclasses import fields

    from alerts.compile import LadderArrays
    from plantwatch.registry import Enterprise, OutOfService

    rnd = random.Random(3)
    kinds = ["gas.combustible", "gas.toxic", "gas.oxygen", "dust.hopper_temperature", "dust.pressure_diff",
             "dust.spark", "dust.water_level", "power.active_power", "power.feeder_current",
             "power.residual_current", "dust.air_velocity", "dust.isolation_valve"]
    ents = {"E1": Enterprise(id="E1", capacity_kw=800.0), "E2": Enterprise(id="E2"),
            "E3": Enterprise(id="E3", capacity_kw=1200.0)}
    sensors = []
    for i in range(600):
        k = rnd.choice(kinds)
        params: dict[str, object] = {}
        if k == "dust.pressure_diff":
            params["baseline"] = rnd.choice([800.0, 1000.0])
        if k == "dust.water_level":
            params["low_limit"] = 1.0
        if k == "gas.toxic":
            params["oel_ppm"] = rnd.choice([7.0, 17.0])
        if k == "power.feeder_current":
            params["critical"] = rnd.random() < 0.5
        if rnd.random() < 0.2:
            params["delay_on_s"] = {"yellow": rnd.choice([5.0, 10.0])}
        thresholds = {"yellow": 20.0} if k == "gas.combustible" and rnd.random() < 0.3 else {}
        s = sensor(f"S{i}", k, ent=rnd.choice(list(ents)), device=f"GW{i % 7}", area=rnd.choice(["A", "B", ""]),
                   interval_s=rnd.choice([5.0, 10.0]), thresholds=thresholds, **params)
        if rnd.random() < 0.05:
            s.out_of_service = OutOfService(0, None, "t", "removed")
        s.row = i
        sensors.append(s)
    a = compile_config(sensors, ents)
    b = compile_config(sensors, ents, reuse=False)
    for f in fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, LadderArrays):
            for part in ("thr", "clr", "don_ms", "doff_ms"):
                np.testing.assert_array_equal(getattr(va, part), getattr(vb, part), err_msg=f"{f.name}.{part}")
        elif isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
        else:
            assert va == vb, f.name
