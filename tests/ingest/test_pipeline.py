"""Pipeline.process: rows, store, sink, metrics, failure isolation (no MQTT, fake clock)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from ingest.pipeline import WRITE_SLICE, Pipeline, _Redeliver, _Writes
from plantwatch.clock import FakeClock
from plantwatch.domain import TsSource
from plantwatch.metrics import Metrics
from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.settings import Settings
from tests.ingest.conftest import RecordingSink, RecordingStore

NOW = 1_795_459_488_000
T = "plants/e1/gw1/telemetry"


def metric(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


def make(registry: Registry, **kw: Any) -> tuple[Pipeline, RecordingStore, RecordingSink, Metrics, FakeClock]:
    store, sink, metrics, clock = RecordingStore(), RecordingSink(), Metrics(), FakeClock(NOW + 7)
    return Pipeline(Settings(**kw), registry, store, sink, metrics, clock), store, sink, metrics, clock


def msg(obj: object, topic: str = T, received: int = NOW) -> tuple[str, bytes, int]:
    return (topic, orjson.dumps(obj), received)


def test_rows_from_registry_and_unregistered_still_stored(registry: Registry) -> None:
    p, store, _sink, m, _ = make(registry)
    p.process([
        msg({"sensor": "GT-101", "value": 18.5, "ts": NOW - 1}),
        msg({"readings": [{"sensor": "TT-201", "value": 61.2}, {"sensor": "XX-999", "value": 3.0}]}),
    ])
    b = store.batch
    assert b.sensor_id.tolist() == ["GT-101", "TT-201", "XX-999"]
    assert b.row.tolist() == [0, 1, -1]
    assert b.ts_source.tolist() == [TsSource.READING, TsSource.RECEIVED, TsSource.RECEIVED]
    assert metric(m, "plantwatch_ingest_messages_total") == 2
    assert metric(m, "plantwatch_ingest_readings_total") == 3
    assert metric(m, "plantwatch_ingest_unregistered_readings_total") == 1
    assert metric(m, "plantwatch_store_readings_written_total") == 3


def test_sink_gets_the_stored_batch_with_clock_time(registry: Registry) -> None:
    p, store, sink, _, clock = make(registry)
    p.process([msg({"sensor": "GT-101", "value": 30.0})])
    assert len(sink.readings) == 1
    batch, now = sink.readings[0]
    assert batch is store.batches[0]
    assert now == clock.now


def test_rejections_counted_by_reason_and_rest_lands(registry: Registry,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    p, store, _, m, _ = make(registry)
    with caplog.at_level(logging.WARNING, logger="plantwatch.ingest"):
        p.process([
            ("plants/e1/telemetry", b"{}", NOW),
            (T, b"{not json", NOW),
            msg({"readings": [{"sensor": "GT-101", "value": "NaN"}, {"sensor": "GT-101", "value": 1.0},
                              {"sensor": "TT-201", "value": "hot"}]}),
            msg({"sensor": "GT-101", "value": 2.0, "ts": NOW + 10**9}),
        ])
    assert store.values() == {"GT-101": [1.0]}
    for reason in ("bad_topic", "bad_json", "non_finite", "non_numeric", "ts_future"):
        assert metric(m, "plantwatch_ingest_rejected_total", reason=reason) == 1, reason
    assert metric(m, "plantwatch_ingest_messages_total") == 4
    lines = [r.getMessage() for r in caplog.records]
    assert any("plants/e1/telemetry" in x and "bad_topic" in x for x in lines)
    assert any(T in x and "non_numeric" in x for x in lines)


def test_rejection_logging_is_rate_limited_but_counting_is_not(registry: Registry,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    p, _, _, m, clock = make(registry)
    with caplog.at_level(logging.WARNING, logger="plantwatch.ingest"):
        p.process([(T, b"garbage", NOW)] * 500)
        flood_lines = len(caplog.records)
        clock.advance(60_000)
        p.process([(T, b"garbage", NOW)])
    assert metric(m, "plantwatch_ingest_rejected_total", reason="bad_json") == 501
    assert flood_lines <= 20
    assert any("suppressed" in r.getMessage() for r in caplog.records)


def test_gateway_status_goes_to_sink(registry: Registry) -> None:
    p, store, sink, _, _ = make(registry)
    p.process([("plants/e1/gw1/status", b"offline", NOW), ("plants/e1/gw2/status", b"online", NOW + 1)])
    assert sink.statuses == [("e1", "gw1", False, NOW), ("e1", "gw2", True, NOW + 1)]
    assert store.batches == []


def test_batch_split_at_batch_max_readings(registry: Registry) -> None:
    p, store, sink, _, _ = make(registry, batch_max_readings=3)
    p.process([msg({"sensor": "GT-101", "value": float(i)}) for i in range(7)])
    assert [len(b) for b in store.batches] == [3, 3, 1]
    assert store.values()["GT-101"] == [float(i) for i in range(7)]
    assert len(sink.readings) == 3


def test_store_failure_is_logged_counted_alarms_still_evaluated_and_the_next_batch_lands(
        registry: Registry) -> None:
    p, store, sink, m, _ = make(registry)
    store.fail_next = 1
    p.process([msg({"sensor": "GT-101", "value": 1.0})])  # must not raise
    p.process([msg({"sensor": "GT-101", "value": 2.0})])
    assert store.values() == {"GT-101": [2.0]}
    # alarms never wait for (or depend on) the store: both batches were evaluated; the
    # unstored one stays unacked and comes again (the engine ignores the repeated reading)
    assert [float(b.value[0]) for b, _ in sink.readings] == [1.0, 2.0]
    assert metric(m, "plantwatch_store_errors_total", store="RecordingStore") == 1
    assert metric(m, "plantwatch_store_readings_failed_total") == 1
    assert p.batch_errors == 1


def test_store_failure_withholds_acks_of_that_batch_only(registry: Registry) -> None:
    p, store, _, _, _ = make(registry, batch_max_readings=1)
    store.fail_next = 1
    acked: list[int] = []
    ok = p._process([msg({"sensor": "GT-101", "value": 1.0}), msg({"sensor": "GT-101", "value": 2.0})],
                    [11, 12], acked.extend)
    assert not ok
    assert acked == [12]


def test_sink_failure_does_not_stop_ingest(registry: Registry) -> None:
    p, store, sink, _, _ = make(registry)
    sink.fail = True
    p.process([msg({"sensor": "GT-101", "value": 1.0})])
    sink.fail = False
    p.process([msg({"sensor": "GT-101", "value": 2.0})])
    assert store.values() == {"GT-101": [1.0, 2.0]}
    assert p.batch_errors == 1


def test_process_of_nothing_is_harmless(registry: Registry) -> None:
    p, store, sink, m, _ = make(registry)
    p.process([])
    assert store.batches == []
    assert sink.readings == []
    assert metric(m, "plantwatch_ingest_messages_total") == 0


def _queued(n_sensors: int, msgs_per_sensor: int) -> tuple[Pipeline, RecordingStore, Metrics, _Writes]:
    """A pipeline with ``n_sensors`` registered sensors and, queued for the store, one evaluated
    chunk per message: 10 readings of every sensor per message, message i acked as mid i."""
    reg = Registry()
    reg.upsert_enterprise(Enterprise("e1"))
    for k in range(n_sensors):
        reg.upsert_sensor(Sensor("e1", f"S-{k}", "gas.combustible", device_id="gw1"))
    p, store, _, m, _ = make(reg, batch_max_readings=n_sensors * 10, max_message_bytes=1 << 20)
    msgs = [msg({"readings": [{"sensor": f"S-{k}", "value": 1.0, "ts": NOW - 60_000 + 1000 * i + t}
                              for k in range(n_sensors) for t in range(10)]})
            for i in range(msgs_per_sensor)]
    w = _Writes()
    for ch in p._prepare(msgs, list(range(len(msgs)))):
        p._evaluate(ch)
        assert ch.batch is not None
        w.pending.append(ch)
        w.pending_n += len(ch.batch)
    return p, store, m, w


def test_queued_readings_are_stored_in_sensor_ordered_slices_and_acked_after_the_last(registry: Registry) -> None:
    p, store, m, w = _queued(n_sensors=700, msgs_per_sensor=3)  # 21,000 readings
    acked: list[int] = []
    slices = 0
    while w:
        assert acked == []  # nothing is acked before the whole job is stored
        p._write_slice(w, acked.extend)
        slices += 1
    assert sorted(acked) == [0, 1, 2]
    sizes = [len(b) for b in store.batches]
    assert slices == len(sizes) > 1
    assert sum(sizes) == 21_000
    assert all(s >= WRITE_SLICE for s in sizes[:-1])  # each slice ends at the first sensor boundary past WRITE_SLICE
    assert all(s < WRITE_SLICE + 30 for s in sizes)  # 30 readings per sensor in this job
    seen: set[int] = set()
    for b in store.batches:  # a sensor's readings are in one slice, in row then ts order
        rows = set(b.row.tolist())
        assert not rows & seen
        seen |= rows
        assert (b.row[1:] >= b.row[:-1]).all()
        same = b.row[1:] == b.row[:-1]
        assert (b.ts_ms[1:][same] > b.ts_ms[:-1][same]).all()
    assert len(seen) == 700
    assert metric(m, "plantwatch_store_readings_written_total") == 21_000


def test_a_failed_slice_counts_the_rest_of_its_job_and_whatever_queued_behind_it() -> None:
    p, store, m, w = _queued(n_sensors=700, msgs_per_sensor=3)
    acked: list[int] = []
    p._write_slice(w, acked.extend)  # the job takes all three chunks; one slice is stored
    _, _, _, more = _queued(n_sensors=700, msgs_per_sensor=1)
    w.pending, w.pending_n = more.pending, more.pending_n  # queued behind the running job
    store.fail_next = 1
    with pytest.raises(_Redeliver):
        p._write_slice(w, acked.extend)
    stored = len(store.batches[0])
    assert acked == []  # the failed job's messages stay unacked: the broker redelivers them
    assert w.failed
    assert not w
    assert metric(m, "plantwatch_store_readings_written_total") == 0  # counted when a job completes
    assert metric(m, "plantwatch_store_readings_failed_total") == 21_000 - stored + 7_000
    assert metric(m, "plantwatch_store_errors_total", store="RecordingStore") == 1
