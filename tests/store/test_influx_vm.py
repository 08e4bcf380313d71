"""The InfluxDB backend against a real line-protocol server (Debian's victoria-metrics).

VictoriaMetrics maps measurement ``reading`` + field ``value`` to the metric
``reading_value`` with the tags as labels; every value is read back via /api/v1/export.
It keeps duplicate samples (no dedup flag), so "exactly once" below is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from alerts.model import Alarm, AlarmEvent
from ingest.batch import ReadingBatch
from ingest.store import InfluxReadingStore, MirroredAlarmStore, SQLiteReadingStore, open_stores
from ingest.store.base import BufferFull
from ingest.store.buffer import Spool
from ingest.store.influx import Backoff, InfluxHttp, LineBuilder
from ingest.store.sqlite import ReplayJournal
from ingest.store.writer import ThreadWriter
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.settings import Settings
from tests.servers import VictoriaMetrics
from tests.store._util import grid_batch, make_batch
from tests.store.conftest import RestartableVM, samples_by_series, vm_export

pytestmark = pytest.mark.e2e

T0 = 1_795_459_488_000
FAST = Backoff(base_s=0.05, factor=2.0, cap_s=0.25)


def _expected(batches: list[ReadingBatch]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for b in batches:
        for e, s, t, v in zip(b.enterprise_id, b.sensor_id, b.ts_ms.tolist(), b.value.tolist(), strict=True):
            out.setdefault((e, s), []).append((t, v))
    for v in out.values():
        v.sort()
    return out


def _store(url: str, tmp: Path, *, background: bool, registry: Registry | None = None,
           max_bytes: int = 64 << 20) -> InfluxReadingStore:
    http = InfluxHttp(url, "token", "org", "bucket", timeout_ms=3000)
    return InfluxReadingStore(http, Spool(tmp / "spool", max_bytes), bucket="bucket", query=http.query,
                              builder=LineBuilder(registry=registry), backoff=FAST, background=background,
                              idle_poll_s=0.05)


def test_every_value_and_tag_reads_back(vmetrics: VictoriaMetrics, tmp_path: Path) -> None:
    reg = Registry()
    reg.upsert_enterprise(Enterprise("E1"))
    for i in range(40):
        reg.upsert_sensor(Sensor("E1", f"S-{i:04d}", "gas.combustible", device_id=f"GW-{i % 3}", area="tank farm,A=1"))
    store = _store(vmetrics.url, tmp_path, background=False, registry=reg)
    batches = [grid_batch(40, 25, T0 + k * 25_000, seed=k) for k in range(4)]
    odd = make_batch(["东方化工", "E 2"], ["网关 1", "D\\x"], ["GT=101", "s,1"], [T0, T0 + 7], [-0.001, 1e-5],
                     ts_source=[2, 1])
    for b in [*batches, odd]:
        store.write_readings(b)
    assert store.direct_writes == 5
    assert store.buffer_bytes == 0
    got = samples_by_series(vmetrics.url, "reading_value", T0 - 1000, T0 + 200_000)
    assert got == _expected([*batches, odd])
    # tags: kind/area from the registry, device from the batch, special characters intact
    series = vm_export(vmetrics.url, "reading_value", T0 - 1000, T0 + 200_000)
    labels = {(s["metric"]["enterprise"], s["metric"]["sensor"]): s["metric"] for s in series}
    assert labels[("E1", "S-0004")] == {"__name__": "reading_value", "enterprise": "E1", "sensor": "S-0004",
                                        "device": "GW-1", "kind": "gas.combustible", "area": "tank farm,A=1"}
    assert labels[("东方化工", "GT=101")]["device"] == "网关 1"
    assert labels[("E 2", "s,1")]["device"] == "D\\x"
    assert "kind" not in labels[("E 2", "s,1")]  # unregistered: no kind/area tags
    src = samples_by_series(vmetrics.url, "reading_ts_source", T0 - 1000, T0 + 200_000)
    assert src[("E 2", "s,1")] == [(T0 + 7, 1.0)]
    store.close()


def test_outage_mid_stream_every_reading_exactly_once(vm_restartable: RestartableVM, tmp_path: Path) -> None:
    vm = vm_restartable
    store = _store(vm.url, tmp_path, background=True)
    batches = [grid_batch(50, 10, T0 + k * 10_000, seed=k) for k in range(30)]
    for k, b in enumerate(batches):
        if k == 10:
            vm.stop()  # the server dies mid-stream
        if k == 20:
            vm.start()  # and comes back on the same port with the same data
        store.write_readings(b)
    assert store.spooled_writes >= 10  # the outage really was bridged by the spool
    assert store.flush(timeout_s=60)
    assert store.buffer_bytes == 0
    got = samples_by_series(vm.url, "reading_value", T0 - 1000, T0 + 400_000)
    want = _expected(batches)
    assert sum(len(v) for v in got.values()) == 30 * 500  # no duplicates, no gaps
    assert got == want
    store.close()


def test_new_writer_drains_the_old_spool(vm_restartable: RestartableVM, tmp_path: Path) -> None:
    vm = vm_restartable
    vm.stop()
    first = _store(vm.url, tmp_path, background=False)
    batches = [grid_batch(20, 5, T0 + k * 5_000, seed=k) for k in range(6)]
    for b in batches:
        first.write_readings(b)  # server down: all spooled and fsynced
    held = first.buffer_bytes
    assert first.spooled_writes == 6
    first.close()  # the service stops (or dies) with a full spool
    vm.start()
    second = _store(vm.url, tmp_path, background=False)
    assert second.buffer_bytes == held
    assert second.drain() == 6
    got = samples_by_series(vm.url, "reading_value", T0 - 1000, T0 + 100_000)
    assert got == _expected(batches)
    second.close()


def test_full_spool_during_outage_refuses_and_keeps_what_it_took(vm_restartable: RestartableVM,
                                                                   tmp_path: Path) -> None:
    from ingest.store.base import BufferFull

    vm = vm_restartable
    vm.stop()
    store = _store(vm.url, tmp_path, background=False, max_bytes=40_000)
    accepted: list[ReadingBatch] = []
    with pytest.raises(BufferFull):  # noqa: PT012 - the refusal comes after an unknown number of batches
        for k in range(1000):
            b = grid_batch(20, 5, T0 + k * 5_000, seed=k)
            store.write_readings(b)
            accepted.append(b)
    assert store.buffer_near_full
    vm.start()
    assert store.drain() == len(accepted)
    assert samples_by_series(vm.url, "reading_value", T0 - 1000, T0 + 10**7) == _expected(accepted)
    store.close()


def test_open_stores_influx_mirrors_alarm_events(vmetrics: VictoriaMetrics, tmp_path: Path) -> None:
    settings = Settings(store="influx", influx_url=vmetrics.url, influx_token="t", data_dir=tmp_path / "data")
    readings, alarms = open_stores(settings, Registry())
    try:
        assert isinstance(readings, InfluxReadingStore)
        assert isinstance(alarms, MirroredAlarmStore)
        readings.write_readings(make_batch(["E"], ["D"], ["S"], [T0], [2.5], rows=[-1], received_ms=[T0 + 1]))
        assert [u.sensor_id for u in readings.unregistered_sensors()] == ["S"]
        a = Alarm(id=1, enterprise_id="E", sensor_id="S", device_id="D", area="", kind="gas.toxic", rule="high",
                  level=Level.RED, status=AlarmStatus.ACTIVE, value=99.0, raised_at=T0, updated_at=T0)
        ev = AlarmEvent(1, T0 + 5, "raised", Level.RED, Level.NONE, AlarmStatus.ACTIVE, value=99.0)
        alarms.save_changes([(a, ev)])
        assert alarms.get_alarm(1) == a  # the record lives in SQLite
        alarms.flush()  # the copy goes to InfluxDB from the mirror thread
        [s] = vm_export(vmetrics.url, "alarm_event_level_code", T0 - 1000, T0 + 1000)
        assert s["values"] == [4]
        assert s["timestamps"] == [T0 + 5]
        assert s["metric"]["type"] == "raised"
        assert samples_by_series(vmetrics.url, "reading_value", T0 - 1, T0 + 1) == {("E", "S"): [(T0, 2.5)]}
    finally:
        alarms.close()
        readings.close()
    assert (tmp_path / "data" / "alarms.sqlite3").exists()


def test_open_stores_default_is_sqlite(tmp_path: Path) -> None:
    readings, alarms = open_stores(Settings(data_dir=tmp_path))
    try:
        assert isinstance(readings, SQLiteReadingStore)
        readings.write_readings(make_batch(["E"], ["D"], ["S"], [T0], [1.0], rows=[0]))
        assert [r.value for r in readings.query_readings("E", "S", T0, T0 + 1)] == [1.0]
        assert alarms.max_alarm_id() == 0
    finally:
        readings.close()
        alarms.close()


class _Reports:
    """Completion reports of ThreadWriter jobs, awaitable by count."""

    def __init__(self) -> None:
        self.got: dict[object, tuple[BaseException | None, int]] = {}
        self._changed = asyncio.Event()

    def callback(self, key: object) -> Callable[[BaseException | None, float], None]:
        def done(err: BaseException | None, _seconds: float) -> None:
            self.got[key] = (err, threading.get_ident())
            self._changed.set()
        return done

    async def wait(self, n: int) -> None:
        while len(self.got) < n:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 10.0)


async def test_thread_writer_writes_jobs_off_the_loop_in_order_and_reports_on_the_loop(
        vmetrics: VictoriaMetrics, tmp_path: Path) -> None:
    """ThreadWriter (the service's InfluxDB writer): jobs submitted from the event loop are
    written by its thread (queued ones merged into one request) and reported back on the
    loop thread, in submission order; close() writes what is still queued."""
    store = _store(vmetrics.url, tmp_path, background=False)
    writes: list[tuple[int, int]] = []  # (thread, readings) of each write_readings call

    class Noting:  # the real store, noting which thread writes how much
        def write_readings(self, batch: ReadingBatch) -> None:
            writes.append((threading.get_ident(), len(batch)))
            store.write_readings(batch)

    writer = ThreadWriter(Noting(), merge_readings=250)
    reports = _Reports()
    batches = [grid_batch(5, 20, T0 + k * 100_000, seed=k) for k in range(8)]  # 100 readings each
    for k, b in enumerate(batches):
        writer.submit(b, reports.callback(k))
    assert writer.inflight == 800
    await reports.wait(8)
    writer.close()
    assert list(reports.got) == list(range(8))
    assert all(err is None and tid == threading.get_ident() for err, tid in reports.got.values())
    assert writer.inflight == 0
    assert writes
    assert all(tid != threading.get_ident() for tid, _ in writes)  # never on the loop thread
    assert sum(n for _, n in writes) == 800
    assert max(n for _, n in writes) <= 300  # merged up to 250 readings (plus the job that crosses it)
    assert samples_by_series(vmetrics.url, "reading_value", T0 - 1000, T0 + 10 * 100_000) == _expected(batches)
    store.close()


async def test_thread_writer_fails_every_job_merged_into_a_failed_write(tmp_path: Path) -> None:
    """A refused write (an outage spool that is full, the server down) fails every job it
    carried, so the pipeline leaves all their messages unacked; the next write is tried anew."""
    store = _store("http://127.0.0.1:9", tmp_path, background=False, max_bytes=8192)  # nothing listens on 9
    entered = threading.Event()

    class Entering:  # the real store, noting when the writer thread has taken a job
        def write_readings(self, batch: ReadingBatch) -> None:
            entered.set()
            store.write_readings(batch)

    writer = ThreadWriter(Entering())
    reports = _Reports()
    with store._write_lock:  # the thread takes the first job and waits here; the next two queue up
        writer.submit(grid_batch(1, 1, T0, seed=1), reports.callback("first"))
        assert await asyncio.to_thread(entered.wait, 10.0)
        writer.submit(grid_batch(200, 50, T0, seed=2), reports.callback("big"))  # far more than 8 KiB
        writer.submit(grid_batch(1, 1, T0 + 1000, seed=3), reports.callback("small, merged with big"))
    await reports.wait(3)
    writer.submit(grid_batch(1, 1, T0 + 2000, seed=4), reports.callback("after"))
    await reports.wait(4)
    writer.close()
    assert reports.got["first"][0] is None  # spooled while the server is down
    assert isinstance(reports.got["big"][0], BufferFull)
    assert reports.got["small, merged with big"][0] is reports.got["big"][0]
    assert reports.got["after"][0] is None
    store.close()


def test_alarm_saves_do_not_wait_for_the_influx_copy(vmetrics: VictoriaMetrics, tmp_path: Path) -> None:
    """While the InfluxDB write path is held (a slow server), ``save_changes`` still returns
    after the SQLite commit; the copy follows, in order, once the path is free."""
    settings = Settings(store="influx", influx_url=vmetrics.url, influx_token="t", data_dir=tmp_path / "data")
    readings, alarms = open_stores(settings, Registry())
    assert isinstance(readings, InfluxReadingStore)
    assert isinstance(alarms, MirroredAlarmStore)
    try:
        def change(k: int) -> tuple[Alarm, AlarmEvent]:
            a = Alarm(id=k, enterprise_id="E", sensor_id=f"S{k}", device_id="D", area="", kind="gas.toxic",
                      rule="high", level=Level.ORANGE, status=AlarmStatus.ACTIVE, value=9.0, raised_at=T0,
                      updated_at=T0)
            return a, AlarmEvent(k, T0 + k, "raised", Level.ORANGE, Level.NONE, AlarmStatus.ACTIVE, value=9.0)

        with readings._write_lock:  # every InfluxDB write waits here
            def save_three() -> None:
                for k in (1, 2, 3):
                    alarms.save_changes([change(k)])

            saver = threading.Thread(target=save_three)
            saver.start()
            saver.join(10.0)  # a synchronous copy would block on the lock for as long as it is held
            assert not saver.is_alive()
            assert [a.id for a in alarms.list_alarms()] == [3, 2, 1]  # committed in SQLite meanwhile
        alarms.flush()
        got = vm_export(vmetrics.url, "alarm_event_level_code", T0 - 1000, T0 + 1000)
        assert sorted(s["timestamps"][0] for s in got) == [T0 + 1, T0 + 2, T0 + 3]
    finally:
        alarms.close()
        readings.close()


def test_replay_journal_holds_registered_readings_since_the_last_snapshot(vmetrics: VictoriaMetrics,
                                                                          tmp_path: Path) -> None:
    """The InfluxDB backend's replay marks: the local journal returns exactly the registered
    readings committed after a mark, drops what a snapshot holds without letting ids go back,
    and a journal that fails costs the replay, never the write to InfluxDB."""
    from plantwatch.metrics import Metrics

    metrics = Metrics()
    http = InfluxHttp(vmetrics.url, "token", "org", "bucket", timeout_ms=3000)
    journal = ReplayJournal(tmp_path / "journal.sqlite3")
    store = InfluxReadingStore(http, Spool(tmp_path / "spool", 64 << 20), bucket="bucket", background=False,
                               journal=journal, metrics=metrics,
                               unregistered=SQLiteReadingStore(tmp_path / "unreg.sqlite3"))
    try:
        assert store.replay_mark() == 0
        assert store.replay_source == "journal.sqlite3"
        first = make_batch(["E"] * 3, ["D"] * 3, ["A", "B", "X"], [T0, T0, T0 + 1], [1.0, 2.0, 3.0],
                           rows=[0, 1, -1])  # X is unregistered: not for the engine, not journalled
        store.write_readings(first)
        mark = store.replay_mark()
        second = make_batch(["E"] * 2, ["D"] * 2, ["A", "B"], [T0 + 1000] * 2, [4.0, 5.0], rows=[0, 1])
        store.write_readings(second)
        [piece] = list(store.readings_after(mark))
        assert sorted(zip([piece.keys[i] for i in piece.series], piece.ts_ms.tolist(), piece.value.tolist(),
                          strict=True)) == [(("E", "A"), T0 + 1000, 4.0), (("E", "B"), T0 + 1000, 5.0)]
        assert sum(len(p) for p in store.readings_after(0)) == 4  # A and B twice; X is not in it
        # a snapshot at the newest mark is durable: everything below it goes, ids keep climbing
        newest = store.replay_mark()
        store.forget_replayed(newest)
        assert sum(len(p) for p in store.readings_after(0)) == 2  # the batch at the mark stays
        store.write_readings(make_batch(["E"], ["D"], ["A"], [T0 + 2000], [6.0], rows=[0]))
        assert store.replay_mark() > newest
        assert [p.value.tolist() for p in store.readings_after(newest)] == [[6.0]]
        # the journal fails (here: closed under the store): logged and counted, InfluxDB still gets it
        journal.close()
        store.write_readings(make_batch(["E"], ["D"], ["B"], [T0 + 3000], [7.0], rows=[1]))
        assert metrics.registry.get_sample_value("plantwatch_store_errors_total", {"store": "journal"}) == 1
        assert samples_by_series(vmetrics.url, "reading_value", T0 - 1, T0 + 5000)[("E", "B")] == [
            (T0, 2.0), (T0 + 1000, 5.0), (T0 + 3000, 7.0)]
    finally:
        store.close()
