"""Ingest throughput: MQTT → decode → batch → rows → alarm engine → SQLite store, vs a bare paho subscriber.

Each run starts one Mosquitto on a free loopback port (tests/servers.py config:
``max_inflight_messages 1000``), pre-loads N QoS 1 messages into an offline persistent
session, then times how fast a subscriber drains them from connect to the last
message (so the publisher's speed does not count). Subscribers, in the same run:

* ``paho``: a bare paho-mqtt 2.x client (``loop_forever``), counting messages in
  ``on_message`` (auto-ack, no decoding) — the ceiling for a Python subscriber;
* ``pipeline``: ``ingest.pipeline.Pipeline.run`` with the SQLite store
  (``ingest/store/sqlite.py``, WAL, synchronous=NORMAL) and the alarm engine as sink;
  done when every reading is stored (and its message acked).

Also ``process()`` alone (no MQTT) on pre-built messages. Prints medians of ``--runs``.

    /tmp/pwvenv/bin/python benchmarks/bench_ingest.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.batch import ReadingBatch
from ingest.pipeline import WRITE_SLICE, Pipeline
from ingest.store.sqlite import SQLiteReadingStore
from ingest.store.writer import ThreadWriter, WriterProcess
from plantwatch.metrics import Metrics
from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.settings import Settings
from tests.servers import Broker, mosquitto

N_SENSORS = 1000
TOPIC = "plants/e1/gw1/telemetry"


def make_registry() -> Registry:
    reg = Registry()
    reg.upsert_enterprise(Enterprise("e1"))
    for i in range(N_SENSORS):
        reg.upsert_sensor(Sensor("e1", f"S{i:04d}", "gas.combustible", device_id="gw1"))
    return reg


def make_payloads(n_msgs: int, per_msg: int, base_ms: int) -> list[bytes]:
    """Distinct (sensor, ts) per reading, so the store really inserts every one."""
    out: list[bytes] = []
    k = 0
    for _ in range(n_msgs):
        if per_msg == 1:
            v = 12.5 + (k % 7) if VALUES == "elevated" else 1.0 + (k % 7) * 0.1
            out.append(orjson.dumps({"sensor": f"S{k % N_SENSORS:04d}", "ts": base_ms + k, "value": v}))
            k += 1
        else:
            rs = []
            for _ in range(per_msg):
                v = 12.5 + (k % 7) if VALUES == "elevated" else 1.0 + (k % 7) * 0.1
                rs.append({"sensor": f"S{k % N_SENSORS:04d}", "value": v, "ts": base_ms + k})
                k += 1
            out.append(orjson.dumps({"ts": base_ms, "readings": rs}))
    return out


class EngineSink:
    """Alarm sink that runs the real vectorised engine (what the service does first)."""

    def __init__(self, registry: Registry) -> None:
        from alerts.engine import AlarmEngine

        self.engine = AlarmEngine(registry.sensors, registry.enterprises)
        self.transitions = 0

    def on_readings(self, batch: ReadingBatch, now_ms: int) -> None:
        self.transitions += len(self.engine.evaluate(batch.row, batch.ts_ms, batch.value, now_ms))

    def on_gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> None:
        pass


class CountingStore:
    """Wraps the reading store; sets ``done`` once ``target`` readings are written."""

    def __init__(self, inner: Any, target: int) -> None:
        self.inner = inner
        self.write_slice_readings = getattr(inner, "write_slice_readings", WRITE_SLICE)
        self.target = target
        self.written = 0
        self.done_at = 0.0
        self.done = asyncio.Event()

    def write_readings(self, batch: ReadingBatch) -> None:
        self.inner.write_readings(batch)
        self.written += len(batch)
        if self.written >= self.target and not self.done_at:
            self.done_at = time.perf_counter()
            self.done.set()


class CountingWriter:
    """Wraps the writer process (``--writer process``); sets ``done`` once ``target`` readings
    are reported committed by the child (the pipeline acks their messages in the same callback)."""

    def __init__(self, inner: Any, target: int) -> None:
        self.inner = inner
        self.target = target
        self.written = 0
        self.done_at = 0.0
        self.done = asyncio.Event()

    @property
    def inflight(self) -> int:
        return int(self.inner.inflight)

    @property
    def restarts(self) -> int:
        return int(self.inner.restarts)

    def submit(self, batch: ReadingBatch | None, done: Any) -> None:
        n = len(batch) if batch is not None else 0

        def counted(err: BaseException | None, seconds: float) -> None:
            done(err, seconds)
            if err is None:
                self.written += n
                if self.written >= self.target and not self.done_at:
                    self.done_at = time.perf_counter()
                    self.done.set()

        self.inner.submit(batch, counted)

    def start(self, *, wait_s: float = 0.0) -> None:
        self.inner.start(wait_s=wait_s)

    def start_and_wait(self) -> None:
        self.inner.start(wait_s=30.0)

    def close(self, timeout_s: float = 60.0) -> None:
        self.inner.close(timeout_s)


def create_session(broker: Broker, client_id: str) -> None:
    """Connect once with a persistent session and subscribe, so the broker queues for us."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.subscribe("plants/+/+/telemetry", qos=1)
    subscribed.wait(10)
    c.disconnect()
    c.loop_stop()


def preload(broker: Broker, payloads: list[bytes]) -> None:
    """Publish every payload at QoS 1 and wait for all PUBACKs."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    acked = [0]
    done = threading.Event()
    n = len(payloads)

    def on_publish(*_: Any) -> None:
        acked[0] += 1
        if acked[0] >= n:
            done.set()

    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    for p in payloads:
        c.publish(TOPIC, p, qos=1)
    if not done.wait(300):
        raise RuntimeError(f"preload: only {acked[0]} of {n} acked")
    c.disconnect()
    c.loop_stop()


def drain_paho(broker: Broker, client_id: str, n_msgs: int) -> float:
    """Seconds for a bare paho subscriber to receive ``n_msgs`` queued messages."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    got = [0]

    def on_message(client: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        got[0] += 1
        if got[0] >= n_msgs:
            client.disconnect()

    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect(broker.host, broker.port)
    c.loop_forever()
    return time.perf_counter() - t0


def make_sink(registry: Registry, kind: str) -> Any:
    return EngineSink(registry) if kind == "engine" else NullSink()


class NullSink:
    """Alarm sink that does nothing (isolates ingest from the alarm engine's cost)."""

    def on_readings(self, batch: ReadingBatch, now_ms: int) -> None:
        pass

    def on_gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> None:
        pass


SINK = "null"
#: "quiet": 1.0-1.6 %LEL, what a healthy plant sends (the engine's fast path); "elevated":
#: 12.5-18.5 %LEL swinging by 6 %LEL/s, above the rate-rule floor, so every reading takes
#: the full rule set and rate alarms flap (a worst case for the engine)
VALUES = "quiet"
STORE = "sqlite"  # or "influx": InfluxReadingStore -> a real victoria-metrics on loopback
WRITER = "process"  # SQLite writes in the writer process (the service's default), or "inline" on the loop


def drain_pipeline(broker: Broker, client_id: str, n_readings: int, data_dir: Path) -> float:
    """Seconds for Pipeline.run to store ``n_readings`` queued readings (SQLite + engine)."""
    reg = make_registry()
    if STORE == "influx":
        from ingest.store.influx import open_influx

        assert VM_URL, "victoria-metrics not started"
        inner: Any = open_influx(VM_URL, "token", "org", "bucket", data_dir / client_id, registry=reg)
    else:
        inner = SQLiteReadingStore(data_dir / f"{client_id}.sqlite3")
    store = CountingStore(inner, n_readings)
    writer: CountingWriter | None = None
    if WRITER == "process" and STORE == "sqlite":
        writer = CountingWriter(WriterProcess(data_dir / f"{client_id}.sqlite3"), n_readings)
    elif WRITER == "process":  # the service's default for InfluxDB: a writer thread
        writer = CountingWriter(ThreadWriter(inner), n_readings)
    done: Any = writer if writer is not None else store
    settings = Settings(mqtt_url=broker.url, mqtt_client_id=client_id, max_past_age_s=30 * 86400.0)
    pipe = Pipeline(settings, reg, store, make_sink(reg, SINK), Metrics(), writer=writer)

    async def main() -> float:
        if writer is not None:  # the service starts its writer child long before load arrives
            writer.start_and_wait()
        t0 = time.perf_counter()
        task = asyncio.create_task(pipe.run())
        await done.done.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pipe.close()
        return float(done.done_at - t0)

    try:
        return asyncio.run(main())
    finally:
        spooled = getattr(store.inner, "spooled_writes", 0)
        if spooled:
            print(f"  note: {spooled} batches went to the outage spool instead of the server", flush=True)
        store.inner.close()


VM_URL = ""


def bench_mqtt(per_msg: int, n_msgs: int, runs: int) -> dict[str, list[float]]:
    global VM_URL
    res: dict[str, list[float]] = {"paho": [], "pipeline": []}
    base = time.time_ns() // 1_000_000 - 20 * 86_400_000
    for run in range(runs):
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            broker = stack.enter_context(mosquitto(Path(tmp) / "mq"))
            if STORE == "influx":
                from tests.servers import victoria_metrics

                VM_URL = stack.enter_context(victoria_metrics(Path(tmp) / "vm")).url
            for mode in ("paho", "pipeline"):
                cid = f"bench-{mode}-{run}"
                create_session(broker, cid)
                # fresh timestamps every run and mode: nothing is an INSERT OR IGNORE no-op
                preload(broker, make_payloads(n_msgs, per_msg, base + (run * 2 + (mode == "pipeline")) * 10**7))
                if mode == "paho":
                    secs = drain_paho(broker, cid, n_msgs)
                else:
                    secs = drain_pipeline(broker, cid, n_msgs * per_msg, Path(tmp))
                res[mode].append(n_msgs * per_msg / secs)
                print(f"  run {run} {per_msg:>3}/msg {mode:8s} {n_msgs * per_msg / secs:12,.0f} readings/s"
                      f" ({secs:.2f} s)", flush=True)
    return res


def bench_process(per_msg: int, n_msgs: int, runs: int, store_kind: str) -> list[float]:
    out = []
    base = time.time_ns() // 1_000_000 - 86_400_000
    for run in range(runs):
        payloads = make_payloads(n_msgs, per_msg, base + run * 10**7)
        now = time.time_ns() // 1_000_000
        msgs = [(TOPIC, p, now) for p in payloads]
        reg = make_registry()
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = SQLiteReadingStore(Path(tmp) / "r.sqlite3")
            store: Any = sqlite if store_kind == "sqlite" else _NullStore()
            pipe = Pipeline(Settings(max_past_age_s=30 * 86400.0), reg, store, make_sink(reg, SINK), Metrics())
            chunk = max(1, 10_000 // per_msg)  # what one run() batch takes at most with the 1000-message window
            t0 = time.perf_counter()
            for i in range(0, len(msgs), chunk):
                pipe.process(msgs[i:i + chunk])
            secs = time.perf_counter() - t0
            sqlite.close()
        out.append(n_msgs * per_msg / secs)
    return out


class _NullStore:
    def write_readings(self, batch: ReadingBatch) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--single-msgs", type=int, default=100_000)
    ap.add_argument("--batch-msgs", type=int, default=10_000)
    ap.add_argument("--sink", choices=("null", "engine"), default="null",
                    help="alarm sink: nothing, or alerts.engine.AlarmEngine.evaluate")
    ap.add_argument("--skip-mqtt", action="store_true")
    ap.add_argument("--skip-process", action="store_true", help="no process()-only runs")
    ap.add_argument("--skip-single", action="store_true", help="only the 100-reading messages")
    ap.add_argument("--sensors", type=int, default=1000, help="sensors the readings cycle over (default 1000)")
    ap.add_argument("--store", choices=("sqlite", "influx"), default="sqlite",
                    help="pipeline's reading store in the MQTT runs (influx: a local victoria-metrics)")
    ap.add_argument("--writer", choices=("process", "inline"), default="process",
                    help="SQLite writes in a child process (the service's default) or on the event loop")
    ap.add_argument("--values", choices=("quiet", "elevated"), default="quiet",
                    help="reading values: quiet plant (default) or every reading near a threshold")
    args = ap.parse_args()
    global SINK, STORE, VALUES, WRITER, N_SENSORS
    SINK, STORE, VALUES, WRITER, N_SENSORS = args.sink, args.store, args.values, args.writer, args.sensors
    print(f"sink={SINK} store={STORE} values={VALUES} writer={WRITER} sensors={N_SENSORS}")
    med = statistics.median
    shapes = ((100, args.batch_msgs),) if args.skip_single else ((1, args.single_msgs), (100, args.batch_msgs))
    if not args.skip_process:
        print("process() only (no MQTT), readings/s:")
    for per_msg, n in shapes if not args.skip_process else ():
        for kind in ("null", "sqlite"):
            r = bench_process(per_msg, n, args.runs, kind)
            print(f"  {per_msg:>3}/msg store={kind:6s} median {med(r):12,.0f}  runs {[round(x) for x in r]}")
    if args.skip_mqtt:
        return
    print("end to end through Mosquitto (QoS 1, pre-loaded persistent session), readings/s:")
    summary = []
    for per_msg, n in shapes:
        res = bench_mqtt(per_msg, n, args.runs)
        p, q = med(res["paho"]), med(res["pipeline"])
        summary.append(f"  {per_msg:>3}/msg: bare paho {p:12,.0f}  pipeline {q:12,.0f}  ratio {q / p:.2f}")
    print("medians:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
