"""Interlock reds: an alarm plus an equipment state of its area (DOMAIN.md red column, [P]).

Fake clock; the rule runs in ``tick`` on the equipment state of the sensor's area.
"""

from __future__ import annotations

import numpy as np

from alerts.engine import AlarmEngine
from alerts.rules import RULE_NAMES
from plantwatch.domain import Level
from tests.alerts.conftest import T0, feed, make_engine, of_rule, sensor

S = 1000


def lock(e: AlarmEngine, now: int) -> list[tuple[int, str, str]]:
    return of_rule(e, e.tick(now), "interlock")


def test_water_below_low_limit_while_the_fan_runs_is_red() -> None:
    e = make_engine([sensor("WL-1", "dust.water_level", area="WC1", interval_s=10.0, low_limit=0.5),
                     sensor("AV-1", "dust.air_velocity", area="WC1", interval_s=10.0, low_limit=12.0),
                     sensor("WL-2", "dust.water_level", area="WC2", interval_s=10.0, low_limit=0.5)])
    feed(e, [0, 1, 2], [T0] * 3, [0.9, 0.0, 0.9])      # fan stopped, water fine
    assert lock(e, T0 + 1 * S) == []
    assert of_rule(e, feed(e, 0, T0 + 10 * S, 0.3), "low") == [(0, "none", "yellow")]
    assert lock(e, T0 + 11 * S) == []                    # water low but the fan does not run
    feed(e, 1, T0 + 20 * S, 15.0)                        # fan starts
    assert lock(e, T0 + 21 * S) == [(0, "none", "red")]
    feed(e, 2, T0 + 22 * S, 0.2)                         # other area: no fan there
    assert lock(e, T0 + 23 * S) == []
    feed(e, 1, T0 + 30 * S, 0.2)                         # fan stops
    assert lock(e, T0 + 31 * S) == [(0, "red", "none")]


def test_stale_fan_reading_does_not_count_as_running() -> None:
    e = make_engine([sensor("WL-1", "dust.water_level", area="WC1", interval_s=10.0, low_limit=0.5),
                     sensor("AV-1", "dust.air_velocity", area="WC1", interval_s=10.0)])
    feed(e, [0, 1], [T0, T0], [0.3, 15.0])
    assert lock(e, T0 + 1 * S) == [(0, "none", "red")]
    feed(e, 0, T0 + 25 * S, 0.3)
    # the fan's newest reading is older than 3 x its interval: unknown, not running
    assert lock(e, T0 + 31 * S) == [(0, "red", "none")]


def test_running_min_is_configurable_per_sensor() -> None:
    e = make_engine([sensor("WL-1", "dust.water_level", area="WC1", interval_s=10.0, low_limit=0.5),
                     sensor("AV-1", "dust.air_velocity", area="WC1", interval_s=10.0, running_min=5.0)])
    feed(e, [0, 1], [T0, T0], [0.3, 4.0])
    assert lock(e, T0 + 1 * S) == []
    feed(e, 1, T0 + 2 * S, 5.0)
    assert lock(e, T0 + 3 * S) == [(0, "none", "red")]


def test_hydrogen_with_ventilation_feeder_off_is_red() -> None:
    e = make_engine([sensor("H2-1", "gas.hydrogen", area="WC1"),
                     sensor("FD-VENT", "power.feeder_current", area="WC1", critical=True),
                     sensor("FD-X", "power.feeder_current", area="WC1")])   # not critical
    feed(e, [0, 1, 2], [T0] * 3, [30.0, 40.0, 0.0])
    assert e.level(0, "high") == Level.YELLOW
    assert lock(e, T0 + 1 * S) == []                      # ventilation runs
    feed(e, 1, T0 + 2 * S, 0.0)
    assert lock(e, T0 + 3 * S) == [(0, "none", "red")]
    feed(e, 0, T0 + 4 * S, 5.0)                           # hydrogen back to normal
    assert lock(e, T0 + 5 * S) == [(0, "red", "none")]


def test_residual_current_500_with_temperature_alarm_is_red() -> None:
    e = make_engine([sensor("RC-1", "power.residual_current", area="DC1"),
                     sensor("TT-1", "dust.hopper_temperature", area="DC1", interval_s=10.0)])
    feed(e, [0, 1], [T0, T0], [550.0, 40.0])
    assert e.level(0, "high") == Level.ORANGE
    assert lock(e, T0 + 1 * S) == []
    feed(e, 1, T0 + 2 * S, 62.0)                          # temperature alarm (yellow)
    assert lock(e, T0 + 3 * S) == [(0, "none", "red")]
    feed(e, 0, T0 + 4 * S, 350.0)                         # residual current back to yellow
    assert lock(e, T0 + 5 * S) == [(0, "red", "none")]


def test_temperature_70_with_fan_running_and_isolation_valve_fault_is_red() -> None:
    e = make_engine([sensor("TT-1", "dust.inlet_temperature", area="DC1", interval_s=10.0),
                     sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0),
                     sensor("IV-1", "dust.isolation_valve", area="DC1", interval_s=10.0)])
    feed(e, [0, 1, 2], [T0] * 3, [72.0, 15.0, 0.0])
    assert lock(e, T0 + 1 * S) == []                      # valve healthy
    feed(e, 2, T0 + 2 * S, 1.0)
    assert lock(e, T0 + 3 * S) == [(0, "none", "red")]
    feed(e, 0, T0 + 4 * S, 65.0)                          # below orange's hysteresis bound
    assert lock(e, T0 + 5 * S) == [(0, "red", "none")]


def test_pressure_diff_near_zero_with_fan_and_temperature_rise_is_red() -> None:
    e = make_engine([sensor("DP-1", "dust.pressure_diff", area="DC1", interval_s=10.0, baseline=1000.0),
                     sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0),
                     sensor("TT-1", "dust.hopper_temperature", area="DC1", interval_s=10.0, baseline=30.0)])
    feed(e, [0, 1, 2], [T0] * 3, [20.0, 15.0, 35.0])
    assert e.level(0, "baseline") == Level.ORANGE        # ≈0: bag rupture
    assert lock(e, T0 + 1 * S) == []                      # no temperature rise yet
    feed(e, 2, T0 + 2 * S, 50.0)                          # +20 °C over its baseline: blue
    assert lock(e, T0 + 3 * S) == [(0, "none", "red")]
    feed(e, 0, T0 + 4 * S, 500.0)                         # -50 %: orange, but not ≈0
    assert lock(e, T0 + 5 * S) == [(0, "red", "none")]


def test_interlock_survives_restart_and_old_snapshots_restore() -> None:
    sensors = [sensor("WL-1", "dust.water_level", area="WC1", interval_s=10.0, low_limit=0.5),
               sensor("AV-1", "dust.air_velocity", area="WC1", interval_s=10.0)]
    a = make_engine(sensors)
    feed(a, [0, 1], [T0, T0], [0.3, 15.0])
    assert lock(a, T0 + 1 * S) == [(0, "none", "red")]
    b = make_engine(sensors)
    b.restore(a.snapshot())
    assert b.level(0, "interlock") == Level.RED
    assert lock(b, T0 + 2 * S) == []                      # no duplicate after restart
    # a snapshot written before "interlock" existed (15 rules) still restores
    old = a.snapshot()
    old["rule_names"] = np.array(RULE_NAMES[:15], dtype=np.str_)
    old["s.level"] = old["s.level"][:, :15]
    c = make_engine(sensors)
    c.restore(old)
    assert c.level(0, "low") == Level.YELLOW
    assert lock(c, T0 + 2 * S) == [(0, "none", "red")]


def test_no_interlock_without_an_area() -> None:
    e = make_engine([sensor("WL-1", "dust.water_level", area="", low_limit=0.5),
                     sensor("AV-1", "dust.air_velocity", area="")])
    feed(e, [0, 1], [T0, T0], [0.3, 15.0])
    assert lock(e, T0 + 1 * S) == []


def _valve_fault_for(e: AlarmEngine, valve: int, seconds: int, *, fan: int | None = None,
                     fan_value: float = 15.0) -> None:
    """The valve reports a fault every 10 s (and the fan its velocity), ticking each time."""
    for i in range(0, seconds, 10):
        feed(e, valve, T0 + i * S, 1.0)
        if fan is not None:
            feed(e, fan, T0 + i * S, fan_value)
        e.tick(T0 + i * S + 1)


def test_valve_fault_red_after_10_min_only_while_the_dust_equipment_runs() -> None:
    """DOMAIN.md valves: red = "fault > 10 min while running"; a stopped line's stuck valve stays orange."""
    e = make_engine([sensor("RV-1", "dust.rotary_valve", area="DC1", interval_s=10.0),
                     sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0)])
    _valve_fault_for(e, 0, 900, fan=1, fan_value=0.2)          # 15 min of fault, fan stopped
    assert e.level(0, "high") == Level.ORANGE
    feed(e, 1, T0 + 900 * S, 15.0)                              # the fan starts
    tr = e.tick(T0 + 900 * S + 500)                            # the next tick raises the held red
    assert of_rule(e, tr, "high") == [(0, "orange", "red")]
    feed(e, 1, T0 + 905 * S, 0.1)                               # it stops again
    assert of_rule(e, e.tick(T0 + 905 * S + 500), "high") == [(0, "red", "orange")]


def test_valve_fault_red_after_10_min_while_running_or_without_a_fan_signal() -> None:
    running = make_engine([sensor("IV-1", "dust.isolation_valve", area="DC1", interval_s=10.0),
                           sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0)])
    _valve_fault_for(running, 0, 600, fan=1)
    assert running.level(0, "high") == Level.ORANGE             # 590 s of fault
    assert of_rule(running, feed(running, 0, T0 + 600 * S, 1.0), "high") == [(0, "orange", "red")]
    # no air-velocity sensor in the area (or only a stale one): unknown counts as running
    blind = make_engine([sensor("IV-1", "dust.isolation_valve", area="DC1", interval_s=10.0),
                         sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0)])
    feed(blind, 1, T0, 0.2)                                     # stopped, then silent for 10 min
    _valve_fault_for(blind, 0, 600)
    assert of_rule(blind, feed(blind, 0, T0 + 600 * S, 1.0), "high") == [(0, "orange", "red")]


def test_a_held_valve_red_stays_held_after_a_restore_and_in_a_replay() -> None:
    """The equipment state is part of what a restored engine knows before its first tick:
    a valve red held at orange (fan stopped) must not go out as red on the first reading
    after a restart, nor in the catch-up replay."""
    fleet = [sensor("RV-1", "dust.rotary_valve", area="DC1", interval_s=10.0),
             sensor("AV-1", "dust.air_velocity", area="DC1", interval_s=10.0)]
    e = make_engine(fleet)
    _valve_fault_for(e, 0, 780, fan=1, fan_value=0.2)       # 13 min of fault, fan stopped
    assert e.level(0, "high") == Level.ORANGE
    snap = {k: v.copy() for k, v in e.snapshot().items()}
    for how in ("evaluate", "replay"):
        restored = make_engine(fleet)
        restored.restore(snap)
        step = restored.evaluate if how == "evaluate" else restored.replay
        tr = step(np.array([1, 0], np.int32), np.array([T0 + 780 * S] * 2, np.int64), np.array([0.2, 1.0]),
                  T0 + 780 * S + 100)
        assert of_rule(restored, tr, "high") == [], how
        assert restored.level(0, "high") == Level.ORANGE, how
