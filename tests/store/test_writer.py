"""The SQLite writer process (ingest/store/writer.py): wire format, a real child writing a real
SQLite file, a killed child, close(), and the pipeline over a real Mosquitto with the child
killed while it holds a job (every reading arrives, the lost job is redelivered)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import orjson
import pytest

from ingest.batch import BatchBuilder, ReadingBatch
from ingest.pipeline import Pipeline
from ingest.store.sqlite import SQLiteReadingStore
from ingest.store.writer import FrameReader, KeyTable, WriterDied, WriterProcess, decode_job, encode_job
from plantwatch.metrics import Metrics
from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.settings import Settings
from tests.ingest.conftest import RecordingSink
from tests.ingest.test_mqtt_e2e import wait_until
from tests.servers import Broker

T0 = 1_795_459_488_000  # epoch ms


def make_batch(rows: list[int], sensors: list[str], ts: list[int], values: list[float],
               ent: str = "e1", dev: str = "gw1") -> ReadingBatch:
    b = BatchBuilder()
    for s, t, v in zip(sensors, ts, values, strict=True):
        b.add(ent, dev, s, t, v, 1, t + 5)
    batch = b.build()
    batch.row = np.asarray(rows, dtype=np.int32)
    return batch


def test_frame_roundtrip_and_key_table() -> None:
    """A frame carries the columns exactly, each row's strings once, unregistered strings always."""
    told = np.zeros(8, dtype=bool)
    b1 = make_batch([0, 1, -1, 0], ["A", "B", "X", "A"], [T0, T0, T0, T0 + 1], [1.0, 2.5, -3.0, 4.0])
    f1 = encode_job(7, b1, told)
    assert told.tolist()[:3] == [True, True, False]
    job = decode_job(f1[4:])
    assert job.job_id == 7
    assert [r[0] for r in job.rows] == [0, 1]
    assert job.unreg == [[2, "e1", "X", "gw1"]]
    table = KeyTable()
    out = table.batch(job)
    for col in ("ts_ms", "value", "received_ms", "row", "ts_source", "sensor_id", "enterprise_id", "device_id"):
        assert getattr(out, col).tolist() == getattr(b1, col).tolist(), col
    # the second frame names no registered row again; the child still fills in their strings
    b2 = make_batch([1, 0], ["B", "A"], [T0 + 2, T0 + 2], [5.0, 6.0])
    job2 = decode_job(encode_job(8, b2, told)[4:])
    assert job2.rows == []
    assert table.batch(job2).sensor_id.tolist() == ["B", "A"]


def test_frame_reader_splits_and_joins_frames(tmp_path: Path) -> None:
    r, w = os.pipe()
    frames = [encode_job(i, make_batch([0], ["A"], [T0 + i], [float(i)])) for i in range(3)]
    blob = b"".join(frames)
    os.write(w, blob[:10])  # a partial frame: nothing complete yet
    reader = FrameReader(r)
    assert reader.frames(block=False) == []
    os.write(w, blob[10:])
    got = reader.frames(block=True)
    assert [decode_job(f).job_id for f in got] == [0, 1, 2]
    os.close(w)
    assert reader.frames(block=True) == []
    assert reader.eof
    os.close(r)


class Results:
    """Collects job completions in order."""

    def __init__(self) -> None:
        self.got: list[BaseException | None] = []

    def cb(self, err: BaseException | None, _seconds: float) -> None:
        self.got.append(err)


@contextlib.asynccontextmanager
async def started(path: Path) -> AsyncIterator[tuple[WriterProcess, Results]]:
    """A writer child that has opened ``path``; closed (everything committed) on exit."""
    w = WriterProcess(path)
    try:
        w.start(wait_s=30)
        assert w.ready
        yield w, Results()
    finally:
        w.close()


async def test_child_stores_every_reading_and_counts_unregistered(tmp_path: Path) -> None:
    path = tmp_path / "readings.sqlite3"
    async with started(path) as (w, res):
        for k in range(5):
            ts = [T0 + k * 10 + i for i in range(3)]
            w.submit(make_batch([0, 1, -1], ["A", "B", "X"], ts, [k + 0.1, k + 0.2, k + 0.3]), res.cb)
        w.submit(None, res.cb)  # an ordering marker without readings
        await wait_until(lambda: len(res.got) == 6, "6 completions")
        assert res.got == [None] * 6
        assert w.inflight == 0
    with contextlib.closing(SQLiteReadingStore(path)) as store:
        a = store.query_readings("e1", "A", T0, T0 + 100)
        assert [(r.ts_ms, r.value) for r in a] == [(T0 + k * 10, k + 0.1) for k in range(5)]
        assert len(store.query_readings("e1", "B", T0, T0 + 100)) == 5
        (u,) = store.unregistered_sensors()
        assert (u.sensor_id, u.count) == ("X", 5)


async def test_killed_child_fails_its_jobs_and_the_next_job_restarts_it(tmp_path: Path) -> None:
    path = tmp_path / "readings.sqlite3"
    async with started(path) as (w, res):
        pid = w.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # holds the job without committing it
        w.submit(make_batch([0], ["A"], [T0], [1.0]), res.cb)
        assert w.inflight == 1
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: len(res.got) == 1, "the lost job reported")
        assert isinstance(res.got[0], WriterDied)
        assert w.inflight == 0
        assert w.restarts == 1
        w.submit(make_batch([0], ["A"], [T0 + 1], [2.0]), res.cb)
        await wait_until(lambda: len(res.got) == 2, "the next job")
        assert res.got[1] is None
        assert w.pid not in (None, pid)
    with contextlib.closing(SQLiteReadingStore(path)) as store:
        assert [r.value for r in store.query_readings("e1", "A", T0, T0 + 10)] == [2.0]


async def test_close_commits_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "readings.sqlite3"
    w = WriterProcess(path)
    res = Results()
    n_sensors, per = 50, 2000
    for k in range(20):  # ~3 MB of frames: more than the pipe holds, so close() must write the rest
        rows = [i % n_sensors for i in range(per)]
        w.submit(make_batch(rows, [f"S{r}" for r in rows], [T0 + k * per + i for i in range(per)],
                            [float(k)] * per), res.cb)
    w.close()
    assert res.got == [None] * 20
    with contextlib.closing(SQLiteReadingStore(path)) as store:
        total = sum(len(store.query_readings("e1", f"S{s}", T0, T0 + 10**6, limit=10**6)) for s in range(n_sensors))
        assert total == 20 * per


@pytest.mark.e2e
async def test_pipeline_redelivers_what_a_killed_writer_held(broker: Broker, tmp_path: Path) -> None:
    """QoS 1 end to end: the writer child dies holding a job; the pipeline reconnects, the broker
    redelivers the unacked messages, and every reading is stored (once, as queries see it)."""
    reg = Registry()
    reg.upsert_enterprise(Enterprise("e1"))
    for i in range(10):
        reg.upsert_sensor(Sensor("e1", f"S{i}", "gas.combustible", device_id="gw1"))
    path = tmp_path / "readings.sqlite3"
    store = SQLiteReadingStore(path)
    writer = WriterProcess(path)
    metrics = Metrics()
    settings = Settings(mqtt_url=broker.url, mqtt_client_id="writer-kill", max_past_age_s=30 * 86400.0)
    p = Pipeline(settings, reg, store, RecordingSink(), metrics, writer=writer)
    t0 = time.time_ns() // 1_000_000 - 60_000

    def payload(k: int) -> bytes:
        return orjson.dumps({"readings": [{"sensor": f"S{i}", "value": float(k), "ts": t0 + k} for i in range(10)]})

    def stored() -> int:
        return sum(len(store.query_readings("e1", f"S{i}", t0, t0 + 10**6)) for i in range(10))

    task = asyncio.create_task(p.run())
    try:
        await wait_until(lambda: p.connected and writer.ready, "pipeline connected, writer ready")
        async with aiomqtt.Client(broker.host, broker.port, identifier="writer-kill-pub") as pub:
            for k in range(20):
                await pub.publish("plants/e1/gw1/telemetry", payload(k), qos=1)
            await wait_until(lambda: stored() == 200, "first 200 readings")
            pid = writer.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            for k in range(20, 40):
                await pub.publish("plants/e1/gw1/telemetry", payload(k), qos=1)
            await wait_until(lambda: writer.inflight > 0, "a job held by the stopped writer")
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: stored() == 400, "all 400 readings after redelivery")
        assert writer.restarts == 1
        assert metrics.registry.get_sample_value("plantwatch_store_writer_restarts") == 1
        assert metrics.registry.get_sample_value("plantwatch_store_writer_queued_readings") == 0
        assert (metrics.registry.get_sample_value("plantwatch_store_readings_failed_total") or 0) > 0
        values = sorted(r.value for r in store.query_readings("e1", "S3", t0, t0 + 10**6))
        assert values == [float(k) for k in range(40)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        p.close()
        store.close()
