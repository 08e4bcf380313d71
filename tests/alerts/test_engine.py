"""AlarmEngine on crafted series with a fake clock (epoch ms): one behaviour per test."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.compile import ConfigError
from alerts.engine import AlarmEngine
from plantwatch.domain import Level
from tests.alerts.conftest import T0, enterprises, events, feed, make_engine, of_rule, sensor

S = 1000  # ms per second
MIN = 60 * S


def combustible(**kw: object) -> AlarmEngine:
    return make_engine([sensor("GT-101", "gas.combustible", **kw)])  # type: ignore[arg-type]


# -- thresholds, hysteresis, escalation ------------------------------------------------------


def test_combustible_25_then_50_is_yellow_then_orange_on_one_rule_and_clears_below_hysteresis() -> None:
    e = combustible()
    series = [5.0, 26.0, 30.0, 51.0, 46.0, 44.0, 23.0, 22.4, 10.0]
    got = [of_rule(e, feed(e, 0, T0 + i * 5 * S, v), "high") for i, v in enumerate(series)]
    assert got == [
        [], [(0, "none", "yellow")], [], [(0, "yellow", "orange")],
        [],                          # 46 >= 45 = 90 % of 50: still orange
        [(0, "orange", "yellow")],   # 44 < 45: back to yellow
        [],                          # 23 >= 22.5 = 90 % of 25: still yellow
        [(0, "yellow", "none")],     # 22.4 < 22.5: cleared
        [],
    ]


def test_hysteresis_prevents_chattering_around_the_threshold() -> None:
    e = combustible()
    noisy = [24.0, 25.5, 24.5, 25.2, 23.0, 25.9, 24.1, 22.6]
    tr = [of_rule(e, feed(e, 0, T0 + i * 5 * S, v), "high") for i, v in enumerate(noisy)]
    flat = [x for t in tr for x in t]
    assert flat == [(0, "none", "yellow")]


def test_stage2_held_60s_is_red_and_not_before() -> None:
    e = combustible()
    assert of_rule(e, feed(e, 0, T0, 55.0), "high") == [(0, "none", "orange")]
    assert of_rule(e, feed(e, 0, T0 + 30 * S, 56.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 59 * S, 57.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 60 * S, 57.0), "high") == [(0, "orange", "red")]


def test_delay_on_timer_resets_when_condition_breaks() -> None:
    e = combustible()
    feed(e, 0, T0, 55.0)
    feed(e, 0, T0 + 40 * S, 48.0)   # below 50: stage-2 timer reset (level held by hysteresis)
    feed(e, 0, T0 + 45 * S, 55.0)   # timer restarts here
    assert of_rule(e, feed(e, 0, T0 + 70 * S, 55.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 105 * S, 55.0), "high") == [(0, "orange", "red")]


def test_delay_on_expires_in_tick_without_a_new_reading() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=30.0)])
    feed(e, 0, T0, 60.0)
    assert of_rule(e, e.tick(T0 + 59 * S), "high") == []
    assert of_rule(e, e.tick(T0 + 61 * S), "high") == [(0, "orange", "red")]


def test_delay_off_keeps_the_level_until_clear_condition_held() -> None:
    e = combustible(delay_off_s=20.0)
    feed(e, 0, T0, 30.0)
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 5.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 26.0), "high") == []   # back up: off-timer reset
    assert of_rule(e, feed(e, 0, T0 + 15 * S, 5.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 30 * S, 5.0), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 35 * S, 5.0), "high") == [(0, "yellow", "none")]


def test_delay_off_expires_in_tick() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=30.0, delay_off_s=20.0)])
    feed(e, 0, T0, 30.0)
    feed(e, 0, T0 + 5 * S, 5.0)
    assert of_rule(e, e.tick(T0 + 24 * S), "high") == []
    assert of_rule(e, e.tick(T0 + 25 * S), "high") == [(0, "yellow", "none")]


def test_timers_do_not_run_on_a_stale_value() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=5.0)])
    feed(e, 0, T0, 60.0)
    # the value is only trusted for 3 intervals (15 s); then the deadman takes over
    assert of_rule(e, e.tick(T0 + 120 * S), "high") == []


def test_configured_thresholds_and_deadband_override_defaults() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", thresholds={"yellow": 20.0}, deadband=1.0)])
    assert of_rule(e, feed(e, 0, T0, 20.0), "high") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 19.1), "high") == []
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 18.9), "high") == [(0, "yellow", "none")]


def test_toxic_thresholds_scale_with_oel() -> None:
    e = make_engine([sensor("H2S-1", "gas.toxic", oel_ppm=10.0)])
    assert of_rule(e, feed(e, 0, T0, 5.0), "high") == [(0, "none", "blue")]      # 50 %OEL
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 10.0), "high") == [(0, "blue", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 20.0), "high") == [(0, "yellow", "orange")]


def test_oxygen_low_ladder() -> None:
    e = make_engine([sensor("O2-1", "gas.oxygen")])
    assert of_rule(e, feed(e, 0, T0, 20.9), "low") == []
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 19.4), "low") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 17.0), "low") == [(0, "yellow", "orange")]
    assert of_rule(e, feed(e, 0, T0 + 15 * S, 15.0), "low") == [(0, "orange", "red")]
    assert of_rule(e, feed(e, 0, T0 + 20 * S, 20.9), "low") == [(0, "red", "none")]


def test_water_level_below_low_limit_yellow_then_orange_after_2_min() -> None:
    e = make_engine([sensor("WL-1", "dust.water_level", low_limit=1.0, interval_s=10.0)])
    assert of_rule(e, feed(e, 0, T0, 0.8), "low") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 110 * S, 0.8), "low") == []
    assert of_rule(e, feed(e, 0, T0 + 120 * S, 0.8), "low") == [(0, "yellow", "orange")]


def test_invalid_config_names_sensor_and_key() -> None:
    with pytest.raises(ConfigError, match=r"sensor E1/GT-1 thresholds: thresholds must rise"):
        make_engine([sensor("GT-1", "gas.combustible", thresholds={"yellow": 60.0})])
    with pytest.raises(ConfigError, match=r"sensor E1/H2S params.oel_ppm"):
        make_engine([sensor("H2S", "gas.toxic", oel_ppm="ten")])
    with pytest.raises(ConfigError, match=r"sensor E1/DP params.baseline"):
        make_engine([sensor("DP", "dust.pressure_diff", baseline=-5)])


# -- rate of rise ------------------------------------------------------------------------------


def test_rate_of_rise_blue_above_10_lel_and_rising() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", rate_eta_s=0)])
    assert of_rule(e, feed(e, 0, T0, 8.0), "rate") == []
    assert of_rule(e, feed(e, 0, T0 + 30 * S, 9.0), "rate") == []          # rising but below 10
    assert of_rule(e, feed(e, 0, T0 + 60 * S, 11.0), "rate") == [(0, "none", "blue")]
    assert of_rule(e, feed(e, 0, T0 + 600 * S, 11.0), "rate") == [(0, "blue", "none")]  # flat again


def test_rate_predicts_time_to_next_threshold() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible")])
    feed(e, 0, T0, 10.0)
    tr = feed(e, 0, T0 + 60 * S, 20.0)  # 10 %LEL/min, 5 %LEL below 25: 30 s to yellow
    assert of_rule(e, tr, "rate") == [(0, "none", "yellow")]
    rate, eta = e.rate_eta(np.array([0], np.int32))
    assert rate[0] == pytest.approx(10.0)
    assert eta[0] == pytest.approx(30.0)


def test_falling_after_a_peak_is_not_rising() -> None:
    """The whole-window rate stays positive after a peak; the newest quarter decides (replay found it)."""
    e = make_engine([sensor("GT-1", "gas.combustible")])
    values = [2.0] * 10 + [15.0, 22.0, 24.0, 24.5, 20.0, 17.0, 15.0]
    levels = []
    for i, v in enumerate(values):
        feed(e, 0, T0 + i * 10 * S, v)
        levels.append(e.level(0, "rate").label)
    assert levels[10:14] == ["yellow"] * 4  # >= 10 %LEL and rising fast towards 25
    # falling from 24.5: cleared within a quarter window (4 readings back still include the rise once)
    assert levels[14:] == ["yellow", "none", "none"]
    rate, _ = e.rate_eta(np.array([0], np.int32))
    assert rate[0] > 1.0  # the whole-window rate alone (>= 1 %LEL/min) would still call it rising


# -- flatline and range -------------------------------------------------------------------------


def test_flatline_exactly_flat_for_the_period_is_orange_and_clears_on_change() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", flatline_s=3600.0, interval_s=60.0)])
    out = []
    for i in range(62):
        out += of_rule(e, feed(e, 0, T0 + i * MIN, 0.0), "flatline")
    assert out == [(0, "none", "orange")]
    assert of_rule(e, feed(e, 0, T0 + 62 * MIN, 0.1), "flatline") == [(0, "orange", "none")]


def test_noisy_signal_is_not_flat() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", flatline_s=600.0, interval_s=60.0)])
    vals = np.random.default_rng(1).normal(2.0, 0.05, 30)
    tr = feed(e, [0] * 30, [T0 + i * MIN for i in range(30)], list(vals))
    assert of_rule(e, tr, "flatline") == []


def test_out_of_physical_range() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible"), sensor("TT-1", "dust.hopper_temperature")])
    tr = feed(e, [0, 1], [T0, T0], [120.0, -60.0])
    assert sorted(of_rule(e, tr, "range")) == [(0, "none", "red"), (1, "none", "yellow")]
    tr = feed(e, [0, 1], [T0 + 5 * S, T0 + 5 * S], [3.0, 20.0])
    assert sorted(of_rule(e, tr, "range")) == [(0, "red", "none"), (1, "yellow", "none")]


# -- deadman and gateway -----------------------------------------------------------------------


def test_deadman_fires_with_no_messages_at_all() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=5.0)])
    assert len(e.tick(T0)) == 0
    assert of_rule(e, e.tick(T0 + 15 * S), "deadman") == []
    assert of_rule(e, e.tick(T0 + 16 * S), "deadman") == [(0, "none", "blue")]
    assert of_rule(e, e.tick(T0 + 31 * MIN), "deadman") == [(0, "blue", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 31 * MIN, 1.0), "deadman") == [(0, "yellow", "none")]


def test_deadman_counts_from_the_last_arrival() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=5.0)])
    e.tick(T0)
    feed(e, 0, T0 + 10 * S, 1.0)
    assert of_rule(e, e.tick(T0 + 25 * S), "deadman") == []
    assert of_rule(e, e.tick(T0 + 26 * S), "deadman") == [(0, "none", "blue")]


def test_gateway_offline_is_one_root_alarm_and_suppresses_deadman() -> None:
    sensors = [sensor(f"GT-{i}", "gas.combustible", device="GW1") for i in range(3)]
    sensors.append(sensor("TT-9", "dust.hopper_temperature", device="GW2"))
    e = make_engine(sensors)
    e.tick(T0)
    tr = e.gateway_status("E1", "GW1", False, T0 + 1 * S)
    assert events(e, tr) == [(0, "gateway_offline", "none", "blue")]
    tr = e.tick(T0 + 60 * S)
    assert of_rule(e, tr, "deadman") == [(3, "none", "blue")]  # only the other gateway's sensor
    assert of_rule(e, e.tick(T0 + 32 * MIN), "gateway_offline") == [(0, "blue", "yellow")]
    tr = e.gateway_status("E1", "GW1", True, T0 + 40 * MIN)
    assert of_rule(e, tr, "gateway_offline") == [(0, "yellow", "none")]
    assert of_rule(e, e.tick(T0 + 40 * MIN + 10 * S), "deadman") == []  # grace from online
    tr = e.tick(T0 + 40 * MIN + 16 * S)
    assert sorted(of_rule(e, tr, "deadman")) == [(0, "none", "blue"), (1, "none", "blue"), (2, "none", "blue")]


def test_gateway_offline_clears_existing_deadman_alarms_of_its_sensors() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible")])
    e.tick(T0)
    e.tick(T0 + 20 * S)
    assert e.level(0, "deadman") == Level.BLUE
    tr = e.gateway_status("E1", "GW1", False, T0 + 21 * S)
    assert sorted(events(e, tr)) == [(0, "deadman", "blue", "none"), (0, "gateway_offline", "none", "blue")]


def test_our_own_ingest_outage_raises_and_clears_no_deadman() -> None:
    """The centre loses its broker: every sensor falls silent at once, and that is one outage
    of ours, not an alarm per sensor. None is raised or cleared during it; afterwards a
    sensor's silence counts from the reconnection, except one already alarmed before the
    outage, whose silence was real and goes on (and escalates) until it reports."""
    e = make_engine([sensor("GT-1", "gas.combustible", interval_s=5.0), sensor("GT-2", "gas.combustible",
                                                                          interval_s=5.0)])
    e.tick(T0)
    feed(e, 1, T0 + 10 * S, 1.0)
    assert of_rule(e, e.tick(T0 + 20 * S), "deadman") == [(0, "none", "blue")]  # GT-1 silent before
    e.ingest_status(False, T0 + 21 * S)
    for t in (T0 + 30 * S, T0 + 10 * MIN, T0 + 40 * MIN):  # GT-2's 3 intervals pass, and 30 min
        assert of_rule(e, e.tick(t), "deadman") == []
    assert e.level(0, "deadman") is Level.BLUE  # stands: no yellow from our outage either
    back = T0 + 41 * MIN
    e.ingest_status(True, back)
    # GT-1 was dead before: its own silence goes on (41 min: yellow); GT-2's counts from the return
    assert of_rule(e, e.tick(back + 15 * S), "deadman") == [(0, "blue", "yellow")]
    tr = e.tick(back + 16 * S)
    assert of_rule(e, tr, "deadman") == [(1, "none", "blue")]
    e.ingest_status(True, back + 17 * S)  # an "online" while online moves nothing
    assert of_rule(e, e.tick(back + 18 * S), "deadman") == []
    assert of_rule(e, feed(e, 0, back + 19 * S, 1.0), "deadman") == [(0, "yellow", "none")]  # it reports


def test_a_restart_during_our_outage_charges_it_to_no_sensor() -> None:
    """Restarted to fix the broker connection: the snapshot's clock is current, the sensors'
    last readings are from before the outage. The service starts as down until its first
    connection, so the outage is not charged to them."""
    sensors = [sensor("GT-1", "gas.combustible", interval_s=5.0)]
    e = make_engine(sensors)
    e.tick(T0)
    feed(e, 0, T0 + 1 * S, 1.0)
    e.ingest_status(False, T0 + 2 * S)
    for t in (T0 + 10 * MIN, T0 + 39 * MIN):
        e.tick(t)
    again = make_engine(sensors)
    again.restore(e.snapshot())
    again.ingest_status(False, T0 + 40 * MIN)  # Service.start()
    again.ingest_status(True, T0 + 41 * MIN)  # its first connection
    assert of_rule(again, again.tick(T0 + 41 * MIN + 15 * S), "deadman") == []
    assert of_rule(again, again.tick(T0 + 41 * MIN + 16 * S), "deadman") == [(0, "none", "blue")]


def test_unknown_gateway_status_is_ignored() -> None:
    e = combustible()
    assert len(e.gateway_status("E1", "nope", False, T0)) == 0


# -- batches, duplicates, out-of-order -----------------------------------------------------------


def test_batch_with_several_readings_per_sensor_equals_one_by_one() -> None:
    sensors = [sensor(f"GT-{i}", "gas.combustible") for i in range(3)]
    a, b = make_engine(sensors), make_engine(sensors)
    rows = [0, 1, 0, 2, 0, 1, 0]
    ts = [T0, T0, T0 + 5 * S, T0, T0 + 70 * S, T0 + 5 * S, T0 + 10 * S]
    vals = [30.0, 5.0, 55.0, 60.0, 56.0, 27.0, 52.0]
    batch = events(a, feed(a, rows, ts, vals, now=T0 + 70 * S))
    one = []
    for i in np.lexsort((ts, rows)):
        one += events(b, feed(b, rows[i], ts[i], vals[i], now=T0 + 70 * S))
    assert sorted(batch) == sorted(one)
    assert np.array_equal(a.levels(), b.levels())


def test_two_messages_milliseconds_apart_raise_one_transition() -> None:
    e = combustible()
    tr = feed(e, [0, 0], [T0, T0 + 3], [30.0, 30.1])
    assert of_rule(e, tr, "high") == [(0, "none", "yellow")]


def test_a_redelivered_newest_reading_changes_nothing() -> None:
    # the broker redelivers a message whose readings were evaluated but not yet acked
    e = make_engine([sensor("SP-1", "dust.spark", interval_s=10.0)])
    assert of_rule(e, feed(e, 0, T0, 2.0), "high") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0, 2.0), "high") == []        # counted once: 2 sparks, not 4
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 0.0), "high") == []  # 2 sparks in the last minute
    assert e.level(0, "high") == Level.YELLOW
    # a different value in the same millisecond is a new reading, not a repeat
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 3.0), "high") == [(0, "yellow", "orange")]


def test_out_of_order_reading_does_not_move_timers_or_lower_the_level() -> None:
    e = combustible()
    feed(e, 0, T0 + 100 * S, 55.0)                    # stage 2 starts at +100 s
    tr = feed(e, 0, T0 + 10 * S, 55.0)                # late: would be an earlier start
    assert of_rule(e, tr, "high") == []
    assert of_rule(e, feed(e, 0, T0 + 150 * S, 55.0), "high") == []      # 50 s held only
    assert of_rule(e, feed(e, 0, T0 + 20 * S, 3.0), "high") == []        # late low: no clear
    assert of_rule(e, feed(e, 0, T0 + 160 * S, 55.0), "high") == [(0, "orange", "red")]


def test_late_reading_above_threshold_still_raises_with_its_own_timestamp() -> None:
    e = combustible()
    feed(e, 0, T0 + 100 * S, 5.0)
    tr = feed(e, 0, T0 + 50 * S, 30.0)
    assert of_rule(e, tr, "high") == [(0, "none", "yellow")]
    assert int(tr.ts_ms[0]) == T0 + 50 * S


def test_unregistered_rows_are_ignored() -> None:
    e = combustible()
    tr = feed(e, [-1, 0, 7], [T0, T0, T0], [90.0, 30.0, 90.0])
    assert events(e, tr) == [(0, "high", "none", "yellow")]


# -- registry growth, restart -------------------------------------------------------------------


def test_sync_grows_and_keeps_state() -> None:
    sensors = [sensor("GT-1", "gas.combustible")]
    e = make_engine(sensors)
    feed(e, 0, T0, 30.0)
    more = sensors + [sensor(f"GT-{i}", "gas.combustible") for i in range(2, 41)]
    for i, s in enumerate(more):
        s.row = i
    e.sync(more, enterprises())
    assert e.level(0, "high") == Level.YELLOW
    assert of_rule(e, feed(e, 39, T0, 30.0), "high") == [(39, "none", "yellow")]
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 22.0), "high") == [(0, "yellow", "none")]


def test_sync_recompiles_thresholds() -> None:
    sensors = [sensor("GT-1", "gas.combustible")]
    e = make_engine(sensors)
    feed(e, 0, T0, 21.0)
    sensors[0].thresholds = {"yellow": 20.0}
    e.sync(sensors, enterprises())
    assert of_rule(e, feed(e, 0, T0 + 5 * S, 21.0), "high") == [(0, "none", "yellow")]


def test_restart_mid_timer_equals_never_stopping() -> None:
    sensors = [sensor("GT-1", "gas.combustible", delay_off_s=30.0), sensor("GT-2", "gas.combustible")]
    a = make_engine(sensors)
    feed(a, [0, 1], [T0, T0], [55.0, 30.0])
    feed(a, [0, 1], [T0 + 30 * S, T0 + 30 * S], [55.0, 5.0])   # red timer half-way; row 1 delay-off
    b = make_engine(sensors)
    b.restore(a.snapshot())
    for eng in (a, b):
        eng.tick(T0 + 30 * S)
    for t, vals in ((T0 + 45 * S, [56.0, 5.0]), (T0 + 61 * S, [56.0, 5.0])):
        ta, tb = feed(a, [0, 1], [t, t], vals), feed(b, [0, 1], [t, t], vals)
        assert events(a, ta) == events(b, tb)
    assert a.level(0, "high") == b.level(0, "high") == Level.RED
    assert events(a, a.tick(T0 + 20 * MIN)) == events(b, b.tick(T0 + 20 * MIN))


def test_restart_does_not_charge_downtime_to_sensors() -> None:
    e = combustible()
    e.tick(T0)
    feed(e, 0, T0 + 1 * S, 1.0)
    snap = e.snapshot()
    b = combustible()
    b.restore(snap)
    # the service was down for 10 minutes; data resumes within one interval of restart
    assert of_rule(b, b.tick(T0 + 10 * MIN), "deadman") == []
    assert of_rule(b, b.tick(T0 + 10 * MIN + 16 * S), "deadman") == [(0, "none", "blue")]


def test_snapshot_rejects_foreign_rule_names() -> None:
    e = combustible()
    snap = e.snapshot()
    snap["rule_names"] = np.array(["other"])
    with pytest.raises(ValueError, match="rule names"):
        combustible().restore(snap)


# -- anomaly (alerts.anomaly wired as rule "anomaly") -----------------------------------------


def test_anomaly_spike_below_every_threshold_is_a_held_blue_early_warning() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible")], anomaly=True)
    rng = np.random.default_rng(3)
    got = []
    for i in range(500):
        v = 6.0 if i == 300 else 2.0 + rng.normal(0.0, 0.05)  # 6 %LEL: far below every threshold
        got += [(i, *x) for x in of_rule(e, feed(e, 0, T0 + i * 5 * S, v), "anomaly")]
    # nothing during warm-up or on noise; the spike raises blue, held 10 min (120 samples)
    assert got == [(300, 0, "none", "blue"), (420, 0, "blue", "none")]
    assert [u for _, u, _, _ in events(e, feed(e, 0, T0 + 500 * 5 * S, 2.0))] == []


def test_anomaly_state_is_in_the_snapshot() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible")], anomaly=True)
    for i in range(50):
        feed(e, 0, T0 + i * 5 * S, 2.0 + 0.01 * (i % 3))
    snap = e.snapshot()
    assert any(k.startswith("anomaly.") for k in snap)
    b = make_engine([sensor("GT-1", "gas.combustible")], anomaly=True)
    b.restore(snap)
    ta = feed(e, 0, T0 + 60 * 5 * S, 9.0)
    tb = feed(b, 0, T0 + 60 * 5 * S, 9.0)
    assert events(e, ta) == events(b, tb)
    assert np.array_equal(ta.value, tb.value)


def test_snapshot_of_a_smaller_registry_restores_into_a_grown_one() -> None:
    small = [sensor("GT-1", "gas.combustible")]
    a = make_engine(small, anomaly=True)
    feed(a, 0, T0, 30.0)
    grown = [sensor("GT-1", "gas.combustible")] + [sensor(f"GT-{i}", "gas.combustible") for i in range(2, 60)]
    b = make_engine(grown, anomaly=True)
    b.restore(a.snapshot())
    assert b.level(0, "high") == Level.YELLOW
    tr = feed(b, [0, 58], [T0 + 5 * S, T0 + 5 * S], [5.0, 30.0])
    assert sorted(of_rule(b, tr, "high")) == [(0, "yellow", "none"), (58, "none", "yellow")]


def test_snapshot_with_more_rows_than_the_registry_is_refused() -> None:
    big = make_engine([sensor(f"GT-{i}", "gas.combustible") for i in range(5)])
    with pytest.raises(ValueError, match="rows"):
        combustible().restore(big.snapshot())


def test_threshold_of_names_the_threshold_behind_a_level() -> None:
    e = make_engine([sensor("GT-1", "gas.combustible"), sensor("O2", "gas.oxygen"),
                     sensor("DP", "dust.pressure_diff", baseline=800.0)])
    high, low, base = (e.rule_names.index(n) for n in ("high", "low", "baseline"))
    assert e.threshold_of(0, high, Level.YELLOW) == ("≥", 25.0)
    assert e.threshold_of(0, high, Level.RED) == ("≥", 50.0)
    assert e.threshold_of(0, high, Level.BLUE) is None
    assert e.threshold_of(1, low, Level.ORANGE) == ("≤", 18.0)
    assert e.threshold_of(2, base, Level.YELLOW) == ("deviates ≥ 20 % from", 800.0)
    assert e.threshold_of(0, e.rule_names.index("deadman"), Level.BLUE) is None
    assert e.threshold_of(9, high, Level.YELLOW) is None


def test_columns_of_unequal_length_are_refused() -> None:
    e = combustible()
    with pytest.raises(ValueError, match="equal length"):
        e.evaluate(np.array([0, 0], np.int32), np.array([T0], np.int64), np.array([1.0, 2.0]), T0)


def test_empty_batch_and_empty_registry() -> None:
    assert len(combustible().evaluate(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), T0)) == 0
    e = make_engine([])
    assert len(feed(e, 0, T0, 99.0)) == 0
    assert len(e.tick(T0)) == 0


def test_threshold_of_temperature_baseline() -> None:
    e = make_engine([sensor("TT-1", "dust.hopper_temperature", baseline=35.0)])
    assert e.threshold_of(0, e.rule_names.index("baseline"), Level.BLUE) == ("≥", 50.0)


def test_gateway_offline_before_its_sensors_are_registered_raises_on_the_next_tick() -> None:
    sensors = [sensor("GT-1", "gas.combustible", device="GW1")]
    e = make_engine(sensors)
    assert len(e.gateway_status("E1", "GW2", False, T0)) == 0
    more = [*sensors, sensor("GT-2", "gas.combustible", device="GW2")]
    for i, s in enumerate(more):
        s.row = i
    e.sync(more, enterprises())
    assert of_rule(e, e.tick(T0 + S), "gateway_offline") == [(1, "none", "blue")]
