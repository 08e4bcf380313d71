"""Store benchmarks: SQLite write rate, line-protocol build rate, InfluxDB-backend write rate.

Usage: python benchmarks/bench_store.py [--runs 5] [--batches 30] [--batch 10000]

Each figure is the median of ``--runs`` runs; every run writes ``--batches`` batches of
``--batch`` readings (1000 sensors × batch/1000 timestamps, all registered) into fresh
files. The InfluxDB backend writes over HTTP (gzip, ms precision) to a local
victoria-metrics started here on a free loopback port; each ``write_readings`` returns
after the server answered 204.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.batch import ReadingBatch
from ingest.store.buffer import Spool
from ingest.store.influx import InfluxHttp, InfluxReadingStore, LineBuilder
from ingest.store.sqlite import SQLiteReadingStore
from tests.servers import victoria_metrics
from tests.store._util import grid_batch

T0 = 1_795_459_488_000
SENSORS = 1000


def batches(n: int, size: int, offset: int = 0) -> list[ReadingBatch]:
    steps = max(1, size // SENSORS)
    return [grid_batch(SENSORS, steps, T0 + (offset + k) * steps * 1000, seed=k) for k in range(n)]


def median_rate(runs: int, one: Callable[[], tuple[int, float]]) -> tuple[float, list[float]]:
    rates = []
    for _ in range(runs):
        n, dt = one()
        rates.append(n / dt)
    return statistics.median(rates), rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    data = batches(args.batches, args.batch)
    total = sum(len(b) for b in data)
    results: list[tuple[str, float, list[float]]] = []
    logging.disable(logging.WARNING)  # the server-down run logs one warning per batch

    def sqlite_run() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as d:
            s = SQLiteReadingStore(Path(d) / "r.sqlite3")
            t = time.perf_counter()
            for b in data:
                s.write_readings(b)
            dt = time.perf_counter() - t
            s.close()
        return total, dt

    results.append(("SQLite write_readings (WAL, synchronous=NORMAL)", *median_rate(args.runs, sqlite_run)))

    spread = [grid_batch(10_000, 1, T0 + k * 1000, seed=k) for k in range(30)]

    def sqlite_spread_run() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as d:
            s = SQLiteReadingStore(Path(d) / "r.sqlite3")
            t = time.perf_counter()
            for b in spread:
                s.write_readings(b)
            dt = time.perf_counter() - t
            s.close()
        return 300_000, dt

    results.append(("SQLite write_readings, worst case: 10k batches of 10k distinct sensors (1 reading each)",
                    *median_rate(args.runs, sqlite_spread_run)))

    def sqlite_redelivery_run() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as d:
            s = SQLiteReadingStore(Path(d) / "r.sqlite3")
            for b in data:
                s.write_readings(b)
            t = time.perf_counter()
            for b in data:  # every reading already stored: INSERT OR IGNORE path
                s.write_readings(b)
            dt = time.perf_counter() - t
            s.close()
        return total, dt

    results.append(("SQLite write_readings, full redelivery (all duplicates)",
                    *median_rate(args.runs, sqlite_redelivery_run)))

    # one longer run: an hour of 1000 sensors at 1 Hz (3.6 M readings), then history queries
    timings: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as d:
        s = SQLiteReadingStore(Path(d) / "r.sqlite3")
        hour = [grid_batch(SENSORS, 10, T0 + k * 10_000, seed=k) for k in range(360)]
        t = time.perf_counter()
        for b in hour:
            s.write_readings(b)
        results.append(("SQLite write_readings, 3.6 M readings (360 batches of 1000 sensors x 10) into one file, "
                        "single run",
                        3_600_000 / (time.perf_counter() - t), []))
        for name, fn in (("query_readings: 1 h of one 1 Hz sensor (3600 rows)",
                          lambda: s.query_readings("E1", "S-0500", T0, T0 + 3_600_000, 10**6)),
                         ("query_aggregate: 1 h of one sensor, 1-min windows (60 rows)",
                          lambda: s.query_aggregate("E1", "S-0500", T0, T0 + 3_600_000, 60_000))):
            ts = []
            for _ in range(args.runs):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            timings.append((name, statistics.median(ts)))
        s.close()

    def lp_run() -> tuple[int, float]:
        lb = LineBuilder(lambda row: ("gas.combustible", "tank farm"))
        lb.build(data[0])  # tag prefixes cached per row, as in the service
        t = time.perf_counter()
        for b in data:
            lb.build(b)
        return total, time.perf_counter() - t

    results.append(("line protocol build (LineBuilder.build)", *median_rate(args.runs, lp_run)))

    def lp_gzip_run() -> tuple[int, float]:
        import zlib
        lb = LineBuilder(lambda row: ("gas.combustible", "tank farm"))
        lb.build(data[0])
        t = time.perf_counter()
        for b in data:
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            c.compress(lb.build(b))
            c.flush()
        return total, time.perf_counter() - t

    results.append(("line protocol build + gzip level 1", *median_rate(args.runs, lp_gzip_run)))

    def spool_run() -> tuple[int, float]:
        class Down:
            def write(self, body_gz: bytes, timeout_ms: int | None = None) -> None:
                from ingest.store.base import StoreUnavailable
                raise StoreUnavailable("influx", "write", "down")

            def close(self) -> None:
                pass

        with tempfile.TemporaryDirectory() as d:
            s = InfluxReadingStore(Down(), Spool(Path(d) / "spool", 1 << 32), background=False)
            t = time.perf_counter()
            for b in data:
                s.write_readings(b)
            dt = time.perf_counter() - t
            s.close()
        return total, dt

    results.append(("Influx backend, server down: spooled (fsync per batch)", *median_rate(args.runs, spool_run)))

    with tempfile.TemporaryDirectory() as d, victoria_metrics(Path(d) / "vm") as vm:
        run_no = [0]

        def influx_run() -> tuple[int, float]:
            run_no[0] += 1
            fresh = batches(args.batches, args.batch, offset=run_no[0] * args.batches)
            with tempfile.TemporaryDirectory() as sd:
                http = InfluxHttp(vm.url, "t", "o", "b", timeout_ms=30_000)
                s = InfluxReadingStore(http, Spool(Path(sd) / "spool", 1 << 32),
                                       builder=LineBuilder(lambda row: ("gas.combustible", "tank farm")),
                                       background=False)
                t = time.perf_counter()
                for b in fresh:
                    s.write_readings(b)
                dt = time.perf_counter() - t
                assert s.spooled_writes == 0, "a write fell back to the spool: not a clean run"
                s.close()
            return total, dt

        results.append(("Influx backend -> local victoria-metrics (HTTP, gzip)",
                        *median_rate(args.runs, influx_run)))

    print(f"# {platform.node()} | {platform.processor() or platform.machine()} | Python {platform.python_version()}"
          f" | runs={args.runs} batches={args.batches} batch={args.batch} sensors={SENSORS}")
    print("| what | median readings/s | all runs |")
    print("|---|---:|---|")
    for name, med, rates in results:
        print(f"| {name} | {med:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")
    print()
    print("| SQLite query | median ms |")
    print("|---|---:|")
    for name, sec in timings:
        print(f"| {name} | {sec * 1000:.2f} |")


if __name__ == "__main__":
    main()
