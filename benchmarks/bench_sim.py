"""Benchmark the simulators: readings generated per second (numpy model, and model + MQTT
payload encoding) and readings published per second to a real Mosquitto, batched and
unbatched, QoS 0 and 1, as fast as possible.

Run:  python benchmarks/bench_sim.py [--plants 20] [--sensors-per-plant 500] [--seconds 60]
                                     [--out docs/bench/simulators.md]

Workload: the load-mode scenario (``--plants`` gateways × ``--sensors-per-plant`` sensors,
kinds cycling through the gas, dust and power catalogue, 1 reading/s each) for
``--seconds`` of virtual time. Publishing goes to a Mosquitto on 127.0.0.1 started here
(no subscriber, so the broker only accepts and drops); each case is run ``--runs`` times
and the median is reported. Unbatched cases use a tenth of the virtual time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.publish import run
from simulators.scenario import Scenario, load_mode_scenario
from simulators.stream import plant_messages
from tests.servers import mosquitto

START_MS = 1_795_388_400_000


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def bench_model(sc: Scenario, runs: int) -> float:
    """Readings/s of the numpy model alone (values + due mask, no encoding)."""
    rates = []
    for _ in range(runs):
        plant = sc.plant(START_MS)
        t0 = time.perf_counter()
        n = sum(int(b.due.sum()) for b in plant.blocks())
        rates.append(n / (time.perf_counter() - t0))
    return _median(rates)


def bench_encode(sc: Scenario, batch: bool, runs: int) -> tuple[float, float]:
    """(readings/s, messages/s) of model + payload encoding."""
    r, m = [], []
    for _ in range(runs):
        plant = sc.plant(START_MS)
        t0 = time.perf_counter()
        n = msgs = 0
        for msg in plant_messages(plant, batch=batch):
            n += msg.readings
            msgs += 1
        dt = time.perf_counter() - t0
        r.append(n / dt)
        m.append(msgs / dt)
    return _median(r), _median(m)


def bench_publish(sc: Scenario, url: str, batch: bool, qos: int, runs: int) -> tuple[float, float, int]:
    r, m, n = [], [], 0
    for _ in range(runs):
        stats = asyncio.run(run(sc, url, speed=math.inf, qos=qos, batch=batch, start_ms=START_MS,
                                announce_offline=False))
        r.append(stats.readings_per_s)
        m.append(stats.messages_per_s)
        n = stats.readings
    return _median(r), _median(m), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plants", type=int, default=20)
    ap.add_argument("--sensors-per-plant", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    sc = load_mode_scenario(a.plants, a.sensors_per_plant, 1.0, duration_s=a.seconds, start_ms=START_MS)
    short = sc.with_duration(max(1.0, a.seconds / 10))
    n_sensors = a.plants * a.sensors_per_plant
    rows = [("model only (numpy)", "-", "-", f"{bench_model(sc, a.runs):,.0f}", "-", "-")]
    for batch in (True, False):
        r, m = bench_encode(sc if batch else short, batch, a.runs)
        rows.append(("model + JSON payloads", "batch" if batch else "single", "-", f"{r:,.0f}", f"{m:,.0f}", "-"))
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as broker:
        for batch in (True, False):
            for qos in (0, 1):
                r, m, n = bench_publish(sc if batch else short, broker.url, batch, qos, a.runs)
                rows.append(("published to Mosquitto", "batch" if batch else "single", str(qos), f"{r:,.0f}",
                             f"{m:,.0f}", f"{n:,}"))
    head = (f"Simulator throughput — {n_sensors:,} sensors on {a.plants} gateways, 1 reading/s each, "
            f"{a.seconds:g} s virtual (single: {a.seconds / 10:g} s); median of {a.runs} runs\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.platform()}\n\n"
            "| stage | messages | QoS | readings/s | messages/s | readings |\n|---|---|---|---:|---:|---:|\n")
    table = head + "".join(f"| {' | '.join(r)} |\n" for r in rows)
    print(table)
    if a.out:
        a.out.write_text(table)


if __name__ == "__main__":
    main()
