"""Publish-to-alarm latency under load, end to end, on real parts.

Starts a real Mosquitto and ``plantwatch serve`` (a subprocess, as users run it),
measures the service's maximum ingest rate for 100-reading batch messages, then
loads it at half that rate while a probe sensor crosses the 25 %LEL threshold every
``--probe-ms`` (raise, then clear). Latency = time the alarm event arrives on the
WebSocket - the probe reading's own timestamp (set just before publishing).

    .venv/bin/python benchmarks/bench_latency.py --sensors 2000 --seconds 20 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import websockets  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from tests.e2e.service import RunningService, plantwatch_serve, wait_for  # noqa: E402
from tests.servers import mosquitto  # noqa: E402


def config(n_sensors: int) -> str:
    parts = ['[[enterprise]]\nid = "E1"\n']
    parts += [f'[[sensor]]\nenterprise_id = "E1"\ndevice_id = "GW1"\nid = "S{i}"\nkind = "gas.combustible"\n'
              for i in range(n_sensors)]
    parts.append('[[sensor]]\nenterprise_id = "E1"\ndevice_id = "GW2"\nid = "PROBE"\nkind = "gas.combustible"\n')
    return "\n".join(parts)


def readings_total(svc: RunningService) -> float:
    m = re.search(r"^plantwatch_ingest_readings_total ([0-9.e+]+)$", svc.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def batch_payload(n_sensors: int, start: int, now_ms: int) -> bytes:
    rs = [{"sensor": f"S{(start + j) % n_sensors}", "value": 5.0 + ((start + j) % 7) * 0.1} for j in range(100)]
    return json.dumps({"ts": now_ms, "readings": rs}).encode()


def client(host: str, port: int, cid: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    return c


def max_rate(svc: RunningService, c: mqtt.Client, n_sensors: int, n_msgs: int) -> float:
    """Readings/s the service ingests when 100-reading messages arrive as fast as possible."""
    base = readings_total(svc)
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    info = None
    for i in range(n_msgs):
        info = c.publish("plants/E1/GW1/telemetry", batch_payload(n_sensors, i * 100, now), qos=1)
    assert info is not None
    info.wait_for_publish(120)
    wait_for(lambda: readings_total(svc) >= base + n_msgs * 100, 120.0, "all load readings ingested")
    return n_msgs * 100 / (time.perf_counter() - t0)


async def latency_run(svc: RunningService, c: mqtt.Client, n_sensors: int, rate: float, seconds: float,
                      probe_ms: int, missed: list[int], probe_high: list[bool]) -> list[float]:
    """``probe_high[0]``: the next probe value is high (carried over runs, so every probe
    is a real crossing: the first probe of a run must not repeat the last one's level)."""
    stop = threading.Event()
    seen: list[tuple[str, str, str]] = []

    def load() -> None:
        msgs_per_s = rate / 100.0
        t0 = time.perf_counter()
        sent = 0
        i = 0
        while not stop.is_set():
            due = int((time.perf_counter() - t0) * msgs_per_s)
            now = int(time.time() * 1000)
            while sent < due:
                c.publish("plants/E1/GW1/telemetry", batch_payload(n_sensors, i, now), qos=1)
                sent += 1
                i += 100
            time.sleep(0.005)  # pacing of the load generator, not a test wait

    lat: list[float] = []
    uri = f"ws://127.0.0.1:{svc.port}/api/v1/alarms/stream"
    async with websockets.connect(uri, max_queue=None) as ws:
        th = threading.Thread(target=load, daemon=True)
        th.start()
        probe = client("127.0.0.1", BROKER_PORT, "probe")
        end = time.monotonic() + seconds
        high = probe_high[0]
        try:
            while time.monotonic() < end:
                ts = int(time.time() * 1000)
                probe.publish("plants/E1/GW2/telemetry",
                              json.dumps({"sensor": "PROBE", "ts": ts, "value": 30.0 if high else 2.0}), qos=1)
                want = ("raised", "reactivated") if high else ("cleared",)
                deadline = time.monotonic() + 5
                got = False
                while not got and time.monotonic() < deadline:
                    try:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
                    except TimeoutError:
                        break
                    ev, al = msg["event"], msg["alarm"]
                    seen.append((al["sensor_id"], al["rule"], ev["type"]))
                    if al["sensor_id"] == "PROBE" and al["rule"] == "high" and ev["type"] in want:
                        lat.append(time.time() * 1000 - ts)
                        got = True
                if not got:
                    missed.append(ts)
                    print(f"probe {'high' if high else 'low'} at {ts}: no {want} event within 5 s; "
                          f"last events {seen[-5:]}", file=sys.stderr, flush=True)
                high = not high
                await asyncio.sleep(probe_ms / 1000)
        finally:
            probe_high[0] = high
            stop.set()
            th.join()
            probe.loop_stop()
            probe.disconnect()
    return lat


BROKER_PORT = 0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    global BROKER_PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=2000)
    ap.add_argument("--msgs", type=int, default=3000, help="100-reading messages for the max-rate phase")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--probe-ms", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--writer", choices=("process", "inline", "default"), default="default",
                    help="PLANTWATCH_STORE_WRITER for the service (default: the service's own default)")
    args = ap.parse_args()
    env = {} if args.writer == "default" else {"PLANTWATCH_STORE_WRITER": args.writer}
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp) / "mq") as broker:
        BROKER_PORT = broker.port
        with plantwatch_serve(Path(tmp) / "svc", broker.url, config(args.sensors), env) as svc:
            c = client(broker.host, broker.port, "load")
            rates = [max_rate(svc, c, args.sensors, args.msgs) for _ in range(args.runs)]
            r_max = statistics.median(rates)
            print(f"max rate runs {[round(r) for r in rates]}", file=sys.stderr, flush=True)
            results = []
            probe_high = [True]
            for _ in range(args.runs):
                missed: list[int] = []
                lat = asyncio.run(latency_run(svc, c, args.sensors, r_max / 2, args.seconds, args.probe_ms, missed,
                                              probe_high))
                results.append((statistics.median(lat), pct(lat, 0.99), len(lat), len(missed)))
                print(f"latency run: {results[-1]}", file=sys.stderr, flush=True)
            c.loop_stop()
            c.disconnect()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"writer {args.writer}")
    print(f"max ingest rate (100-reading messages, QoS 1, SQLite store): runs {[round(r) for r in rates]} "
          f"median {r_max:,.0f} readings/s")
    for i, (p50, p99, n, lost) in enumerate(results):
        print(f"run {i}: load {r_max / 2:,.0f} readings/s, {n} probe events, {lost} not seen within 5 s, "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"median over runs: p50 {statistics.median(r[0] for r in results):.1f} ms, "
          f"p99 {statistics.median(r[1] for r in results):.1f} ms")


if __name__ == "__main__":
    main()
