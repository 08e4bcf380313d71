"""An alarm storm through the service, with a real SQLite alarm store and a fake clock: more
engine transitions at once than ``STORM_SLICE`` are applied a slice per event-loop turn, the
most severe first, in order with everything after them, and never left out of a restore point
or a stop. ``STORM_SLICE`` is set to 10 here so that 60 sensors make a storm."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from alerts.lifecycle import InvalidTransition
from alerts.transitions import Transitions
from ingest.batch import BatchBuilder
from plantwatch import service as service_mod
from plantwatch.backlog import pair_key
from plantwatch.clock import FakeClock
from plantwatch.domain import AlarmStatus, Level, TsSource
from plantwatch.service import Service
from plantwatch.settings import Settings

T0 = 1_795_459_488_000
N = 60
SLICE = 10
YELLOW_VALUE, ORANGE_VALUE = 30.0, 60.0  # %LEL: gas.combustible yellow at 25, orange at 50
N_ORANGE = 20  # sensors GT-40 .. GT-59 go orange, the rest yellow
STORM_VALUES = [YELLOW_VALUE] * (N - N_ORANGE) + [ORANGE_VALUE] * N_ORANGE


def _config() -> str:
    parts = ['[[enterprise]]\nid = "E1"\n']
    for i in range(N):
        parts.append(f'[[sensor]]\nenterprise_id = "E1"\ndevice_id = "GW1"\nid = "GT-{i}"\n'
                     f'kind = "gas.combustible"\ninterval_s = 10\n')
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _small_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "STORM_SLICE", SLICE)


def _service(tmp_path: Path, clock: FakeClock) -> Service:
    cfg = tmp_path / "plantwatch.toml"
    if not cfg.exists():
        cfg.write_text(_config())
    return Service(Settings(data_dir=tmp_path / "data", config=cfg), clock=clock)


def _readings(svc: Service, ids: list[int], ts: int, values: list[float]) -> None:
    b = BatchBuilder()
    for i, v in zip(ids, values, strict=True):
        b.add("E1", "GW1", f"GT-{i}", ts, v, int(TsSource.READING), ts)
    batch = b.build()
    batch.row = np.array([svc.registry.row_of("E1", f"GT-{i}") for i in ids], np.int32)
    svc.on_readings(batch, ts)


def _storm(svc: Service, clock: FakeClock) -> None:
    """Every sensor quiet, then in one batch 40 of them yellow and 20 orange (60 high alarms;
    the rate of rise raises as many, yellow and blue)."""
    _readings(svc, list(range(N)), clock.now, [2.0] * N)
    _readings(svc, list(range(N)), clock.advance(10_000), STORM_VALUES)


def _high(svc: Service) -> dict[str, tuple[Level, AlarmStatus]]:
    return {a.sensor_id: (a.level, a.status) for a in svc.book.open_alarms() if a.rule == "high"}


async def _drain(svc: Service) -> int:
    """Let the loop run until the backlog is applied; returns how many turns another task got."""
    for turns in range(1000):
        if not svc._backlog:
            return turns
        await asyncio.sleep(0)
    raise AssertionError("the backlog did not drain in 1000 turns of the loop")


async def test_a_storm_is_applied_in_slices_most_severe_first(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    sub = svc.hub.subscribe()
    try:
        _storm(svc, clock)
        first = svc.book.open_alarms()
        assert len(first) == SLICE  # one slice at once, the rest waits
        assert {(a.rule, a.level) for a in first} == {("high", Level.ORANGE)}  # the most severe first
        waiting = svc.health()["alarm_backlog"]
        assert waiting >= N - SLICE  # 60 high alarms (and the rate rule's) less one slice
        assert svc.metrics.alarm_backlog._value.get() == waiting
        turns = await _drain(svc)
        assert turns >= waiting // SLICE  # the loop ran between the slices
        assert len(svc.book.open_alarms()) == SLICE + waiting
        done = _high(svc)
        assert len(done) == N
        assert sum(lv is Level.ORANGE for lv, _ in done.values()) == N_ORANGE
        assert sum(lv is Level.YELLOW for lv, _ in done.values()) == N - N_ORANGE
        stored = svc.alarms.list_alarms(status=AlarmStatus.ACTIVE)
        assert {a.sensor_id for a in stored if a.rule == "high"} == {f"GT-{i}" for i in range(N)}
        assert svc.health()["alarm_backlog"] == 0
        open_yellow = sum(a.level is Level.YELLOW for a in svc.book.open_alarms())
        assert svc.metrics.alarms_open.labels("yellow")._value.get() == open_yellow  # refreshed at the end
        got = []
        while not sub.queue.empty():
            got.append(sub.queue.get_nowait())
        raised = [m["alarm"]["sensor_id"] for m in got if m is not None and m["event"]["type"] == "raised"]
        assert len(raised) == SLICE + waiting
        assert set(raised[:N_ORANGE]) == {f"GT-{i}" for i in range(N - N_ORANGE, N)}  # pushed in that order
    finally:
        await svc.stop()


async def test_changes_after_a_storm_wait_behind_it(tmp_path: Path) -> None:
    """A reading that ends a yellow alarm still in the backlog is applied after its raise: the
    alarm is raised, then cleared (applied first, it would find nothing to clear and the
    raise after it would leave a yellow alarm open for a sensor back at normal)."""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        assert "GT-0" not in _high(svc)  # yellow: in the last slice
        _readings(svc, [0], clock.advance(1000), [2.0])
        assert "GT-0" not in _high(svc)
        await _drain(svc)
        (alarm,) = [a for a in svc.book.open_alarms() if a.sensor_id == "GT-0" and a.rule == "high"]
        assert alarm.status is AlarmStatus.CLEARED
        assert [e.type for e in svc.alarms.alarm_events(alarm.id)] == ["raised", "cleared"]
    finally:
        await svc.stop()


async def test_a_snapshot_or_a_hold_change_applies_the_backlog_first(tmp_path: Path) -> None:
    """A restore point holds engine levels only with their alarms in the book; a hold change
    acts on a book that has seen everything before it."""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        assert svc._backlog
        svc.snapshot_engine()
        assert not svc._backlog
        assert len(_high(svc)) == N

        _readings(svc, list(range(N)), clock.advance(10_000), [2.0] * N)  # all back to normal: 60 clears
        assert svc._backlog
        svc.take_out_of_service("E1", "GT-0", "Li Wei", "calibration", clock.now + 3_600_000)
        assert not svc._backlog
        assert all(st is AlarmStatus.CLEARED for _, st in _high(svc).values())
    finally:
        await svc.stop()


async def test_stop_applies_and_stores_the_backlog(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    _storm(svc, clock)
    assert svc._backlog
    await svc.stop()
    again = _service(tmp_path, clock)
    try:
        assert len(_high(again)) == N
        assert len({a.id for a in again.alarms.list_alarms() if a.rule == "high"}) == N
    finally:
        await again.stop()


def test_without_an_event_loop_a_storm_is_applied_at_once(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        assert not svc._backlog
        assert len(_high(svc)) == N
    finally:
        asyncio.run(svc.stop())


def test_most_severe_first_keeps_each_pairs_sequence() -> None:
    tr = Transitions(
        row=np.array([0, 1, 2, 1, 3, 0], np.int32),
        rule=np.array([0, 0, 0, 0, 1, 0], np.int16),
        level=np.array([1, 2, 4, 0, 3, 4], np.int8),
        prev=np.zeros(6, np.int8),
        value=np.arange(6, dtype=np.float64),
        ts_ms=np.arange(6, dtype=np.int64),
    )
    out = tr.most_severe_first()
    # pairs by their highest level here: (0,0) and (2,0) reach red (in first-seen order: row 0's
    # sequence 1 -> 4 keeps its order), then (3,1) orange, then (1,0) yellow -> none
    assert out.value.tolist() == [0.0, 2.0, 5.0, 4.0, 1.0, 3.0]
    assert out.row.tolist() == [0, 2, 0, 3, 1, 1]
    assert len(Transitions.empty().most_severe_first()) == 0


async def test_a_removal_during_a_storm_leaves_no_active_alarm_on_the_removed_sensor(tmp_path: Path) -> None:
    """GT-0's raise still waits when it is removed: applied first, then cleared by the removal
    (applied after the removal's clears, it would open an alarm on a sensor that is gone)."""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        assert "GT-0" not in _high(svc)
        svc.remove_sensor("E1", "GT-0", "Li Wei", "replaced")
        await _drain(svc)
        left = {a.rule: a.status for a in svc.book.open_alarms() if a.sensor_id == "GT-0"}
        assert all(st is AlarmStatus.CLEARED for st in left.values()), left
        assert left["high"] is AlarmStatus.CLEARED
    finally:
        await svc.stop()


async def test_a_staff_action_waits_for_its_own_alarms_changes(tmp_path: Path) -> None:
    """GT-0's high alarm has cleared; a new storm reactivates it, still in the backlog when
    staff close it. The reactivation is applied first, so the close is refused (the condition
    is back), and no second alarm is raised for GT-0 afterwards."""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        await _drain(svc)
        _readings(svc, list(range(N)), clock.advance(10_000), [2.0] * N)  # every alarm clears
        await _drain(svc)
        (cleared,) = [a for a in svc.book.open_alarms() if a.sensor_id == "GT-0" and a.rule == "high"]
        assert cleared.status is AlarmStatus.CLEARED
        _readings(svc, list(range(N)), clock.advance(10_000), STORM_VALUES)
        high = svc.engine.rule_names.index("high")
        assert pair_key(svc.registry.row_of("E1", "GT-0"), high) in svc._backlog.pending_keys()  # still waiting
        with pytest.raises(InvalidTransition, match="still present"):
            svc.close_alarm(cleared.id, "Li Wei", "checked on site")
        await _drain(svc)
        mine = [a for a in svc.book.open_alarms() if a.sensor_id == "GT-0" and a.rule == "high"]
        assert [(a.id, a.status, a.level) for a in mine] == [(cleared.id, AlarmStatus.ACTIVE, Level.YELLOW)]
    finally:
        await svc.stop()


async def test_no_overdue_escalation_for_an_alarm_whose_clear_still_waits(tmp_path: Path) -> None:
    """The yellow alarms' one-hour acknowledgement deadline passes while the readings that
    clear them are still in the backlog: their timers wait for those changes (then the alarms
    are cleared and nothing is overdue), instead of escalating alarms already over. (The
    orange ones turn red after 60 s and are overdue long before: not what this is about.)"""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        await _drain(svc)
        raised_at = clock.now
        while clock.now < raised_at + 59 * 60_000 + 50_000:  # readings keep coming, same levels
            wobble = 0.01 * (clock.now // 10_000 % 3)
            _readings(svc, list(range(N)), clock.advance(10_000), [v + wobble for v in STORM_VALUES])
            svc.tick(clock.now)
            await _drain(svc)  # (the rate alarms clear as the rise stops: a small storm of their own)
        _readings(svc, list(range(N)), clock.advance(5_000), [2.0] * N)  # all back to normal: a storm of clears
        yellow = {f"GT-{i}" for i in range(N - N_ORANGE)}
        waiting = svc._backlog.pending_keys()
        high = svc.engine.rule_names.index("high")
        assert sum(pair_key(svc.registry.row_of("E1", sid), high) in waiting for sid in yellow) >= 10  # clears wait
        svc.tick(clock.advance(10_000))  # past the yellow deadline
        await _drain(svc)
        svc.tick(clock.advance(1000))
        mine = [a for a in svc.alarms.list_alarms() if a.rule == "high" and a.sensor_id in yellow]
        assert len(mine) == N - N_ORANGE
        assert all("overdue" not in [e.type for e in svc.alarms.alarm_events(a.id)] for a in mine)
        assert all((a.status, a.tier) == (AlarmStatus.CLEARED, 0) for a in mine)
    finally:
        await svc.stop()


async def test_the_periodic_restore_point_is_put_off_by_a_storm_at_most_limit_ticks(tmp_path: Path) -> None:
    """Put off while the backlog drains (a capture would apply the rest at once), but taken
    after ``limit`` ticks even if it never empties (a steady flood)."""
    clock = FakeClock(T0)
    svc = _service(tmp_path, clock)
    try:
        _storm(svc, clock)
        assert svc._backlog
        owed: int | None = 0
        for k in range(3):
            owed = svc._periodic_snapshot(owed, 3)  # type: ignore[arg-type]
            assert owed == k + 1
            assert svc._backlog
        assert svc._periodic_snapshot(3, 3) is None  # taken: the backlog applied first
        assert not svc._backlog
        assert svc._snap_task is not None
        await svc._snap_task
        assert svc.engine_snapshot_path.exists()
    finally:
        await svc.stop()
