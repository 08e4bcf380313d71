"""Benchmark what a registry change costs the service's event loop at fleet size.

Run:  python benchmarks/bench_registry.py [--sensors 100000] [--runs 5]

Every registration, enterprise change (a production-status order) and maintenance hold
saves the registry (``Registry.to_json`` into the SQLite alarm store) on the event loop,
and a registration or enterprise change makes the next reading batch recompile the engine
configuration (``AlarmEngine.sync``, which runs ``compile_config``). Both stall ingest and
alarms while they run. Timed here on the bench_engine registry (7 kinds, 200 sensors per
enterprise): the first save, a save after one more sensor is registered, the SQLite write of
the saved bytes, the compile, and the engine sync (no anomaly scorer: its state only grows
when capacity does); then the API's listing endpoints called in-process on that registry.
Medians of ``--runs``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import filled, registry

from alerts.compile import compile_config
from alerts.engine import AlarmEngine
from ingest.store.sqlite import open_sqlite


def _median_s(fn: Callable[[], object], runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    sensors, ents = registry(a.sensors)
    rows: list[tuple[str, float]] = []

    firsts = []
    for _ in range(a.runs):
        reg = filled(sensors, ents)
        t = time.perf_counter()
        reg.to_json()
        firsts.append(time.perf_counter() - t)
    rows.append(("first save: Registry.to_json", statistics.median(firsts)))
    k = [0]

    def register_and_save() -> bytes:
        k[0] += 1
        reg.add_sensors([{"enterprise_id": "E0", "id": f"NEW{k[0]}", "kind": "gas.toxic"}])
        return reg.to_json()

    rows.append(("save after one registration: Registry.to_json", _median_s(register_and_save, a.runs)))
    data = reg.to_json()
    with tempfile.TemporaryDirectory() as d:
        readings, alarms = open_sqlite(Path(d))
        try:
            rows.append((f"SQLite write of the saved registry ({len(data) / 1e6:.1f} MB)",
                         _median_s(lambda: alarms.save_snapshot("registry", data), a.runs)))
        finally:
            alarms.close()
            readings.close()
    rows.append(("compile_config", _median_s(lambda: compile_config(sensors, ents), a.runs)))
    eng = AlarmEngine(sensors, ents, anomaly=False)
    rows.append(("AlarmEngine.sync (recompile and rebuild)", _median_s(lambda: eng.sync(sensors, ents), a.runs)))
    # the API's listing endpoints, called in-process on the same registry (no HTTP, no FastAPI encoding)
    from fastapi import Response

    import api.routers.enterprises as api_ents
    import api.routers.sensors as api_sensors

    svc: Any = SimpleNamespace(registry=reg)  # all these endpoints read of the service
    paged = "limit" in inspect.signature(api_sensors.list_sensors).parameters  # older code: unpaged
    kw: dict[str, Any] = {"response": Response(), "limit": 1000, "offset": 0} if paged else {}

    def listing(ent: str | None) -> None:
        asyncio.run(api_sensors.list_sensors(svc=svc, enterprise_id=ent, kind=None, removed=False, **kw))

    rows.append(("GET /api/v1/sensors" + (" (first page of 1,000)" if paged else " (every sensor)"),
                 _median_s(lambda: listing(None), a.runs)))
    rows.append(("GET /api/v1/sensors?enterprise_id=E7", _median_s(lambda: listing("E7"), a.runs)))
    rows.append((f"GET /api/v1/enterprises ({len(ents)} enterprises, without the risk colours)",
                 _median_s(lambda: [api_ents._to_json(svc, e, {}) for e in reg.enterprises.values()], a.runs)))
    print(f"{a.sensors:,} sensors, median of {a.runs}\n")
    print("| step | seconds |\n|---|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
