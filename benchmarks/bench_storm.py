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
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import T0, filled, registry

from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.service import Service
from plantwatch.settings import Settings


def _service(d: str, reg: Registry, now: list[int]) -> Service:
    def clock(now: list[int] = now) -> int:
        return now[0]

    return Service(Settings(data_dir=Path(d), store_writer="inline"), clock=clock, registry=reg)


def _close(svc: Service) -> None:
    svc.readings.close()
    svc.alarms.close()


def run_blocking(sensors: list[Sensor], ents: dict[str, Enterprise]) -> tuple[float, float, int]:
    """The storm tick with no event loop (everything at once): its time, the next tick's, alarms."""
    now = [T0]
    with tempfile.TemporaryDirectory() as d:
        svc = _service(d, filled(sensors, ents), now)
        try:
            svc.tick(now[0])  # never-seen sensors: the deadman counts from here
            now[0] += 25_000  # > 3 x their 5 s interval
            t = time.perf_counter()
            svc.tick(now[0])
            storm = time.perf_counter() - t
            opened = len(svc.book)
            now[0] += 1000
            t = time.perf_counter()
            svc.tick(now[0])
            return storm, time.perf_counter() - t, opened
        finally:
            _close(svc)


async def _in_loop(svc: Service, now: list[int]) -> tuple[float, float, float, int, bool]:
    """The storm tick inside a running event loop, as the service runs it: a heartbeat task
    measures the longest gap between its turns, a WebSocket-like subscriber drains its queue."""
    sub = svc.hub.subscribe()
    received = 0
    gaps = [0.0]
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            t = time.perf_counter()
            gaps[0] = max(gaps[0], t - last)
            last = t

    async def reader() -> None:
        nonlocal received
        while await sub.queue.get() is not None:
            received += 1

    hb = asyncio.create_task(heartbeat())
    rd = asyncio.create_task(reader())
    svc.tick(now[0])
    now[0] += 25_000
    await asyncio.sleep(0)
    gaps[0] = 0.0
    t = time.perf_counter()
    svc.tick(now[0])
    first = time.perf_counter() - t
    if svc._drain_task is not None:
        await svc._drain_task
    total = time.perf_counter() - t
    stop.set()
    await hb
    for _ in range(3):
        await asyncio.sleep(0)  # the reader takes what is queued
    overflowed = sub.overflowed
    svc.hub.close()
    await rd
    return first, total, gaps[0], received, overflowed


def run_in_loop(sensors: list[Sensor], ents: dict[str, Enterprise]) -> tuple[float, float, float, int, bool]:
    now = [T0]
    with tempfile.TemporaryDirectory() as d:
        svc = _service(d, filled(sensors, ents), now)
        try:
            return asyncio.run(_in_loop(svc, now))
        finally:
            _close(svc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    sensors, ents = registry(a.sensors)
    blocking = [run_blocking(sensors, ents) for _ in range(a.runs)]
    med = statistics.median(b[0] for b in blocking)
    opened = blocking[-1][2]
    print(f"{a.sensors:,} sensors, median of {a.runs}: storm tick without an event loop {med:.2f} s "
          f"({opened:,} alarms raised, {med / max(opened, 1) * 1e6:.0f} us per alarm), "
          f"next tick {statistics.median(b[1] for b in blocking) * 1e3:.1f} ms")
    looped = [run_in_loop(sensors, ents) for _ in range(a.runs)]
    med_l = [statistics.median(x[k] for x in looped) for k in range(3)]
    print(f"in the event loop, median of {a.runs}: storm tick {med_l[0] * 1e3:.0f} ms (the most severe slice), "
          f"all applied after {med_l[1]:.2f} s, longest stall of the loop {med_l[2] * 1e3:.0f} ms; "
          f"a subscriber received {looped[-1][3]:,} messages, overflowed: {looped[-1][4]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
