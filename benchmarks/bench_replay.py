"""Restart catch-up: how fast the service replays stored readings into a restored engine.

Usage: python benchmarks/bench_replay.py [--sensors 10000] [--seconds 100] [--runs 3] [--store sqlite|journal]

Writes ``--seconds`` readings per sensor (one per second, all sensors each second; write
transactions of about 100k readings, as the writer process merges them) into a fresh SQLite
file, restores an engine from a snapshot taken before any of it, then times what
``Service._catch_up`` does after a kill -9: ``SQLiteReadingStore.readings_after(mark)``,
the key-to-row mapping and ``AlarmEngine.replay``. Median of ``--runs``. ``--store journal``
does the same with the InfluxDB backend's replay journal (``ReplayJournal``, one row per
written batch, in arrival order) instead of the SQLite store's per-sensor chunks.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.engine import AlarmEngine
from ingest.batch import ReadingBatch
from ingest.store.sqlite import ReplayJournal, SQLiteReadingStore
from plantwatch.registry import Registry

T0 = 1_795_459_488_000


def run(sensors: int, seconds: int, kind: str = "sqlite") -> tuple[int, float]:
    reg = Registry()
    reg.load({"enterprise": [{"id": "E1"}],
              "sensor": [{"enterprise_id": "E1", "device_id": f"GW{i // 100}", "id": f"S{i}",
                          "kind": "gas.combustible"} for i in range(sensors)]})
    with tempfile.TemporaryDirectory() as d:
        store = (ReplayJournal if kind == "journal" else SQLiteReadingStore)(Path(d) / "readings.sqlite3")
        engine = AlarmEngine(reg.sensors, reg.enterprises)
        engine.restore(engine.snapshot())
        mark = store.replay_mark()
        ent = np.array(["E1"] * sensors, dtype=object)
        dev = np.array([f"GW{i // 100}" for i in range(sensors)], dtype=object)
        sen = np.array([f"S{i}" for i in range(sensors)], dtype=object)
        rng = np.random.default_rng(0)
        step = max(1, 100_000 // sensors)
        for k in range(0, seconds, step):
            idx = np.tile(np.arange(sensors), min(step, seconds - k))
            t = T0 + np.repeat(np.arange(k, k + min(step, seconds - k)), sensors) * 1000
            n = len(idx)
            store.write_readings(ReadingBatch(ent[idx], dev[idx], sen[idx], t, rng.uniform(0, 20, n),
                                              np.zeros(n, np.uint8), t + 5, idx.astype(np.int32)))
        t0 = time.perf_counter()
        n = 0
        for part in store.readings_after(mark):
            rows = np.array(reg.rows_for(*zip(*part.keys, strict=True)), np.int32)[part.series]
            engine.replay(rows, part.ts_ms, part.value, int(part.received_ms.max()))
            n += len(part)
        dt = time.perf_counter() - t0
        store.close()
    return n, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", choices=("sqlite", "journal"), default="sqlite")
    a = ap.parse_args()
    rates = []
    for _ in range(a.runs):
        n, dt = run(a.sensors, a.seconds, a.store)
        rates.append(n / dt)
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{a.store}: {a.sensors} sensors x {a.seconds} s = {n:,} readings: median "
          f"{statistics.median(rates):,.0f} readings/s replayed (runs: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
