"""Pipeline.run against a real Mosquitto: contract v1 messages, rejections, at-least-once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import orjson
import pytest

from ingest.mqtt import Intake
from ingest.pipeline import Pipeline
from plantwatch.metrics import Metrics
from plantwatch.registry import Registry
from plantwatch.settings import Settings
from tests.ingest.conftest import RecordingSink, RecordingStore
from tests.servers import Broker

pytestmark = pytest.mark.e2e


def metric(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


async def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``cond`` (bounded wait on a real broker)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(p: Pipeline) -> AsyncIterator[Pipeline]:
    task = asyncio.create_task(p.run())
    try:
        await wait_until(lambda: p.connected, "pipeline connected")
        yield p
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def publisher(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"pub-{time.monotonic_ns()}") as c:
        yield c


def make(broker: Broker, registry: Registry, client_id: str, **kw: Any
         ) -> tuple[Pipeline, RecordingStore, RecordingSink, Metrics]:
    settings = Settings(mqtt_url=broker.url, mqtt_client_id=client_id, **kw)
    store, sink, metrics = RecordingStore(), RecordingSink(), Metrics()
    return Pipeline(settings, registry, store, sink, metrics), store, sink, metrics


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_good_batch_and_malformed_messages(broker: Broker, registry: Registry) -> None:
    p, store, sink, m = make(broker, registry, "ingest-e2e-1", max_message_bytes=4096)
    async with running(p), publisher(broker) as pub:
        assert metric(m, "plantwatch_mqtt_connected") == 1
        t = "plants/e1/gw1/telemetry"
        await pub.publish(t, j({"sensor": "GT-101", "ts": now_ms(), "value": 18.5}), qos=1)
        await pub.publish(t, j({"ts": now_ms(), "readings": [
            {"sensor": "GT-101", "value": 19.0}, {"sensor": "TT-201", "value": 61.2, "ts": now_ms()},
            {"sensor": "TT-201", "value": "NaN"}, {"sensor": "GT-101"}]}), qos=1)
        bad: list[tuple[str, bytes]] = [
            (t, b"{bad json"),
            (t, j({"sensor": "GT-101", "value": "high"})),
            (t, j({"sensor": "GT-101", "value": "Infinity"})),
            (t, j({"sensor": "GT-101", "value": 1, "ts": now_ms() + 3_600_000})),
            (t, j({"sensor": "GT-101", "value": 1, "ts": now_ms() - 30 * 86_400_000})),
            (t, b"x" * 5000),
            ("plants/e1/telemetry", j({"sensor": "GT-101", "value": 1})),
            ("plants/e1/gw1/data", j({"sensor": "GT-101", "value": 1})),
            ("plants//gw1/telemetry", j({"sensor": "GT-101", "value": 1})),
            ("plants/e1/gw1/status", b"sleepy"),
        ]
        for topic, payload in bad:
            await pub.publish(topic, payload, qos=1)
        await pub.publish("plants/e1/gw1/status", b"offline", qos=1, retain=True)
        # still ingesting after all that
        await pub.publish(t, j({"sensor": "XX-404", "value": 7.0}), qos=1)
        await wait_until(lambda: "XX-404" in store.values(), "the reading after the malformed ones")
        await wait_until(lambda: len(sink.statuses) == 1, "gateway status")
    assert store.values() == {"GT-101": [18.5, 19.0], "TT-201": [61.2], "XX-404": [7.0]}
    assert store.batch.row.tolist()[-1] == -1
    assert sink.statuses[0][:3] == ("e1", "gw1", False)
    expected = {"bad_topic": 3, "bad_json": 1, "non_numeric": 1, "non_finite": 2, "missing_value": 1, "ts_future": 1,
                "ts_past": 1, "oversize": 1, "bad_status": 1}
    for reason, n in expected.items():
        assert metric(m, "plantwatch_ingest_rejected_total", reason=reason) == n, reason
    assert metric(m, "plantwatch_ingest_readings_total") == 4
    assert metric(m, "plantwatch_ingest_unregistered_readings_total") == 1
    assert metric(m, "plantwatch_ingest_messages_total") == 2 + len(bad) + 2
    assert metric(m, "plantwatch_mqtt_connected") == 0
    assert not p.connected


async def test_messages_published_while_down_arrive_after_reconnect(broker: Broker, registry: Registry) -> None:
    p, store, _, _ = make(broker, registry, "ingest-persistent")
    async with running(p):
        pass  # first connect creates the persistent session and its subscriptions
    async with publisher(broker) as pub:
        for i in range(20):
            await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": float(i)}), qos=1)
    p2, store2, _, _ = make(broker, registry, "ingest-persistent")
    async with running(p2):
        await wait_until(lambda: len(store2.values().get("GT-101", [])) >= 20, "queued messages")
    assert store.batches == []
    assert sorted(store2.values()["GT-101"]) == [float(i) for i in range(20)]


async def test_unstored_batch_is_not_acked_and_comes_again(broker: Broker, registry: Registry) -> None:
    p, store, sink, m = make(broker, registry, "ingest-redeliver")
    store.fail_next = 1
    async with running(p), publisher(broker) as pub:
        await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": 42.0}), qos=1)
        # the failed write makes the pipeline reconnect; the broker resends the unacked message
        await wait_until(lambda: store.values().get("GT-101") == [42.0], "redelivered reading")
        await wait_until(lambda: p.connected, "reconnected")
        await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": 43.0}), qos=1)
        await wait_until(lambda: len(store.values()["GT-101"]) == 2, "next reading")
    assert store.values()["GT-101"] == [42.0, 43.0]
    assert metric(m, "plantwatch_store_errors_total", store="RecordingStore") == 1
    assert metric(m, "plantwatch_store_readings_failed_total") == 1
    # evaluated on arrival (alarms do not wait for the store) and again on redelivery (a
    # reading with its own ts is then ignored by the engine, tests/alerts/test_engine.py)
    assert [b.value.tolist() for b, _ in sink.readings] == [[42.0], [42.0], [43.0]]
    # acked after the successful write: a new session with the same id gets nothing again
    p2, store2, _, _ = make(broker, registry, "ingest-redeliver")
    async with running(p2), publisher(broker) as pub:
        await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": 44.0}), qos=1)
        await wait_until(lambda: bool(store2.batches), "fresh reading")
    assert store2.values() == {"GT-101": [44.0]}


async def test_qos0_clean_session(broker: Broker, registry: Registry) -> None:
    p, store, _, _ = make(broker, registry, "ingest-qos0", mqtt_qos=0)
    async with running(p), publisher(broker) as pub:
        for i in range(50):
            await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "TT-201", "value": float(i)}), qos=0)
        await wait_until(lambda: len(store.values().get("TT-201", [])) == 50, "50 QoS 0 readings")
    assert store.values()["TT-201"] == [float(i) for i in range(50)]


async def test_partition_subscribes_only_its_enterprises(broker: Broker, registry: Registry) -> None:
    p, store, _, m = make(broker, registry, "ingest-part", enterprises=["e1"])
    async with running(p), publisher(broker) as pub:
        await pub.publish("plants/e2/gw9/telemetry", j({"sensor": "Z", "value": 1.0}), qos=1)
        await pub.publish("plants/e2/gw9/oops", j({"sensor": "Z", "value": 1.0}), qos=1)
        await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": 2.0}), qos=1)
        await wait_until(lambda: bool(store.batches), "e1 reading")
    assert store.batch.enterprise_id.tolist() == ["e1"]
    assert metric(m, "plantwatch_ingest_messages_total") == 1  # e2's traffic is another partition's


async def test_reconnects_after_broker_restart(tmp_path: Any, registry: Registry) -> None:
    from tests.servers import free_port, mosquitto

    port = free_port()
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_client_id="ingest-restart")
    store, sink, metrics = RecordingStore(), RecordingSink(), Metrics()
    p = Pipeline(settings, registry, store, sink, metrics)
    task: asyncio.Task[None] | None = None
    try:
        with mosquitto(tmp_path / "m", port) as b:
            task = asyncio.create_task(p.run())
            await wait_until(lambda: p.connected, "first connect")
        await wait_until(lambda: not p.connected, "noticed the broker is gone")
        with mosquitto(tmp_path / "m", port) as b:
            await wait_until(lambda: p.connected, "reconnect", timeout_s=20)
            async with publisher(b) as pub:
                await pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": 5.0}), qos=1)
                await wait_until(lambda: bool(store.batches), "reading after restart")
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert store.values() == {"GT-101": [5.0]}


def test_intake_counts_overflow_and_unacked_qos1_drops() -> None:
    clock = iter(range(100, 200)).__next__
    intake = Intake(2, clock)
    intake.put("t", b"a", 0)
    intake.put("t", b"b", 7)
    intake.put("t", b"c", 0)  # QoS 0 dropped
    intake.put("t", b"d", 8)  # QoS 1 dropped: must be redelivered
    msgs, mids, dropped, dropped_qos1 = intake.take()
    assert msgs == [("t", b"a", 100), ("t", b"b", 101)]
    assert mids == [0, 7]
    assert (dropped, dropped_qos1) == (2, 1)
    assert len(intake) == 0
    assert not intake.arrived.is_set()


def test_overload_is_counted_as_messages_and_reason(registry: Registry) -> None:
    store, sink, metrics = RecordingStore(), RecordingSink(), Metrics()
    p = Pipeline(Settings(), registry, store, sink, metrics)
    p._overload(3)
    assert metric(metrics, "plantwatch_ingest_rejected_total", reason="overload") == 3
    assert metric(metrics, "plantwatch_ingest_messages_total") == 3


@pytest.mark.parametrize("qos", [0, 1])
async def test_tiny_intake_applies_back_pressure_without_loss(broker: Broker, registry: Registry, qos: int) -> None:
    p, store, _, m = make(broker, registry, f"ingest-tiny-{qos}", mqtt_qos=qos, queue_max_messages=5,
                          batch_max_readings=5)
    # slow store: evaluated chunks queue for the writer up to 4 x batch_max_readings, then the
    # loop waits for the store, the intake fills and the socket reader must pause
    store.delay_s = 0.01
    async with running(p), publisher(broker) as pub:
        await asyncio.gather(*(
            pub.publish("plants/e1/gw1/telemetry", j({"sensor": "GT-101", "value": float(i)}), qos=qos)
            for i in range(300)))
        await wait_until(lambda: len(store.values().get("GT-101", [])) == 300, "all 300 readings")
    assert store.values()["GT-101"] == [float(i) for i in range(300)]
    # a write merges what queued while the previous one ran: bounded by the pending limit
    assert max(len(b) for b in store.batches) <= 4 * 5 + 5
    assert len(store.batches) < 300
    assert metric(m, "plantwatch_ingest_rejected_total", reason="overload") == 0
