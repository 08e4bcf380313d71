"""A crash between two engine snapshots loses no detector state.

The service saves the alarm engine's state every ``snapshot_interval_s``. After a kill -9,
the readings stored since that snapshot (the SQLite store's replay mark) and the gateway
statuses received since are fed back into the restored engine. These tests run two
services on real SQLite files with the same injected clock and the same messages: one never
stops, the other is abandoned without ``stop()`` (what a kill leaves behind: no final
snapshot) and a new service is opened on its data directory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alerts.engine import AlarmEngine
from ingest.store.influx import InfluxReadingStore
from plantwatch.clock import FakeClock
from plantwatch.domain import Level
from plantwatch.service import REPLAY_MARK, REPLAY_SOURCE, Service
from plantwatch.settings import Settings

T0 = 1_795_459_488_000
CONFIG = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-1"
kind = "gas.combustible"
area = "A1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-2"
kind = "gas.combustible"
area = "A1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "TT-1"
kind = "dust.hopper_temperature"
area = "A1"
params = { baseline = 40.0 }

[[sensor]]
enterprise_id = "E1"
device_id = "GW2"
id = "OX-1"
kind = "gas.oxygen"
area = "A2"

[[sensor]]
enterprise_id = "E1"
device_id = "GW2"
id = "PD-1"
kind = "dust.pressure_diff"
area = "A2"
params = { baseline = 1200.0 }
"""
GW1 = ("GT-1", "GT-2", "TT-1")
GW2 = ("OX-1", "PD-1")


def _value(sensor: str, t_s: int, rng: np.random.Generator) -> float:
    """A plant with incidents: GT-1 rises to a held 60 %LEL (orange, red after 60 s held),
    GT-2 joins at stage 2 (area vote), TT-1 climbs, the rest is noise."""
    noise = float(rng.normal(0.0, 0.3))
    if sensor == "GT-1":
        return round(min(60.0, 2.0 + max(0, t_s - 40) * 1.5) + noise, 2)
    if sensor == "GT-2":
        return round((55.0 if 120 <= t_s < 200 else 3.0) + noise, 2)
    if sensor == "TT-1":
        return round(40.0 + 0.12 * t_s + noise, 2)
    if sensor == "OX-1":
        return round(20.9 + 0.05 * noise, 2)
    return round(1200.0 + 20.0 * noise, 1)


def _messages(t_s: int, rng: np.random.Generator, offline: set[str]) -> list[tuple[str, bytes, int]]:
    now = T0 + t_s * 1000
    out = []
    for gw, sensors in (("GW1", GW1), ("GW2", GW2)):
        if gw in offline:
            continue
        readings = [{"sensor": s, "ts": now, "value": _value(s, t_s, rng)} for s in sensors]
        out.append((f"plants/E1/{gw}/telemetry", json.dumps({"readings": readings}).encode(), now))
    return out


def _service(data_dir: Path, clock: FakeClock, influx_url: str | None = None) -> Service:
    """A service on SQLite files, or with ``influx_url`` on InfluxDB (a real victoria-metrics)."""
    cfg = data_dir.parent / f"{data_dir.name}.toml"
    cfg.write_text(CONFIG)
    store: dict[str, Any] = {} if influx_url is None else {"store": "influx", "influx_url": influx_url,
                                                           "influx_token": "t"}
    return Service(Settings(data_dir=data_dir, config=cfg, store_writer="inline", **store), clock=clock)


def _run_around_a_snapshot(svc: Service, clock: FakeClock, at_s: int, end_s: int) -> None:
    """Seconds ``[0, at_s)``, the engine snapshot, then ``[at_s, end_s)`` (seeds 1 and 101)."""
    _run([svc], clock, range(0, at_s), 1)
    svc.snapshot_engine()
    _run([svc], clock, range(at_s, end_s), 101)


def _crashed(data_dir: Path, clock: FakeClock, at_s: int, end_s: int) -> Service:
    """A service run around a snapshot at ``at_s`` up to ``end_s``, then abandoned as by a kill."""
    svc = _service(data_dir, clock)
    try:
        _run_around_a_snapshot(svc, clock, at_s, end_s)
    finally:
        _abandon(svc)
    return svc


def _abandon(svc: Service) -> None:
    """What a kill -9 leaves: no stop(), no final snapshot; only the file handles go."""
    svc.pipeline.close()
    svc.readings.close()
    svc.alarms.close()


def _run(services: list[Service], clock: FakeClock, seconds: range, seed: int, *,
         offline_at: int | None = None, online_at: int | None = None) -> None:
    """Feed each second's messages to every service (same rng stream), then tick them."""
    rng = np.random.default_rng(seed)
    offline: set[str] = set()
    for t_s in seconds:
        clock.now = T0 + t_s * 1000
        msgs = _messages(t_s, rng, offline)
        if t_s == offline_at:
            msgs.append(("plants/E1/GW2/status", b"offline", clock()))
            offline.add("GW2")
        if t_s == online_at:
            msgs.append(("plants/E1/GW2/status", b"online", clock()))
            offline.discard("GW2")
        for svc in services:
            svc.pipeline.process(msgs)
            svc.tick()


def _alarms(svc: Service) -> list[tuple[Any, ...]]:
    return sorted((a.sensor_id, a.rule, a.level, a.status, a.raised_at, a.peak_level)
                  for a in svc.alarms.list_alarms(limit=10_000))


def _events(svc: Service) -> list[tuple[Any, ...]]:
    out = []
    for a in svc.alarms.list_alarms(limit=10_000):
        out += [(a.sensor_id, a.rule, e.type, e.level, e.ts_ms) for e in svc.alarms.alarm_events(a.id)]
    return sorted(out)


def _state(svc: Service) -> dict[str, np.ndarray[Any, Any]]:
    return {k: v for k, v in svc.engine.snapshot().items() if k != "clock"}


@pytest.mark.parametrize(("seed", "store"), [(1, "sqlite"), (2, "sqlite"), (1, "influx")])
async def test_a_crash_after_the_snapshot_replays_stored_readings_and_continues_as_if_never_stopped(
        tmp_path: Path, seed: int, store: str, request: pytest.FixtureRequest) -> None:
    """With InfluxDB the replay comes from the store's local journal (influx-replay.sqlite3)."""
    clock = FakeClock(T0)
    ref = _service(tmp_path / "ref", clock)      # never stops
    crashed = _service(tmp_path / "crashed", clock,
                       request.getfixturevalue("vmetrics").url if store == "influx" else None)
    try:
        _run([ref, crashed], clock, range(0, 60), seed)
        crashed.snapshot_engine()  # the last restore point before the crash
        if store == "influx":  # the journal dropped what the snapshot holds: all but its newest batch
            assert isinstance(crashed.readings, InfluxReadingStore)
            assert sum(len(p) for p in crashed.readings.readings_after(0)) == 5  # of 300 readings
        # after it: GT-1 crosses 50 %LEL (red timer running), GT-2 reaches stage 2, GW2 goes offline
        _run([ref, crashed], clock, range(60, 160), seed + 100, offline_at=130)
        assert ref.engine.level(ref.registry.row_of("E1", "GT-1"), "high") == Level.RED
        # kill -9: no stop(), no final snapshot; a new service opens the same files 5 s later
        clock.now = T0 + 165_000
        restarted = Service(crashed.settings, clock=clock)
        try:
            ref.tick()
            restarted.tick()
            a, b = _state(ref), _state(restarted)
            assert a.keys() == b.keys()
            for k in a:
                if k == "s.seen_ms":
                    # the deadman reference: replay evaluates whole stored pieces at their newest
                    # receive time, and the restart grace then moves it over the 6 s of downtime
                    assert np.all(b[k] >= a[k]), k
                    assert np.all(b[k] <= T0 + 165_000), k
                else:
                    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            assert _alarms(restarted) == _alarms(ref)
            # the replayed gateway status stays logged until a snapshot holds it, then goes
            assert [ev[1:3] for ev in json.loads(restarted.alarms.load_snapshot("gateway_log") or b"[]")] == [
                ["GW2", False]]
            restarted.snapshot_engine()
            assert json.loads(restarted.alarms.load_snapshot("gateway_log") or b"[]") == []
            # and from here on both raise, escalate and clear exactly alike
            _run([ref, restarted], clock, range(165, 260), seed + 200, online_at=200)
            assert _alarms(restarted) == _alarms(ref)
            assert _events(restarted) == _events(ref)
            levels = {a.rule for a in ref.alarms.list_alarms(limit=10_000)}
            assert {"high", "area_vote", "gateway_offline"} <= levels, levels  # the scenario exercised them
        finally:
            await restarted.stop()
    finally:
        await ref.stop()
        _abandon(crashed)


async def test_the_snapshot_alone_would_have_lost_the_running_red_timer(tmp_path: Path) -> None:
    """Control for the test above: what came after the snapshot is only in the replay."""
    clock = FakeClock(T0)
    crashed = _service(tmp_path / "crashed", clock)
    try:
        _run_around_a_snapshot(crashed, clock, 60, 160)
        row = crashed.registry.row_of("E1", "GT-1")
        engine = AlarmEngine(crashed.registry.sensors, crashed.registry.enterprises)
        with np.load(crashed.engine_snapshot_path, allow_pickle=False) as npz:
            engine.restore({k: npz[k] for k in npz.files if k not in (REPLAY_MARK, REPLAY_SOURCE)})
        assert engine.level(row, "high") == Level.YELLOW  # at the snapshot GT-1 was at 30 %LEL
        clock.now = T0 + 165_000
        restarted = Service(crashed.settings, clock=clock)
        try:
            assert restarted.engine.level(row, "high") == Level.RED  # replayed: orange at 72 s, red held from 132 s
        finally:
            await restarted.stop()
    finally:
        _abandon(crashed)


async def test_the_ticker_writes_the_snapshot_off_the_event_loop_and_keeps_later_gateway_statuses(
        tmp_path: Path) -> None:
    """The periodic snapshot is copied on the loop and written by a worker thread; a gateway
    status that arrives while it is being written stays in the log for the next one."""
    clock = FakeClock(T0)
    svc = _service(tmp_path / "svc", clock)
    try:
        _run([svc], clock, range(0, 5), 1)
        svc.on_gateway_status("E1", "GW2", False, clock())
        write = asyncio.create_task(svc.snapshot_engine_async())
        await asyncio.sleep(0)  # one loop turn: the task has copied the state and handed it to the thread
        assert not write.done()
        svc.on_gateway_status("E1", "GW2", True, clock() + 1)  # while the file is being written
        await write
        assert svc.engine_snapshot_path.exists()
        assert not svc.engine_snapshot_path.with_name("engine.npz.tmp").exists()
        logged = json.loads(svc.alarms.load_snapshot("gateway_log") or b"[]")
        assert [(e[1], e[2]) for e in logged] == [("GW2", True)]
    finally:
        await svc.stop()


async def test_a_stored_piece_that_cannot_be_replayed_does_not_keep_the_service_down(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A corrupt chunk after the snapshot (here: a timestamp column cut short) is logged and
    skipped; the service starts with the snapshot's state and serves."""
    import sqlite3

    clock = FakeClock(T0)
    crashed = _crashed(tmp_path / "crashed", clock, 10, 20)
    with sqlite3.connect(crashed.settings.data_dir / "readings.sqlite3") as db:
        db.execute("UPDATE chunks SET ts = x'00' WHERE id = (SELECT max(id) FROM chunks)")
    clock.now = T0 + 25_000
    restarted = Service(crashed.settings, clock=clock)
    try:
        assert "catch-up: reading the store after the snapshot failed" in caplog.text
        assert restarted.engine.level(restarted.registry.row_of("E1", "GT-1"), "high") == Level.NONE
        restarted.pipeline.process(_messages(25, np.random.default_rng(3), set()))  # and it evaluates
        assert restarted.engine.snapshot()["s.last_ts"][restarted.registry.row_of("E1", "GT-1")] == T0 + 25_000
    finally:
        await restarted.stop()


async def test_a_data_directory_with_the_engine_state_in_sqlite_restores_and_moves_to_the_file(
        tmp_path: Path) -> None:
    """Versions before engine.npz kept the engine state as a row of alarms.sqlite3: it is
    restored from there once, then emptied when the first engine.npz is written."""
    import io

    clock = FakeClock(T0)
    old = _service(tmp_path / "svc", clock)
    _run([old], clock, range(0, 80), 1)  # GT-1 reaches orange (50 %LEL at 72 s)
    row = old.registry.row_of("E1", "GT-1")
    assert old.engine.level(row, "high") == Level.ORANGE
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **old.engine.snapshot())  # the old format: no replay mark
    old.alarms.save_snapshot("engine", buf.getvalue())
    _abandon(old)
    old.engine_snapshot_path.unlink(missing_ok=True)

    svc = Service(old.settings, clock=clock)
    try:
        assert svc.engine.level(row, "high") == Level.ORANGE  # restored from the SQLite row
        svc.snapshot_engine()
        assert svc.engine_snapshot_path.exists()
        assert svc.alarms.load_snapshot("engine") == b""
    finally:
        await svc.stop()
    again = Service(old.settings, clock=clock)
    try:
        assert again.engine.level(row, "high") == Level.ORANGE  # now from engine.npz
    finally:
        await again.stop()


async def test_a_snapshot_taken_over_another_store_replays_nothing(
        tmp_path: Path, vmetrics: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The replay mark counts chunks of one file: after switching the backend (SQLite to
    InfluxDB) the new store's journal ids mean something else, so the service starts from the
    snapshot alone and says so."""
    clock = FakeClock(T0)
    crashed = _crashed(tmp_path / "svc", clock, 60, 160)
    row = crashed.registry.row_of("E1", "GT-1")
    clock.now = T0 + 165_000
    switched = _service(tmp_path / "svc", clock, vmetrics.url)
    try:
        assert "counts chunks of 'readings.sqlite3', the store now is 'influx-replay.sqlite3'" in caplog.text
        assert switched.engine.level(row, "high") == Level.YELLOW  # the snapshot's state, nothing replayed
    finally:
        await switched.stop()
