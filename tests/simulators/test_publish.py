"""Publishing over a real Mosquitto: contract topics and payloads, QoS 0/1, batch/single,
gateway last will, virtual clock, stop, CSV replay and the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from plantwatch.registry import Registry
from simulators.cli import main as cli_main
from simulators.labels import read_labels
from simulators.publish import replay, run
from simulators.scenario import Scenario, load_mode_scenario, load_scenario
from simulators.spec import EnterpriseSpec, EventSpec, SensorSpec
from simulators.stream import plant_messages, write_csv
from tests.servers import Broker
from tests.simulators.helpers import START_MS

pytestmark = pytest.mark.e2e


def by_topic(msgs: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    """Payloads per topic in arrival order (order is kept per gateway connection only)."""
    out: dict[str, list[bytes]] = {}
    for t, p in msgs:
        out.setdefault(t, []).append(p)
    return out


@dataclass
class Received:
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def data(self) -> list[tuple[str, bytes]]:
        return [(t, p) for t, p, _ in self.messages if t.endswith("/telemetry")]

    def status(self) -> list[tuple[str, bytes, bool]]:
        return [m for m in self.messages if m[0].endswith("/status")]


@asynccontextmanager
async def subscriber(broker: Broker, topic: str = "plants/#") -> AsyncIterator[Received]:
    got = Received()
    ready = asyncio.Event()

    async def loop() -> None:
        async with aiomqtt.Client(broker.host, broker.port, max_queued_incoming_messages=0) as c:
            await c.subscribe(topic, qos=1)
            ready.set()
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                got.messages.append((str(m.topic), m.payload, bool(m.retain)))

    task = asyncio.create_task(loop())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield got
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def until(pred: object, timeout_s: float = 10.0) -> None:
    """Bounded wait for deliveries from a real broker."""
    deadline = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for deliveries")
        await asyncio.sleep(0.02)


def small(duration_s: float = 120.0) -> Scenario:
    return load_scenario("gas").with_start(START_MS).with_duration(duration_s)


@pytest.mark.parametrize(("qos", "batch"), [(0, True), (1, True), (0, False), (1, False)])
async def test_publishes_the_exact_stream_per_contract(broker: Broker, qos: int, batch: bool) -> None:
    sc = small()
    want = [(m.topic, m.payload) for m in plant_messages(sc.plant(), batch=batch) if m.kind == "data"]
    async with subscriber(broker) as got:
        stats = await run(sc, broker.url, speed=math.inf, qos=qos, batch=batch)
        await until(lambda: len(got.data()) >= len(want))
    assert by_topic(got.data()) == by_topic(want)
    assert stats.messages == len(want)
    assert stats.readings == 8 * 24
    for topic, payload in got.data():
        _, ent, dev, leaf = topic.split("/")
        assert (ent, leaf) == ("chem-a", "telemetry")
        assert dev in ("gw-1", "gw-2")
        body = json.loads(payload)
        if batch:
            assert isinstance(body["ts"], int)
            assert all(set(r) == {"sensor", "value"} for r in body["readings"])
        else:
            assert set(body) == {"sensor", "ts", "value"}
            assert START_MS <= body["ts"] < START_MS + 120_000


async def test_dead_gateway_publishes_its_last_will_through_the_broker(broker: Broker) -> None:
    ent = EnterpriseSpec("e")
    sensors = (SensorSpec("e", "S1", "gas.oxygen", "gw-1", interval_s=1.0),
               SensorSpec("e", "S2", "gas.oxygen", "gw-2", interval_s=1.0))
    sc = Scenario("death", (ent,), sensors, (EventSpec("fault", "gateway_death", "e", 10, 10, device_id="gw-1"),),
                  duration_s=30.0, start_ms=START_MS)
    async with subscriber(broker, "plants/+/+/status") as got:
        stats = await run(sc, broker.url, speed=math.inf, qos=1, announce_offline=False)
        await until(lambda: len(got.status()) >= 4)
    gw1 = [(p, r) for t, p, r in got.status() if t == "plants/e/gw-1/status"]
    # online at connect, offline from the broker (the will: nobody published it), online on reconnect
    assert [p for p, _ in gw1] == [b"online", b"offline", b"online"]
    assert stats.wills == 1
    assert [p for t, p, _ in got.status() if t == "plants/e/gw-2/status"] == [b"online"]
    # the will is retained: a late subscriber learns the last state
    sc2 = Scenario("death2", (ent,), sensors[:1], (EventSpec("fault", "gateway_death", "e", 5, 100,
                                                             device_id="gw-1"),), duration_s=10.0, start_ms=START_MS)
    await run(sc2, broker.url, speed=math.inf, qos=1, announce_offline=False)
    async with subscriber(broker, "plants/e/gw-1/status") as late:
        await until(lambda: len(late.status()) >= 1)
    assert late.status()[0][1:] == (b"offline", True)


async def test_clean_stop_announces_offline_retained(broker: Broker) -> None:
    await run(small(20.0), broker.url, speed=math.inf)
    async with subscriber(broker, "plants/chem-a/+/status") as late:
        await until(lambda: len(late.status()) >= 2)
    assert {(t, p, r) for t, p, r in late.status()} == {
        ("plants/chem-a/gw-1/status", b"offline", True), ("plants/chem-a/gw-2/status", b"offline", True)}


async def test_virtual_clock_paces_by_speed_and_stop_ends_early(broker: Broker) -> None:
    sc = small(20.0)  # 20 virtual seconds at 100× ≈ 0.2 s of wall time
    t0 = time.monotonic()
    stats = await run(sc, broker.url, speed=100.0)
    assert time.monotonic() - t0 >= 0.9 * (15.0 / 100.0)  # last reading is at 15 s virtual
    assert stats.end_ms == START_MS + 15_000
    stop = asyncio.Event()
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        task = asyncio.create_task(run(small(3600.0), broker.url, speed=10.0, stop=stop))
        await until(lambda: len(got.data()) >= 2)  # the run is under way: stop it
        stop.set()
        stats = await asyncio.wait_for(task, 10)
    assert stats.stopped
    assert stats.end_ms < START_MS + 600_000


async def test_default_start_keeps_timestamps_out_of_the_future(broker: Broker) -> None:
    sc = load_scenario("gas").with_duration(300.0)
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        stats = await run(sc, broker.url, speed=math.inf, batch=False)
        await until(lambda: len(got.data()) >= stats.messages)
    now = time.time() * 1000
    ts = [json.loads(p)["ts"] for _, p in got.data()]
    assert max(ts) <= now
    assert min(ts) >= now - 300_000 - 60_000


async def test_replay_of_recorded_csv_republishes_the_readings(broker: Broker, tmp_path: Path) -> None:
    sc = load_mode_scenario(2, 5, 1.0, duration_s=30.0, start_ms=START_MS)
    csv_path = tmp_path / "rec.csv"
    n = write_csv(sc.plant(), csv_path)
    assert n == 2 * 5 * 30
    want = [(m.topic, m.payload) for m in plant_messages(sc.plant()) if m.kind == "data"]
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        stats = await replay(csv_path, broker.url, speed=math.inf, keep_ts=True)
        await until(lambda: len(got.data()) >= len(want))
    assert stats.readings == n
    assert by_topic(got.data()) == by_topic(want)  # same batches, same bytes
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        await replay(csv_path, broker.url, speed=math.inf, start_ms=START_MS + 3_600_000, batch=False)
        await until(lambda: len(got.data()) >= n)
    first = json.loads(got.data()[0][1])
    assert first["ts"] == START_MS + 3_600_000


async def test_cli_publishes_and_writes_labels_and_registry(broker: Broker, tmp_path: Path) -> None:
    labels, reg = tmp_path / "labels.jsonl", tmp_path / "registry.toml"
    argv = ["--scenario", "dust", "--mqtt-url", broker.url, "--fast", "--qos", "0", "--duration", "600",
            "--labels-out", str(labels), "--registry-out", str(reg), "--seed", "5"]
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        rc = await asyncio.to_thread(cli_main, argv)
        assert rc == 0
        await until(lambda: len(got.data()) >= 2 * 60)
    assert len(Registry.from_toml(reg)) == 10
    assert [lab.kind for lab in read_labels(labels)][:2] == ["spark_shower", "filter_clogging"]
    # load mode: 2 plants x 3 sensors x 2 readings/s x 5 s = 60 readings, one batch per plant and tick
    async with subscriber(broker, "plants/+/+/telemetry") as got:
        rc = await asyncio.to_thread(cli_main, ["--plants", "2", "--sensors-per-plant", "3", "--rate", "2",
                                                "--duration", "5", "--fast", "--mqtt-url", broker.url])
        assert rc == 0

        def n_readings() -> int:
            return sum(len(json.loads(p)["readings"]) for _, p in got.data())
        await until(lambda: n_readings() >= 60)
    assert n_readings() == 60
    assert len({t for t, _ in got.data()}) == 2  # one gateway topic per plant
    assert await asyncio.to_thread(cli_main, ["--scenario", str(tmp_path / "missing.toml"), "--dry-run"]) == 2
