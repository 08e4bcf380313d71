"""Power analytics: overload, learned profile, 停产不停电 suspension, night, critical feeder."""

from __future__ import annotations

from typing import Any

from alerts.engine import AlarmEngine
from alerts.power import hour_of_week, local_hours
from plantwatch.domain import Level, ProductionStatus
from plantwatch.registry import Sensor
from tests.alerts.conftest import enterprises, feed, make_engine, of_rule, sensor

S = 1000
MIN = 60 * S
H = 60 * MIN
# Monday 2026-11-23 00:00 China time (UTC+8) = Sunday 16:00 UTC
MON = 1_795_363_200_000


def _load(ts: int) -> float:
    """Normal production: 500 kW 08:00-20:00 local, 100 kW otherwise."""
    hour = int(local_hours(ts) % 24)  # type: ignore[arg-type]
    return 500.0 if 8 <= hour < 20 else 100.0


def plant(status: ProductionStatus = ProductionStatus.NORMAL) -> tuple[AlarmEngine, list[Sensor]]:
    sensors = [sensor("P-main", "power.active_power", interval_s=900.0, capacity=1000.0),
               sensor("F-vent", "power.feeder_current", interval_s=900.0, critical=True),
               sensor("F-other", "power.feeder_current", interval_s=900.0)]
    return make_engine(sensors, enterprises(status)), sensors


_LEARNED: dict[str, Any] = {}


def learn_week(e: AlarmEngine, start: int = MON) -> int:
    """A week of normal load every 15 min (4 samples per hour of week); returns the end time.

    Learnt once per session and then restored from a snapshot (restore is itself under test).
    """
    end = start + 7 * 24 * 4 * 15 * MIN
    if "snap" not in _LEARNED:
        fresh, _ = plant()
        t = start
        while t < end:
            feed(fresh, [0, 1, 2], [t, t, t], [_load(t), 30.0, 10.0])
            t += 15 * MIN
        _LEARNED["snap"] = fresh.snapshot()
    e.restore(_LEARNED["snap"])
    e.tick(end)  # the restored clock resumes here (no downtime)
    return end


def test_hour_of_week_starts_monday_local() -> None:
    assert int(hour_of_week(MON)) == 0  # type: ignore[arg-type]
    assert int(hour_of_week(MON + 25 * H)) == 25  # type: ignore[arg-type]


def test_overload_yellow_above_110_and_orange_above_125_held_one_hour() -> None:
    e, _ = plant()
    assert of_rule(e, feed(e, 0, MON, 1050.0), "overload") == []
    assert of_rule(e, feed(e, 0, MON + 15 * MIN, 1150.0), "overload") == [(0, "none", "yellow")]
    assert of_rule(e, feed(e, 0, MON + 30 * MIN, 1300.0), "overload") == []
    assert of_rule(e, feed(e, 0, MON + 75 * MIN, 1300.0), "overload") == []
    assert of_rule(e, feed(e, 0, MON + 90 * MIN, 1300.0), "overload") == [(0, "yellow", "orange")]


def test_learned_profile_p95_gives_overload_blue() -> None:
    e, _ = plant()
    t = learn_week(e)
    assert e.level(0, "overload") == Level.NONE
    # Monday 03:00 local again: night load is 100 kW; 300 kW is far above its P95
    t3 = t + 3 * H
    assert of_rule(e, feed(e, 0, t3, 300.0), "overload") == [(0, "none", "blue")]
    assert of_rule(e, feed(e, 0, t3 + 15 * MIN, 100.0), "overload") == [(0, "blue", "none")]


def test_suspension_power_use_blue_then_production_like_yellow_then_energy_orange() -> None:
    e, sensors = plant()
    t = learn_week(e)  # next Monday 00:00
    e.sync(sensors, enterprises(ProductionStatus.SUSPENDED))
    for _ in range(8):  # suspended baseline ~20 kW (learned), Monday 00:00-02:00
        feed(e, [0, 1], [t, t], [20.0, 0.0])
        t += 15 * MIN
    t = t + 8 * H  # Monday 10:00
    assert of_rule(e, feed(e, 0, t, 30.0), "suspension") == [(0, "none", "blue")]
    assert of_rule(e, feed(e, 0, t + 15 * MIN, 450.0), "suspension") == []
    assert of_rule(e, feed(e, 0, t + 30 * MIN, 450.0), "suspension") == [(0, "blue", "yellow")]
    got = []
    for i in range(3, 40):
        got += of_rule(e, feed(e, 0, t + i * 15 * MIN, 450.0), "suspension")
    # a normal Monday is 12 h x 500 + 12 h x 100 = 7200 kWh; 30 % = 2160 kWh = 4.8 h at 450 kW
    assert got == [(0, "yellow", "orange")]


def test_night_production_under_suspension_is_red_and_under_limitation_yellow() -> None:
    for status, level in ((ProductionStatus.SUSPENDED, "red"), (ProductionStatus.LIMITED, "yellow"),
                          (ProductionStatus.NORMAL, None)):
        e, sensors = plant()
        t = learn_week(e)
        e.sync(sensors, enterprises(status))
        t23 = t + 23 * H  # Monday 23:00 local, normal night load is 100 kW
        tr = feed(e, 0, t23, 480.0)
        assert of_rule(e, tr, "night") == ([(0, "none", level)] if level else [])


def test_critical_feeder_at_zero_while_producing_is_red() -> None:
    e, _ = plant()
    t = learn_week(e)
    t10 = t + 10 * H
    tr = feed(e, [0, 1, 2], [t10, t10, t10], [500.0, 0.0, 0.0])
    assert of_rule(e, tr, "critical_feeder") == [(1, "none", "red")]  # only the critical one
    tr = feed(e, [0, 1], [t10 + 15 * MIN] * 2, [500.0, 25.0])
    assert of_rule(e, tr, "critical_feeder") == [(1, "red", "none")]


def test_critical_feeder_at_zero_is_normal_when_the_plant_is_stopped() -> None:
    e, sensors = plant()
    t = learn_week(e)
    t10 = t + 10 * H
    tr = feed(e, [0, 1], [t10, t10], [10.0, 0.0])  # main meter shows no production
    assert of_rule(e, tr, "critical_feeder") == []
    e.sync(sensors, enterprises(ProductionStatus.SUSPENDED))
    tr = feed(e, [0, 1], [t10 + 15 * MIN] * 2, [10.0, 0.0])
    assert of_rule(e, tr, "critical_feeder") == []


def test_suspension_lifted_clears_in_tick() -> None:
    e, sensors = plant()
    t = learn_week(e)
    e.sync(sensors, enterprises(ProductionStatus.SUSPENDED))
    t23 = t + 23 * H
    feed(e, 0, t23, 480.0)
    assert e.level(0, "night") == Level.RED
    e.sync(sensors, enterprises(ProductionStatus.NORMAL))
    assert of_rule(e, e.tick(t23 + MIN), "night") == [(0, "red", "none")]


def test_power_state_survives_restart() -> None:
    e, sensors = plant()
    t = learn_week(e)
    b = make_engine(sensors, enterprises())
    b.restore(e.snapshot())
    t3 = t + 3 * H
    assert of_rule(b, feed(b, 0, t3, 300.0), "overload") == [(0, "none", "blue")]


def test_sensor_offline_red_while_producing_yellow_in_production_hours_blue_while_idle() -> None:
    """DOMAIN.md data quality: offline > 3x interval blue; > 30 min in production hours yellow;
    while power shows production red. A fresh main meter showing the plant idle keeps it blue;
    a meter that went quiet too says nothing about production hours (yellow)."""
    for meter_kw, meter_reports, at, expect in (
            (500.0, True, 31 * MIN, [(1, "blue", "red")]),
            (10.0, True, 31 * MIN, []),
            # the meter's last reading is 50 min old (stale beyond 3 x 15 min): in deadman itself
            (10.0, False, 50 * MIN, [(0, "none", "yellow"), (1, "blue", "yellow")])):
        e = make_engine([sensor("P-main", "power.active_power", interval_s=900.0, capacity=1000.0),
                         sensor("GT-1", "gas.combustible", interval_s=5.0)])
        e.tick(MON)
        feed(e, [0, 1], [MON, MON], [meter_kw, 1.0])
        assert of_rule(e, e.tick(MON + 20 * S), "deadman") == [(1, "none", "blue")]
        if meter_reports:
            for k in range(1, 3):
                feed(e, 0, MON + k * 15 * MIN, meter_kw)
        assert sorted(of_rule(e, e.tick(MON + at), "deadman")) == expect


def _gas_gateway_offline_32_min(meter_kw: float) -> list[tuple[int, str, str]]:
    """Gas gateway offline while the main meter (1,000 kW capacity) keeps reading ``meter_kw``:
    the gateway transitions of the tick 32 min later (the blue at going offline is checked)."""
    e = make_engine([sensor("P-main", "power.active_power", device="GW-power", interval_s=900.0, capacity=1000.0),
                     sensor("GT-1", "gas.combustible", device="GW-gas", interval_s=5.0)])
    feed(e, [0, 1], [MON, MON], [meter_kw, 1.0])
    assert of_rule(e, e.gateway_status("E1", "GW-gas", False, MON + S), "gateway_offline") == [(1, "none", "blue")]
    for k in range(1, 3):
        feed(e, 0, MON + k * 15 * MIN, meter_kw)
    return of_rule(e, e.tick(MON + 32 * MIN), "gateway_offline")


def test_gateway_offline_stays_blue_while_the_main_meter_shows_the_plant_idle() -> None:
    assert _gas_gateway_offline_32_min(10.0) == []
    e2 = make_engine([sensor("GT-1", "gas.combustible", device="GW-gas", interval_s=5.0)])  # no meter
    feed(e2, 0, MON, 1.0)
    e2.gateway_status("E1", "GW-gas", False, MON + S)
    assert of_rule(e2, e2.tick(MON + 32 * MIN), "gateway_offline") == [(0, "blue", "yellow")]


def test_gateway_offline_while_power_shows_production_escalates_to_red() -> None:
    assert _gas_gateway_offline_32_min(500.0) == [(1, "blue", "red")]


def test_suspended_baseline_from_params_before_anything_is_learnt() -> None:
    e = make_engine([sensor("P-main", "power.active_power", interval_s=60.0, capacity=1000.0, baseline=100.0)],
                    enterprises(ProductionStatus.SUSPENDED))
    assert of_rule(e, feed(e, 0, MON + 2 * H, 110.0), "suspension") == []
    assert of_rule(e, feed(e, 0, MON + 2 * H + MIN, 130.0), "suspension") == [(0, "none", "blue")]
