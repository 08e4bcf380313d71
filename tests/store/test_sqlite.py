"""SQLite stores against real database files: round trips, redelivery, restart, threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.model import Alarm, AlarmEvent
from ingest.store import AggRow, ReadingRow, StoreError, UnregisteredSensor, open_sqlite
from ingest.store.sqlite import SQLiteAlarmStore, SQLiteReadingStore
from plantwatch.domain import AlarmStatus, Level
from tests.store._util import grid_batch, make_batch

T0 = 1_795_459_488_000


@pytest.fixture
def rstore(tmp_path: Path) -> Iterator[SQLiteReadingStore]:
    s = SQLiteReadingStore(tmp_path / "readings.sqlite3")
    yield s
    s.close()


@pytest.fixture
def astore(tmp_path: Path) -> Iterator[SQLiteAlarmStore]:
    s = SQLiteAlarmStore(tmp_path / "alarms.sqlite3")
    yield s
    s.close()


def test_readings_round_trip_every_value(rstore: SQLiteReadingStore) -> None:
    b = grid_batch(20, 50, T0)
    rstore.write_readings(b)
    for i in range(20):
        sid = f"S-{i:04d}"
        rows = rstore.query_readings("E1", sid, T0, T0 + 50_000, limit=1000)
        mask = b.sensor_id == sid
        assert rows == [ReadingRow(int(t), float(v), int(s)) for t, v, s in
                        zip(b.ts_ms[mask], b.value[mask], b.ts_source[mask], strict=True)]


def test_query_range_is_half_open_ordered_and_limited(rstore: SQLiteReadingStore) -> None:
    # written out of order on purpose
    ts = [T0 + 3000, T0, T0 + 1000, T0 + 2000]
    rstore.write_readings(make_batch(["E"] * 4, ["D"] * 4, ["S"] * 4, ts, [3.0, 0.0, 1.0, 2.0], rows=[0] * 4))
    got = rstore.query_readings("E", "S", T0 + 1000, T0 + 3000, limit=10)
    assert [r.ts_ms for r in got] == [T0 + 1000, T0 + 2000]
    assert [r.value for r in rstore.query_readings("E", "S", T0, T0 + 10_000, limit=2)] == [0.0, 1.0]
    assert rstore.query_readings("E", "nope", T0, T0 + 10_000) == []
    assert rstore.query_readings("other", "S", T0, T0 + 10_000) == []


def test_aggregate_per_epoch_aligned_window(rstore: SQLiteReadingStore) -> None:
    base = (T0 // 60_000) * 60_000
    ts = [base + 1_000, base + 30_000, base + 59_999, base + 60_000, base + 125_000]
    vals = [1.0, 2.0, 6.0, 10.0, -4.0]
    rstore.write_readings(make_batch(["E"] * 5, ["D"] * 5, ["S"] * 5, ts, vals, rows=[0] * 5))
    got = rstore.query_aggregate("E", "S", base, base + 180_000, 60_000)
    assert got == [AggRow(base, 3.0, 1.0, 6.0, 3), AggRow(base + 60_000, 10.0, 10.0, 10.0, 1),
                   AggRow(base + 120_000, -4.0, -4.0, -4.0, 1)]
    # the range cuts readings, not windows: the window start stays aligned
    assert rstore.query_aggregate("E", "S", base + 20_000, base + 60_000, 60_000) == [
        AggRow(base, 4.0, 2.0, 6.0, 2)]
    with pytest.raises(StoreError):
        rstore.query_aggregate("E", "S", base, base + 1, 0)


def test_redelivery_is_harmless(rstore: SQLiteReadingStore) -> None:
    b = grid_batch(5, 10, T0)
    rstore.write_readings(b)
    rstore.write_readings(b)  # the broker redelivers the same messages
    rstore.write_readings(b.take(np.arange(0, len(b), 2)))
    for i in range(5):
        rows = rstore.query_readings("E1", f"S-{i:04d}", T0, T0 + 10**6)
        assert len(rows) == 10
        assert len({r.ts_ms for r in rows}) == 10


def test_same_timestamp_different_value_keeps_first(rstore: SQLiteReadingStore) -> None:
    rstore.write_readings(make_batch(["E"], ["D"], ["S"], [T0], [1.5], rows=[0]))
    rstore.write_readings(make_batch(["E"], ["D"], ["S"], [T0], [9.5], rows=[0]))
    assert rstore.query_readings("E", "S", T0, T0 + 1) == [ReadingRow(T0, 1.5, 0)]


def test_unregistered_sensors_listed_with_exact_counts(rstore: SQLiteReadingStore) -> None:
    b = make_batch(["E", "E", "E", "E", "X"], ["D1", "D1", "D1", "D2", "D9"], ["A", "U1", "U1", "U2", "U1"],
                   [T0, T0, T0 + 1000, T0, T0], [1.0, 2.0, 3.0, 4.0, 5.0], rows=[0, -1, -1, -1, -1],
                   received_ms=[T0 + 10, T0 + 10, T0 + 1010, T0 + 20, T0 + 30])
    rstore.write_readings(b)
    rstore.write_readings(b)  # redelivery: counted once
    rstore.write_readings(make_batch(["E"], ["D1"], ["U1"], [T0 + 2000], [7.0], received_ms=[T0 + 2050]))
    assert rstore.unregistered_sensors() == [
        UnregisteredSensor("E", "D1", "U1", T0 + 10, T0 + 2050, 3),
        UnregisteredSensor("E", "D2", "U2", T0 + 20, T0 + 20, 1),
        UnregisteredSensor("X", "D9", "U1", T0 + 30, T0 + 30, 1),
    ]
    # their readings are stored, not dropped
    assert [r.value for r in rstore.query_readings("E", "U1", T0, T0 + 10_000)] == [2.0, 3.0, 7.0]


def test_readings_survive_reopen(tmp_path: Path) -> None:
    s = SQLiteReadingStore(tmp_path / "r.sqlite3")
    s.write_readings(grid_batch(3, 4, T0))
    s.close()
    s2 = SQLiteReadingStore(tmp_path / "r.sqlite3")
    try:
        assert len(s2.query_readings("E1", "S-0002", T0, T0 + 10**6)) == 4
        s2.write_readings(grid_batch(3, 4, T0))  # same series ids reused after restart
        assert len(s2.query_readings("E1", "S-0002", T0, T0 + 10**6)) == 4
    finally:
        s2.close()


def test_reads_from_other_threads_during_writes(rstore: SQLiteReadingStore) -> None:
    rstore.write_readings(grid_batch(2, 10, T0))
    errors: list[BaseException] = []
    counts: list[int] = []

    def reader() -> None:
        try:
            for _ in range(20):
                counts.append(len(rstore.query_readings("E1", "S-0000", T0, T0 + 10**9, limit=10**6)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for k in range(1, 10):
        rstore.write_readings(grid_batch(2, 10, T0 + k * 10_000))
    for t in threads:
        t.join()
    assert errors == []
    assert all(10 <= c <= 100 and c % 10 == 0 for c in counts)  # whole transactions only


# -- alarms -----------------------------------------------------------------------------


def _alarm(i: int, *, ent: str = "E1", level: Level = Level.YELLOW, status: AlarmStatus = AlarmStatus.ACTIVE,
           t: int = T0) -> Alarm:
    return Alarm(id=i, enterprise_id=ent, sensor_id=f"GT-{i}", device_id="GW", area="tank farm", kind="gas.combustible",
                 rule="high", level=level, status=status, value=30.5, raised_at=t, updated_at=t,
                 peak_level=level, message="≥25 %LEL", extra={"threshold": 25.0, "n": [1, 2]})


def _event(a: Alarm, typ: str, prev: Level = Level.NONE, t: int = T0) -> AlarmEvent:
    return AlarmEvent(alarm_id=a.id, ts_ms=t, type=typ, level=a.level, prev_level=prev, status=a.status, value=a.value)


def test_alarm_and_events_round_trip(astore: SQLiteAlarmStore) -> None:
    a = _alarm(1)
    e1 = _event(a, "raised")
    astore.save_changes([(a, e1)])
    assert e1.id is not None
    a.level = Level.ORANGE
    a.peak_level = Level.ORANGE
    a.updated_at = T0 + 5000
    e2 = _event(a, "escalated", Level.YELLOW, T0 + 5000)
    a2 = _alarm(2)
    e3 = _event(a2, "raised")
    astore.save_changes([(a, e2), (a2, e3)])
    assert e1.id < e2.id < e3.id  # type: ignore[operator]
    assert astore.get_alarm(1) == a
    assert astore.get_alarm(99) is None
    a.status = AlarmStatus.ACKNOWLEDGED
    a.acked_by, a.acked_at, a.ack_comment = "Wang Li", T0 + 9000, "on site"
    e4 = AlarmEvent(1, T0 + 9000, "acknowledged", Level.ORANGE, Level.ORANGE, AlarmStatus.ACKNOWLEDGED,
                    by="Wang Li", comment="on site")
    astore.save_changes([(a, e4)])
    got = astore.get_alarm(1)
    assert got == a
    assert got is not a
    assert astore.alarm_events(1) == [e1, e2, e4]
    assert astore.alarm_events(2) == [e3]
    assert astore.max_alarm_id() == 2


def test_list_alarms_filters_and_paging(astore: SQLiteAlarmStore) -> None:
    changes = []
    for i in range(1, 11):
        a = _alarm(i, ent="E1" if i % 2 else "E2", level=Level(1 + i % 4),
                   status=AlarmStatus.CLOSED if i <= 3 else AlarmStatus.ACTIVE)
        changes.append((a, _event(a, "raised")))
    astore.save_changes(changes)
    assert [a.id for a in astore.list_alarms()] == list(range(10, 0, -1))
    assert [a.id for a in astore.list_alarms(enterprise_id="E2")] == [10, 8, 6, 4, 2]
    assert [a.id for a in astore.list_alarms(status=AlarmStatus.CLOSED)] == [3, 2, 1]
    assert [a.id for a in astore.list_alarms(level=Level.RED)] == [7, 3]
    assert [a.id for a in astore.list_alarms(enterprise_id="E1", status=AlarmStatus.ACTIVE, level=Level.RED)] == [7]
    assert [a.id for a in astore.list_alarms(limit=3, offset=2)] == [8, 7, 6]
    assert [a.id for a in astore.load_open_alarms()] == list(range(4, 11))


def test_empty_alarm_store(astore: SQLiteAlarmStore) -> None:
    assert astore.max_alarm_id() == 0
    assert astore.list_alarms() == []
    assert astore.load_open_alarms() == []
    assert astore.load_snapshot("engine") is None
    astore.save_changes([])


def test_failed_save_assigns_no_ids_and_stores_nothing(astore: SQLiteAlarmStore) -> None:
    a = _alarm(1)
    bad = _alarm(2)
    bad.extra = {"x": object()}  # not JSON-serialisable: fails inside the transaction
    e1, e2 = _event(a, "raised"), _event(bad, "raised")
    with pytest.raises(TypeError):
        astore.save_changes([(a, e1), (bad, e2)])
    assert e1.id is None
    assert e2.id is None
    assert astore.get_alarm(1) is None
    assert astore.alarm_events(1) == []


def test_snapshots_and_alarms_survive_restart(tmp_path: Path) -> None:
    readings, alarms = open_sqlite(tmp_path)
    blob = bytes(range(256)) * 100
    alarms.save_snapshot("engine", blob)
    alarms.save_snapshot("engine", blob + b"!")  # replaced, not appended
    a = _alarm(7)
    alarms.save_changes([(a, _event(a, "raised"))])
    readings.close()
    alarms.close()
    readings, alarms = open_sqlite(tmp_path)
    try:
        assert alarms.load_snapshot("engine") == blob + b"!"
        assert alarms.max_alarm_id() == 7
        assert alarms.load_open_alarms() == [a]
    finally:
        readings.close()
        alarms.close()
    assert (tmp_path / "readings.sqlite3").exists()
    assert (tmp_path / "alarms.sqlite3").exists()


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = SQLiteReadingStore(tmp_path / "r.sqlite3")
    s.close()
    with pytest.raises(StoreError) as ei:
        s.write_readings(grid_batch(1, 1, T0))
    assert ei.value.op == "write_readings"
    assert ei.value.store == "sqlite"


# -- chunked layout: buckets, dedup, compaction, against a reference model ---------------

H = 3_600_000


def test_queries_span_hour_buckets_and_windows_longer_than_an_hour(rstore: SQLiteReadingStore) -> None:
    base = (T0 // (4 * H)) * (4 * H)
    ts = [base + k * 600_000 for k in range(24)]  # every 10 min for 4 h: 4 hour buckets
    vals = [float(k) for k in range(24)]
    # written in three batches, the last one out of order
    rstore.write_readings(make_batch(["E"] * 8, ["D"] * 8, ["S"] * 8, ts[:8], vals[:8], rows=[0] * 8))
    rstore.write_readings(make_batch(["E"] * 8, ["D"] * 8, ["S"] * 8, ts[16:], vals[16:], rows=[0] * 8))
    rstore.write_readings(make_batch(["E"] * 8, ["D"] * 8, ["S"] * 8, ts[8:16][::-1], vals[8:16][::-1],
                                     rows=[0] * 8))
    got = rstore.query_readings("E", "S", base + 1, base + 4 * H)
    assert [r.value for r in got] == vals[1:]
    assert [r.value for r in rstore.query_readings("E", "S", base, base + 4 * H, limit=7)] == vals[:7]
    # a 2-hour window gathers two hour buckets; a 25-minute window crosses bucket borders
    assert rstore.query_aggregate("E", "S", base, base + 4 * H, 2 * H) == [
        AggRow(base, 5.5, 0.0, 11.0, 12), AggRow(base + 2 * H, 17.5, 12.0, 23.0, 12)]
    agg = rstore.query_aggregate("E", "S", base, base + 4 * H, 1_500_000)
    assert sum(a.count for a in agg) == 24
    assert all(a.start_ms % 1_500_000 == 0 for a in agg)


def test_compaction_keeps_answers_and_drops_duplicates(rstore: SQLiteReadingStore) -> None:
    batches = [grid_batch(5, 4, T0 + k * 4000, seed=k) for k in range(10)]
    for b in batches + batches[:4]:  # four redelivered batches
        rstore.write_readings(b)
    before = [rstore.query_readings("E1", f"S-{i:04d}", T0 - H, T0 + H) for i in range(5)]
    agg_before = rstore.query_aggregate("E1", "S-0003", T0 - H, T0 + H, 10_000)
    removed = rstore.compact(before_ms=T0 + 10 * H)
    assert removed > 0
    assert [rstore.query_readings("E1", f"S-{i:04d}", T0 - H, T0 + H) for i in range(5)] == before
    assert rstore.query_aggregate("E1", "S-0003", T0 - H, T0 + H, 10_000) == agg_before
    assert rstore.compact(before_ms=T0 + 10 * H) == 0  # idempotent
    assert all(len(rows) == 40 for rows in before)


def test_readings_after_a_mark_are_exactly_the_later_commits_in_commit_order(rstore: SQLiteReadingStore) -> None:
    assert rstore.replay_mark() == 0
    rstore.write_readings(grid_batch(4, 3, T0, seed=1))
    mark = rstore.replay_mark()
    later = [grid_batch(4, 3, T0 + 10_000 * (k + 1), seed=k + 2) for k in range(3)]
    for b in later:
        rstore.write_readings(b)
    parts = list(rstore.readings_after(mark, max_readings=10))
    assert [len(p) for p in parts] == [12, 12, 12]  # whole chunks (3 readings each) up to >= 10 readings
    assert parts[-1].mark == rstore.replay_mark()
    assert list(rstore.readings_after(parts[-1].mark)) == []
    got = [(p.keys[i], t, v, rx) for p in parts for i, t, v, rx in
           zip(p.series.tolist(), p.ts_ms.tolist(), p.value.tolist(), p.received_ms.tolist(), strict=True)]
    want = []
    for b in later:  # each commit's chunks: by sensor, then time
        o = np.lexsort((b.ts_ms, b.sensor_id.astype(str)))
        want += [(("E1", str(b.sensor_id[i])), int(b.ts_ms[i]), float(b.value[i]), int(b.received_ms[i])) for i in o]
    assert got == want
    assert sum(len(p) for p in rstore.readings_after(0)) == 48


def test_compaction_never_lowers_the_highest_chunk_id(rstore: SQLiteReadingStore) -> None:
    """The replay mark relies on it: a chunk committed after a mark must get a higher id,
    even when compaction deleted and rewrote the chunk that held the highest one."""
    old = grid_batch(2, 3, T0 - 3 * H, seed=1)
    rstore.write_readings(old)
    rstore.write_readings(old)  # the newest chunks are in an old hour: compaction rewrites them
    mark = rstore.replay_mark()
    assert rstore.compact(before_ms=T0) == 2
    assert rstore.replay_mark() == mark
    rstore.write_readings(grid_batch(2, 1, T0, seed=2))
    assert [len(p) for p in rstore.readings_after(mark)] == [2]


def _reference(writes: list[list[tuple[int, float]]]) -> dict[int, float]:
    first: dict[int, float] = {}
    for w in writes:
        for t, v in w:
            first.setdefault(t, v)
    return first


_reading = st.tuples(st.integers(T0 - 3 * H, T0 + 3 * H), st.integers(-1000, 1000).map(lambda x: x / 4))


@settings(max_examples=40, deadline=None)
@given(writes=st.lists(st.lists(_reading, min_size=1, max_size=30), min_size=1, max_size=6),
       start=st.integers(T0 - 4 * H, T0 + 4 * H), span=st.integers(1, 8 * H),
       window=st.sampled_from([1, 1000, 60_000, 1_500_000, H, 5 * H]), limit=st.integers(1, 200))
def test_matches_reference_model(tmp_path_factory: pytest.TempPathFactory, writes: list[list[tuple[int, float]]],
                                 start: int, span: int, window: int, limit: int) -> None:
    store = SQLiteReadingStore(tmp_path_factory.mktemp("prop") / "r.sqlite3")
    try:
        for w in writes:
            n = len(w)
            store.write_readings(make_batch(["E"] * n, ["D"] * n, ["S"] * n, [t for t, _ in w], [v for _, v in w],
                                            rows=[0] * n))
        ref = _reference(writes)
        end = start + span
        inside = sorted((t, v) for t, v in ref.items() if start <= t < end)
        got = store.query_readings("E", "S", start, end, limit)
        assert [(r.ts_ms, r.value) for r in got] == inside[:limit]
        wins: dict[int, list[float]] = {}
        for t, v in inside:
            wins.setdefault(t - t % window, []).append(v)
        want = [(k, min(vs), max(vs), len(vs), sum(vs) / len(vs)) for k, vs in sorted(wins.items())]
        agg = store.query_aggregate("E", "S", start, end, window)
        assert [(a.start_ms, a.min, a.max, a.count) for a in agg] == [w[:4] for w in want]
        assert all(a.mean == pytest.approx(w[4]) for a, w in zip(agg, want, strict=True))
    finally:
        store.close()


def test_early_stopped_query_does_not_pin_an_old_snapshot(rstore: SQLiteReadingStore) -> None:
    rstore.write_readings(grid_batch(1, 50, T0))
    assert len(rstore.query_readings("E1", "S-0000", T0, T0 + 10 * H, limit=3)) == 3  # stops early
    rstore.write_readings(grid_batch(1, 50, T0 + 50_000))
    assert len(rstore.query_readings("E1", "S-0000", T0, T0 + 10 * H, limit=10**6)) == 100

