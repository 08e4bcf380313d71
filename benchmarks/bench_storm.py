"""Benchmark an alarm storm: every sensor of the fleet goes silent at once.

Run:  python benchmarks/bench_storm.py [--sensors 20000] [--runs 3]

The case a monitoring centre fears most is the one where everything alarms together: its
uplink or broker is cut, no gateway last will arrives, and every sensor's deadman fires in
the same tick. The whole storm (engine transitions, the alarm book, the SQLite alarm store,
the WebSocket messages) runs on the service's event loop. Timed here: one ``Service.tick``
that raises a deadman alarm for each of ``--sensors`` sensors (the bench_engine registry,
SQLite store in a temporary directory, an injected clock), median of ``--runs`` fresh
services; and the next tick, with all of them open.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import T0, filled, registry

from plantwatch.service import Service
from plantwatch.settings import Settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    sensors, ents = registry(a.sensors)
    storm: list[float] = []
    after: list[float] = []
    opened = 0
    for _ in range(a.runs):
        reg = filled(sensors, ents)
        now = [T0]

        def clock(now: list[int] = now) -> int:
            return now[0]

        with tempfile.TemporaryDirectory() as d:
            svc = Service(Settings(data_dir=Path(d), store_writer="inline"), clock=clock, registry=reg)
            try:
                svc.tick(now[0])  # never-seen sensors: the deadman counts from here
                now[0] += 25_000  # > 3 x their 5 s interval
                t = time.perf_counter()
                svc.tick(now[0])
                storm.append(time.perf_counter() - t)
                opened = len(svc.book.open_alarms())
                now[0] += 1000
                t = time.perf_counter()
                svc.tick(now[0])
                after.append(time.perf_counter() - t)
            finally:
                svc.readings.close()
                svc.alarms.close()
    med = statistics.median(storm)
    print(f"{a.sensors:,} sensors, median of {a.runs}: storm tick {med:.2f} s ({opened:,} alarms raised, "
          f"{med / max(opened, 1) * 1e6:.0f} us per alarm), next tick {statistics.median(after) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
