"""Maintenance and removal of sensors through the service, with real SQLite stores and a
fake clock: who and why are on record as alarms, held sensors raise nothing (no deadman
either), holds end by themselves and survive restarts, removal clears a sensor's alarms and
registering it again brings it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alerts.model import Alarm
from ingest.batch import BatchBuilder, ReadingBatch
from plantwatch.clock import FakeClock
from plantwatch.domain import AlarmStatus, Level, TsSource
from plantwatch.service import MAX_OUT_OF_SERVICE_MS, SensorStateError, Service
from plantwatch.settings import Settings
from tests.plantwatch.test_restart_replay import _abandon

T0 = 1_795_459_488_000
MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS

CONFIG = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-1"
kind = "gas.combustible"
interval_s = 10

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-2"
kind = "gas.combustible"
interval_s = 10
"""


def _service(tmp_path: Path, clock: FakeClock) -> Service:
    cfg = tmp_path / "plantwatch.toml"
    if not cfg.exists():
        cfg.write_text(CONFIG)
    return Service(Settings(data_dir=tmp_path / "data", config=cfg), clock=clock)


def _reading(svc: Service, sensor_id: str, ts: int, value: float) -> None:
    b = BatchBuilder()
    b.add("E1", "GW1", sensor_id, ts, value, int(TsSource.READING), ts)
    batch: ReadingBatch = b.build()
    batch.row = np.array([svc.registry.row_of("E1", sensor_id)], np.int32)
    svc.on_readings(batch, ts)


def _open(svc: Service, sensor_id: str) -> dict[str, Alarm]:
    return {a.rule: a for a in svc.book.open_alarms() if a.sensor_id == sensor_id}


def _deadman_three_intervals_on(svc: Service, clock: FakeClock) -> Alarm:
    """From now, GT-1 (10 s interval) silent: no deadman 25 s on, one 35 s on (3 x 10 s
    passed); returns it."""
    svc.tick(clock.advance(25_000))
    assert "deadman" not in _open(svc, "GT-1")
    svc.tick(clock.advance(10_000))
    assert "deadman" in _open(svc, "GT-1")
    return _open(svc, "GT-1")["deadman"]


def _notes(svc: Service, alarm_id: int) -> list[tuple[str | None, str | None]]:
    return [(e.by, e.comment) for e in svc.alarms.alarm_events(alarm_id) if e.type == "note"]


async def test_maintenance_is_on_record_raises_nothing_and_ends_by_itself(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _reading(svc, "GT-1", T0, 2.0)
        _reading(svc, "GT-2", T0, 2.0)
        s = svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration with 50 %LEL test gas", T0 + HOUR_MS)
        assert s.out_of_service is not None
        assert (s.out_of_service.since_ms, s.out_of_service.until_ms) == (T0, T0 + HOUR_MS)
        oos = _open(svc, "GT-1")["out_of_service"]
        assert (oos.level, oos.status) == (Level.BLUE, AlarmStatus.ACTIVE)
        assert "out of service" in oos.message
        assert _notes(svc, oos.id) == [
            ("Li Wei", "out of service until 2026-11-23 19:44:48 UTC: calibration with 50 %LEL test gas")]

        clock.advance(MIN_MS)
        _reading(svc, "GT-1", clock.now, 50.0)  # the test gas: not an alarm
        assert set(_open(svc, "GT-1")) == {"out_of_service"}
        assert svc.metrics.ingest_out_of_service._value.get() == 1
        for _ in range(50):  # 50 min of silence from GT-1: no deadman; GT-2 goes stale and is alarmed
            svc.tick(clock.advance(MIN_MS))
        assert set(_open(svc, "GT-1")) == {"out_of_service"}
        assert "deadman" in _open(svc, "GT-2")

        svc.tick(clock.advance(9 * MIN_MS))  # T0 + 60 min: the hold ends by itself
        assert svc.registry.sensor("E1", "GT-1").out_of_service is None  # type: ignore[union-attr]
        ended = svc.book.get(oos.id)
        assert ended is not None
        assert ended.status is AlarmStatus.CLEARED
        assert _notes(svc, oos.id)[-1] == ("system", "back in service: maintenance period ended")
        assert _deadman_three_intervals_on(svc, clock).level is Level.BLUE  # counts from the return
        _reading(svc, "GT-1", clock.now, 30.0)
        assert _open(svc, "GT-1")["high"].level is Level.YELLOW  # evaluated again
    finally:
        await svc.stop()


async def test_maintenance_requests_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    svc = _service(tmp_path, FakeClock(T0))
    try:
        with pytest.raises(KeyError, match="E1/GT-9"):
            svc.take_out_of_service("E1", "GT-9", "Li Wei", "calibration", T0 + HOUR_MS)
        with pytest.raises(ValueError, match="duration"):
            svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0)
        with pytest.raises(ValueError, match="duration"):
            svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + MAX_OUT_OF_SERVICE_MS + 1)
        with pytest.raises(SensorStateError, match="in service"):
            svc.return_to_service("E1", "GT-1", "Li Wei", "done")
        svc.remove_sensor("E1", "GT-1", "Li Wei", "detector replaced by GT-3")
        with pytest.raises(SensorStateError, match="removed"):
            svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
        with pytest.raises(SensorStateError, match="removed"):
            svc.return_to_service("E1", "GT-1", "Li Wei", "done")
        with pytest.raises(SensorStateError, match="already removed"):
            svc.remove_sensor("E1", "GT-1", "Li Wei", "again")
        assert [s.id for s in svc.registry.held()] == ["GT-1"]
    finally:
        await svc.stop()


async def test_an_early_return_and_a_moved_end(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
        svc.take_out_of_service("E1", "GT-1", "Li Wei", "sensor head replaced too", T0 + 2 * HOUR_MS)
        s = svc.registry.sensor("E1", "GT-1")
        assert s is not None
        assert s.out_of_service is not None
        assert (s.out_of_service.since_ms, s.out_of_service.until_ms) == (T0, T0 + 2 * HOUR_MS)
        oos = _open(svc, "GT-1")["out_of_service"]
        assert len(_notes(svc, oos.id)) == 2  # one alarm, both decisions on it
        svc.tick(clock.advance(HOUR_MS + MIN_MS))  # the first end has passed: still held
        assert "out_of_service" in _open(svc, "GT-1")
        svc.return_to_service("E1", "GT-1", "Zhang Min", "calibrated, reads 0.0 in clean air")
        assert _notes(svc, oos.id)[-1] == ("Zhang Min", "back in service: calibrated, reads 0.0 in clean air")
        assert svc.book.get(oos.id).status is AlarmStatus.CLEARED  # type: ignore[union-attr]
        svc.close_alarm(oos.id, "Zhang Min", "maintenance record filed")
        svc.tick(clock.advance(2 * HOUR_MS))  # the old end passes: nothing happens
        assert "out_of_service" not in _open(svc, "GT-1")
    finally:
        await svc.stop()


async def test_removal_clears_the_sensors_alarms_and_registering_it_again_reinstates_it(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _reading(svc, "GT-1", T0, 55.0)
        high = _open(svc, "GT-1")["high"]
        assert high.level is Level.ORANGE
        svc.take_out_of_service("E1", "GT-1", "Li Wei", "replacing the head", T0 + HOUR_MS)
        svc.remove_sensor("E1", "GT-1", "Li Wei", "detector removed with the old reactor")
        alarms = {a.rule: a for a in svc.alarms.list_alarms() if a.sensor_id == "GT-1"}
        assert alarms["high"].status is AlarmStatus.CLEARED  # its condition is no longer watched
        assert alarms["out_of_service"].status is AlarmStatus.CLEARED
        removed = alarms["removed"]
        assert (removed.level, removed.status) == (Level.BLUE, AlarmStatus.CLEARED)  # a record to close
        assert _notes(svc, removed.id) == [("Li Wei", "removed from service: detector removed with the old reactor")]
        svc.close_alarm(removed.id, "county duty officer", "decommissioning confirmed on site")
        _reading(svc, "GT-1", clock.advance(1000), 80.0)
        for _ in range(120):  # two hours: no deadman, no alarm at all
            svc.tick(clock.advance(MIN_MS))
        left = {a.rule: a.status for a in svc.book.open_alarms() if a.sensor_id == "GT-1"}
        assert left == {"high": AlarmStatus.CLEARED, "out_of_service": AlarmStatus.CLEARED}  # to be closed
        assert svc.metrics.ingest_out_of_service._value.get() == 1

        (s,) = svc.register_sensors([{"enterprise_id": "E1", "id": "GT-1", "kind": "gas.combustible",
                                      "device_id": "GW1", "interval_s": 10}])
        assert s.out_of_service is None
        _deadman_three_intervals_on(svc, clock)  # counts from the reinstatement
    finally:
        await svc.stop()


async def test_holds_survive_restarts_and_one_that_ended_meanwhile_ends_at_the_first_tick(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
    svc.remove_sensor("E1", "GT-2", "Li Wei", "removed")
    await svc.stop()

    clock.advance(30 * MIN_MS)
    svc = _service(tmp_path, clock)  # the config file still lists GT-2: it stays removed
    try:
        held = {s.id: s.out_of_service for s in svc.registry.held()}
        assert held["GT-1"] is not None
        assert held["GT-1"].until_ms == T0 + HOUR_MS
        assert held["GT-2"] is not None
        assert held["GT-2"].removed
        assert _open(svc, "GT-1")["out_of_service"].status is AlarmStatus.ACTIVE
        _reading(svc, "GT-1", clock.now, 60.0)
        _reading(svc, "GT-2", clock.now, 60.0)
        assert set(_open(svc, "GT-1")) == {"out_of_service"}
        assert set(_open(svc, "GT-2")) == {"removed"}
    finally:
        await svc.stop()

    clock.advance(HOUR_MS)
    svc = _service(tmp_path, clock)
    try:
        assert "out_of_service" in _open(svc, "GT-1")
        svc.tick(clock.now)
        assert svc.book.get(_open(svc, "GT-1")["out_of_service"].id).status is AlarmStatus.CLEARED  # type: ignore
        assert [s.id for s in svc.registry.held()] == ["GT-2"]
    finally:
        await svc.stop()


async def test_blank_names_and_reasons_are_refused_before_anything_changes(tmp_path: Path) -> None:
    svc = _service(tmp_path, FakeClock(T0))
    try:
        with pytest.raises(ValueError, match="by: required"):
            svc.take_out_of_service("E1", "GT-1", "  ", "calibration", T0 + HOUR_MS)
        with pytest.raises(ValueError, match="reason: required"):
            svc.remove_sensor("E1", "GT-1", "Li Wei", " \t")
        assert svc.registry.held() == []
        assert svc.book.open_alarms() == []
        svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
        with pytest.raises(ValueError, match="comment: required"):
            svc.return_to_service("E1", "GT-1", "Li Wei", "")
        assert [s.id for s in svc.registry.held()] == ["GT-1"]
    finally:
        await svc.stop()


def _messages(svc_clock: FakeClock, values: dict[str, float]) -> list[tuple[str, bytes, int]]:
    now = svc_clock()
    readings = [{"sensor": s, "ts": now, "value": v} for s, v in values.items()]
    return [("plants/E1/GW1/telemetry", json.dumps({"readings": readings}).encode(), now)]


async def test_a_crash_after_a_hold_change_does_not_replay_readings_across_it(tmp_path: Path) -> None:
    """Readings are stored and replayed after a crash; the calibration gas a held sensor sent
    must not be evaluated at that replay, and a removal must not come undone."""
    clock = FakeClock(T0)
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(CONFIG)
    settings = Settings(data_dir=tmp_path / "data", config=cfg, store_writer="inline")
    svc = Service(settings, clock=clock)
    svc.pipeline.process(_messages(clock, {"GT-1": 2.0, "GT-2": 55.0}))
    svc.snapshot_engine()  # the last periodic restore point
    svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
    for _ in range(3):  # calibration gas, stored
        clock.advance(10_000)
        svc.pipeline.process(_messages(clock, {"GT-1": 60.0, "GT-2": 55.0}))
    clock.advance(10_000)
    svc.return_to_service("E1", "GT-1", "Li Wei", "calibrated")
    svc.remove_sensor("E1", "GT-2", "Li Wei", "dismantled")
    assert svc._snap_task is not None
    await svc._snap_task  # the restore point of the last change is written
    clock.advance(10_000)
    svc.pipeline.process(_messages(clock, {"GT-2": 70.0}))  # after it, and replayed: not evaluated
    assert svc.engine.levels()[:2].max() == 0
    _abandon(svc)

    clock.advance(60_000)
    svc = Service(settings, clock=clock)
    try:
        assert svc.engine.level(0, "high") is Level.NONE  # the calibration gas is not evaluated at the replay
        assert svc.engine.levels()[1].max() == 0  # GT-2 stays removed, its levels with it
        assert not [a for a in svc.book.open_alarms() if a.rule == "high" and a.status is AlarmStatus.ACTIVE]
    finally:
        await svc.stop()


async def test_a_hold_that_ended_during_downtime_restarts_the_deadman_from_its_first_tick(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    _reading(svc, "GT-1", T0, 2.0)
    svc.take_out_of_service("E1", "GT-1", "Li Wei", "calibration", T0 + HOUR_MS)
    await svc.stop()
    clock.advance(3 * HOUR_MS)  # down for three hours; the hold ended meanwhile
    svc = _service(tmp_path, clock)
    try:
        svc.tick(clock.now)
        assert svc.registry.held() == []
        assert _deadman_three_intervals_on(svc, clock).level is Level.BLUE  # no more grace than that
    finally:
        await svc.stop()
