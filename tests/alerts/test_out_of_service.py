"""Sensors out of service in the engine: maintenance freezes a row (its readings teach no
detector, its levels and timers stand still), resuming restarts its timers, and removal
clears its levels and recomputes the area vote it carried or counted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from alerts.engine import AlarmEngine
from plantwatch.domain import Level
from plantwatch.registry import OutOfService, Sensor
from tests.alerts.conftest import T0, enterprises, events, feed, make_engine, of_rule, sensor

MIN_MS = 60_000
MAINT = OutOfService(since_ms=T0, until_ms=T0 + 3_600_000, by="Li Wei", reason="calibration")


def _hold(engine: AlarmEngine, sensors: list[Sensor], rows: list[int], hold: OutOfService | None = MAINT) -> None:
    for r in rows:
        sensors[r] = replace(sensors[r], out_of_service=hold)
    engine.sync(sensors, enterprises())


@pytest.fixture(params=[True, False], ids=["kernel", "numpy"])
def kernel(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_a_held_row_is_not_evaluated_and_its_readings_are_counted(kernel: bool) -> None:
    sensors = [sensor("GT-1", "gas.combustible"), sensor("GT-2", "gas.combustible")]
    eng = make_engine(sensors, kernel=kernel)
    _hold(eng, sensors, [0])
    tr = feed(eng, [0, 1], [T0, T0], [60.0, 30.0])  # calibration gas on GT-1; a real yellow on GT-2
    assert events(eng, tr) == [(1, "high", "none", "yellow")]
    assert eng.level(0, "high") is Level.NONE
    assert eng.out_of_service_readings == 1
    assert np.isnan(eng.snapshot()["s.last_v"][0])  # nothing learnt from the held row


def test_a_held_row_keeps_its_levels_and_raises_no_deadman(kernel: bool) -> None:
    sensors = [sensor("GT-1", "gas.combustible", interval_s=5.0)]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, 0, T0, 55.0)  # stage 2: orange
    assert eng.level(0, "high") is Level.ORANGE
    _hold(eng, sensors, [0])
    assert len(feed(eng, 0, T0 + 1000, 0.0)) == 0  # a reading of 0 does not clear a held row
    for minutes in (1, 30, 59):  # silent for an hour: no deadman, no red from the held stage 2
        assert len(eng.tick(T0 + minutes * MIN_MS)) == 0
    assert eng.level(0, "high") is Level.ORANGE
    assert eng.level(0, "deadman") is Level.NONE


def test_resume_restarts_the_deadman_and_flatline_timers(kernel: bool) -> None:
    sensors = [sensor("GT-1", "gas.combustible", interval_s=5.0)]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, 0, T0, 3.0)
    _hold(eng, sensors, [0])
    back = T0 + 48 * 3_600_000  # two days out, longer than the 24 h flatline period
    eng.tick(back - 1000)
    _hold(eng, sensors, [0], None)
    eng.resume(np.array([0], np.int32), back)
    assert len(eng.tick(back + 14_000)) == 0  # under 3 x 5 s since the return
    assert of_rule(eng, eng.tick(back + 16_000), "deadman") == [(0, "none", "blue")]
    tr = feed(eng, 0, back + 17_000, 3.0)  # the value it had before: not two days flat
    assert of_rule(eng, tr, "deadman") == [(0, "blue", "none")]
    assert of_rule(eng, tr, "flatline") == []
    assert of_rule(eng, feed(eng, 0, back + 18_000, 30.0), "high") == [(0, "none", "yellow")]


def test_clear_rows_drops_every_level_and_moves_or_clears_the_area_vote(kernel: bool) -> None:
    sensors = [sensor(f"GT-{i}", "gas.combustible") for i in range(3)]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 1, 2], [T0, T0, T0], [55.0, 55.0, 55.0])
    assert eng.level(0, "area_vote") is Level.RED  # carried by the lowest row at stage 2
    _hold(eng, sensors, [0], replace(MAINT, until_ms=None))
    tr = eng.clear_rows(np.array([0], np.int32), T0 + 1000)
    assert sorted(events(eng, tr)) == [(0, "area_vote", "red", "none"), (0, "high", "orange", "none"),
                                       (1, "area_vote", "none", "red")]  # two left at stage 2: it moves
    assert eng.levels()[0].max() == 0
    _hold(eng, sensors, [1], replace(MAINT, until_ms=None))
    tr = eng.clear_rows(np.array([1], np.int32), T0 + 2000)
    assert sorted(events(eng, tr)) == [(1, "area_vote", "red", "none"), (1, "high", "orange", "none")]
    assert eng.level(2, "high") is Level.ORANGE  # one detector left: no vote
    assert len(feed(eng, 0, T0 + 3000, 80.0)) == 0  # removed: never evaluated again
    # the vote is still counted correctly for detectors in service
    _hold(eng, sensors, [1], None)
    eng.resume(np.array([1], np.int32), T0 + 4000)
    tr = feed(eng, 1, T0 + 5000, 55.0)
    assert sorted(of_rule(eng, tr, "area_vote")) == [(1, "none", "red")]


def test_resume_voids_a_delay_that_was_pending_before_the_hold(kernel: bool) -> None:
    sensors = [sensor("GT-1", "gas.combustible", interval_s=60.0)]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, 0, T0, 55.0)  # stage 2: orange now, red if held 60 s
    _hold(eng, sensors, [0])
    assert len(eng.tick(T0 + 30_000)) == 0
    back = T0 + 3_600_000
    _hold(eng, sensors, [0], None)
    eng.resume(np.array([0], np.int32), back)
    assert of_rule(eng, eng.tick(back + 1000), "high") == []  # not red from a reading an hour old
    feed(eng, 0, back + 2000, 55.0)
    assert of_rule(eng, eng.tick(back + 63_000), "high") == [(0, "orange", "red")]  # held again: red


def test_cross_sensor_rules_do_not_raise_or_clear_on_a_held_row(kernel: bool) -> None:
    sensors = [sensor("TT-1", "dust.hopper_temperature"), sensor("SP-1", "dust.spark"),
               sensor("GT-1", "gas.combustible", device="GW2")]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 2], [T0, T0], [75.0, 2.0])
    eng.tick(T0 + 20_000)  # GT-1 silent for 4 x 5 s: deadman blue
    assert eng.level(2, "deadman") is Level.BLUE
    _hold(eng, sensors, [0, 2])
    tr = feed(eng, 1, T0 + 21_000, 2.0)  # sparks next to the hot, held hopper: no compound red on it
    assert of_rule(eng, tr, "compound") == []
    tr = eng.gateway_status("E1", "GW2", False, T0 + 22_000)  # its gateway goes offline: still frozen
    assert of_rule(eng, tr, "deadman") == []
    assert eng.level(2, "deadman") is Level.BLUE


def test_set_out_of_service_equals_a_recompile_from_the_registry(kernel: bool) -> None:
    def build() -> tuple[AlarmEngine, list[Sensor]]:
        sensors = [sensor("TT-1", "dust.hopper_temperature"), sensor("SP-1", "dust.spark"),
                   sensor("GT-1", "gas.combustible"), sensor("GT-2", "gas.combustible")]
        return make_engine(sensors, kernel=kernel), sensors

    (a, sa), (b, _) = build(), build()
    stream = [([0, 2, 3], [50.0, 30.0, 55.0]), ([1, 2, 3], [2.0, 55.0, 55.0]), ([0, 1, 3], [80.0, 3.0, 10.0])]
    for i, (rows, vals) in enumerate(stream):
        ts = [T0 + i * 1000] * len(rows)
        if i == 1:
            _hold(a, sa, [0, 2])
            b.set_out_of_service(np.array([0, 2], np.int32), True)
        assert events(a, feed(a, rows, ts, vals)) == events(b, feed(b, rows, ts, vals))
        assert events(a, a.tick(T0 + i * 1000 + 500)) == events(b, b.tick(T0 + i * 1000 + 500))
    np.testing.assert_array_equal(a.levels(), b.levels())


def test_a_gateway_root_alarm_moves_off_a_sensor_taken_out_of_service(kernel: bool) -> None:
    """The device's root alarm sits on its first sensor; when that sensor goes out of service
    during the outage the alarm moves to the next one in service (cleared on the old row,
    raised on the new, at the same level), and stays there when the first comes back."""
    sensors = [sensor("GT-1", "gas.combustible"), sensor("GT-2", "gas.combustible"),
               sensor("GT-3", "gas.combustible", device="GW2")]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 1, 2], [T0] * 3, [3.0] * 3)
    tr = eng.gateway_status("E1", "GW1", False, T0 + 1000)
    assert of_rule(eng, tr, "gateway_offline") == [(0, "none", "blue")]
    eng.set_out_of_service(np.array([0], np.int32), True)
    tr = eng.tick(T0 + 2000)
    assert sorted(of_rule(eng, tr, "gateway_offline")) == [(0, "blue", "none"), (1, "none", "blue")]
    tr = eng.tick(T0 + 1000 + 31 * MIN_MS)  # offline > 30 min: the moved alarm escalates where it is
    assert of_rule(eng, tr, "gateway_offline") == [(1, "blue", "yellow")]
    eng.set_out_of_service(np.array([0], np.int32), False)
    eng.resume(np.array([0], np.int32), T0 + 32 * MIN_MS)
    assert of_rule(eng, eng.tick(T0 + 33 * MIN_MS), "gateway_offline") == []  # no churn back to GT-1
    back = make_engine(sensors, kernel=kernel)
    back.restore(eng.snapshot())  # the carrier is derived from the levels: a restart keeps it
    assert of_rule(back, back.tick(T0 + 34 * MIN_MS), "gateway_offline") == []
    tr = back.gateway_status("E1", "GW1", True, T0 + 35 * MIN_MS)
    assert of_rule(back, tr, "gateway_offline") == [(1, "yellow", "none")]
    assert back.level(0, "gateway_offline") is Level.NONE


def test_a_device_with_every_sensor_out_of_service_raises_no_gateway_alarm(kernel: bool) -> None:
    """A decommissioned gateway's retained offline status (every sensor on it removed) raises
    nothing, however long; a sensor back in service under the still-offline gateway carries
    its root alarm at the level the outage has reached."""
    sensors = [sensor("GT-1", "gas.combustible"), sensor("GT-2", "gas.combustible")]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 1], [T0] * 2, [3.0] * 2)
    eng.gateway_status("E1", "GW1", False, T0 + 1000)
    eng.set_out_of_service(np.array([0, 1], np.int32), True)
    tr = eng.tick(T0 + 2000)
    assert of_rule(eng, tr, "gateway_offline") == [(0, "blue", "none")]  # the open one clears
    for minutes in (10, 40, 600):
        assert of_rule(eng, eng.tick(T0 + minutes * MIN_MS), "gateway_offline") == []
    assert of_rule(eng, eng.gateway_status("E1", "GW1", False, T0 + 601 * MIN_MS), "gateway_offline") == []
    eng.set_out_of_service(np.array([1], np.int32), False)
    eng.resume(np.array([1], np.int32), T0 + 640 * MIN_MS)
    tr = eng.tick(T0 + 640 * MIN_MS + 1000)
    assert of_rule(eng, tr, "gateway_offline") == [(1, "none", "yellow")]


def test_a_sensor_moved_to_another_device_drops_the_old_devices_root_alarm(kernel: bool) -> None:
    """Registered again on another gateway while its old one is offline: the root alarm it
    carried clears at the next tick and moves to the old device's next sensor."""
    sensors = [sensor("GT-1", "gas.combustible"), sensor("GT-2", "gas.combustible")]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 1], [T0] * 2, [3.0] * 2)
    eng.gateway_status("E1", "GW1", False, T0 + 1000)
    assert eng.level(0, "gateway_offline") is Level.BLUE
    sensors[0] = replace(sensors[0], device_id="GW9")
    eng.sync(sensors, enterprises())
    tr = eng.tick(T0 + 2000)
    assert sorted(of_rule(eng, tr, "gateway_offline")) == [(0, "blue", "none"), (1, "none", "blue")]
    assert of_rule(eng, eng.tick(T0 + 3000), "gateway_offline") == []


def test_a_sensor_moved_onto_another_offline_device_leaves_that_devices_alarm_alone(kernel: bool) -> None:
    """Found by review: A carries GW9's root alarm, B carries GW1's; B is registered again on
    GW9 while both are offline. GW9's own alarm stays on A; B's, raised for GW1, clears and
    GW1's moves to its next sensor. Also across a restart in between."""
    sensors = [sensor("A", "gas.combustible", device="GW9"), sensor("B", "gas.combustible"),
               sensor("C", "gas.combustible")]
    eng = make_engine(sensors, kernel=kernel)
    feed(eng, [0, 1, 2], [T0] * 3, [3.0] * 3)
    eng.gateway_status("E1", "GW9", False, T0 + 1000)
    eng.gateway_status("E1", "GW1", False, T0 + 1000)
    assert [eng.level(r, "gateway_offline") for r in range(3)] == [Level.BLUE, Level.BLUE, Level.NONE]
    sensors[1] = replace(sensors[1], device_id="GW9")
    eng.sync(sensors, enterprises())
    back = make_engine(sensors, kernel=kernel)
    back.restore(eng.snapshot())
    for e in (eng, back):
        tr = e.tick(T0 + 2000)
        assert sorted(of_rule(e, tr, "gateway_offline")) == [(1, "blue", "none"), (2, "none", "blue")]
        assert of_rule(e, e.tick(T0 + 3000), "gateway_offline") == []
