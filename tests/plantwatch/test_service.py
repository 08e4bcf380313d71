"""Service wiring with real stores: hourly compaction of the SQLite store, and system alarms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alerts.lifecycle import AlarmBook
from ingest.batch import BatchBuilder, ReadingBatch
from plantwatch.clock import FakeClock
from plantwatch.domain import AlarmStatus, Level, TsSource
from plantwatch.registry import Registry, RegistryError
from plantwatch.service import Service
from plantwatch.settings import Settings
from tests.store._util import grid_batch

T0 = 1_795_459_488_000
HOUR_MS = 3_600_000


async def test_compaction_runs_once_per_interval_and_removes_redelivered_duplicates(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = Service(Settings(data_dir=tmp_path, compact_interval_s=3600), clock=clock, registry=Registry())
    try:
        hour_start = (T0 - 3 * HOUR_MS) // HOUR_MS * HOUR_MS
        batch = grid_batch(3, 10, hour_start, registered=False)
        svc.readings.write_readings(batch)
        svc.readings.write_readings(batch)  # a QoS 1 redelivery after a crash: same readings again
        before = svc.readings.query_readings("E1", "S-0000", hour_start, hour_start + HOUR_MS, 1000)
        assert len(before) == 10  # queries deduplicate by timestamp; storage still holds two chunks per sensor
        assert await svc.maybe_compact(clock.advance(HOUR_MS - 1)) == 0  # not yet due
        removed = await svc.maybe_compact(clock.advance(1))
        assert removed == 3  # one extra chunk per sensor merged away
        after = svc.readings.query_readings("E1", "S-0000", hour_start, hour_start + HOUR_MS, 1000)
        assert after == before
        assert await svc.maybe_compact(clock.advance(1000)) == 0  # the next run waits a full interval
    finally:
        await svc.stop()


def test_system_alarm_has_the_full_lifecycle() -> None:
    book = AlarmBook(sensor_of=lambda row: None, rule_names=["high"])
    [(raised, ev)] = book.apply_system("store", "buffer_near_full", Level.ORANGE, 85.0, T0, T0)
    assert (ev.type, raised.kind, raised.sensor_id, raised.enterprise_id) == ("raised", "system", "store", "")
    assert book.apply_system("store", "buffer_near_full", Level.ORANGE, 86.0, T0 + 1000, T0 + 1000) == []
    [(up, ev2)] = book.apply_system("store", "buffer_near_full", Level.RED, 96.0, T0 + 2000, T0 + 2000)
    assert (ev2.type, up.id, up.level) == ("escalated", raised.id, Level.RED)
    book.acknowledge(raised.id, "duty-officer", "InfluxDB restarted", T0 + 3000)
    [(cleared, ev3)] = book.apply_system("store", "buffer_near_full", Level.NONE, 10.0, T0 + 4000, T0 + 4000)
    assert ev3.type == "cleared"
    assert cleared.status is AlarmStatus.CLEARED


def test_demo_event_line_shows_a_missing_value_as_a_dash() -> None:
    from plantwatch.demo import format_event

    alarm = {"id": 7, "level": "orange", "enterprise_id": "E1", "sensor_id": "GT-1", "kind": "gas.combustible",
             "rule": "deadman", "value": None, "status": "active"}
    line = format_event({"alarm": alarm, "event": {"type": "raised", "by": None}})
    assert "#7 raised" in line
    assert "value=— status=active" in line
    line = format_event({"alarm": {**alarm, "value": 51.42}, "event": {"type": "acknowledged", "by": "li.wei"}})
    assert line.endswith("value=51.42 status=active by li.wei")


CONFIG_V1 = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
id = "GT-1"
kind = "gas.combustible"
"""

# the operator later inserts a sensor *before* GT-1 in the file
CONFIG_V2 = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
id = "GT-0"
kind = "gas.combustible"

[[sensor]]
enterprise_id = "E1"
id = "GT-1"
kind = "gas.combustible"
thresholds = { yellow = 20.0 }
"""


async def test_registry_changes_over_the_api_and_rows_survive_a_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(CONFIG_V1)
    settings = Settings(data_dir=tmp_path / "data", config=cfg)
    svc = Service(settings, clock=FakeClock(T0))
    svc.register_sensors([{"enterprise_id": "E1", "id": "API-1", "kind": "gas.toxic", "params": {"oel_ppm": 7.0}}])
    svc.update_enterprise("E1", {"production_status": "suspended"})
    # API-1 holds a level the engine snapshot will carry, under its row
    svc.on_readings(_batch(svc, "API-1", 20.0), T0)
    assert svc.engine.level(1, "high") == Level.ORANGE
    await svc.stop()

    cfg.write_text(CONFIG_V2)
    svc = Service(settings, clock=FakeClock(T0 + 1000))
    try:
        rows = {s.id: s.row for s in svc.registry.sensors}
        assert rows == {"GT-1": 0, "API-1": 1, "GT-0": 2}  # saved rows kept; new config sensor appended
        gt1 = svc.registry.sensor("E1", "GT-1")
        assert gt1 is not None
        assert gt1.thresholds == {"yellow": 20.0}  # the config file's definition
        assert svc.registry.enterprises["E1"].production_status == "suspended"  # the order outlives the restart
        assert svc.engine.level(1, "high") == Level.ORANGE  # detector state restored onto the right sensor
        assert svc.engine.level(0, "high") == Level.NONE
    finally:
        await svc.stop()


async def test_register_sensors_refuses_rule_parameters_the_engine_cannot_compile(tmp_path: Path) -> None:
    svc = Service(Settings(data_dir=tmp_path), clock=FakeClock(T0), registry=Registry())
    try:
        svc.register_enterprises([{"id": "E1"}])
        with pytest.raises(RegistryError) as err:
            svc.register_sensors([{"enterprise_id": "E1", "id": "A", "kind": "gas.combustible"},
                                  {"enterprise_id": "E1", "id": "P", "kind": "dust.pressure_diff",
                                   "params": {"baseline": "high"}}])
        assert err.value.where == "body[1].params.baseline"
        assert len(svc.registry) == 0
    finally:
        await svc.stop()


def _batch(svc: Service, sensor_id: str, value: float) -> ReadingBatch:
    b = BatchBuilder()
    b.add("E1", "", sensor_id, T0, value, int(TsSource.READING), T0)
    batch = b.build()
    batch.row = np.array([svc.registry.row_of("E1", sensor_id)], np.int32)
    return batch
