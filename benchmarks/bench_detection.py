"""Detection quality on simulated plants: the service's alarm engine against ground truth.

Runs the bundled gas, dust and power scenarios and ``--random N`` generated ones (seeds
1..N, 3 plants each, ``--hours`` long) through ``alerts.engine.AlarmEngine`` exactly as the
service builds it (default rules, anomaly scorer on), tick by tick with ``now_ms`` = the
reading time, gateway last wills passed to ``gateway_status``. Every engine episode (a
(sensor, rule) pair from raise to clear) becomes an alarm record; ``alerts.evaluation``
scores them against the simulator's labels, as ``plantwatch evaluate`` does:
detection rate per incident kind, false alarms per sensor-day, median and p95 time to
detect, and the NAB-style score.

    .venv/bin/python benchmarks/bench_detection.py --random 10 --hours 24
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.engine import AlarmEngine
from alerts.evaluation import AlarmRecord, evaluate
from alerts.transitions import Transitions
from plantwatch.domain import Level
from plantwatch.registry import Registry
from simulators.scenario import Scenario, bundled_scenarios, generate_scenario, load_scenario
from simulators.testing import replay_through_engine

START = 1_795_388_400_000  # Monday 2026-11-23 07:00 +08:00


def run(sc: Scenario) -> tuple[list[AlarmRecord], list[Any], int, int]:
    """(alarm records, labels, sensors, span ms) of one scenario through the engine."""
    open_: dict[tuple[int, int], list[Any]] = {}  # (row, rule) -> [start, peak]
    records: list[AlarmRecord] = []
    regs: list[Registry] = []

    def take(eng: AlarmEngine, reg: Registry, tr: Transitions) -> None:
        if not regs:
            regs.append(reg)
        for r, u, lv, t in zip(tr.row.tolist(), tr.rule.tolist(), tr.level.tolist(), tr.ts_ms.tolist(),
                               strict=True):
            key = (r, u)
            ep = open_.get(key)
            if lv > 0 and ep is None:
                open_[key] = [t, lv]
            elif lv > 0 and ep is not None:
                ep[1] = max(ep[1], lv)
            elif lv == 0 and ep is not None:
                s = reg.sensors[r]
                records.append(AlarmRecord(s.enterprise_id, s.id, Level(ep[1]), ep[0], t, eng.rule_names[u]))
                del open_[key]

    eng, last = replay_through_engine(sc, START, take)
    reg = regs[0]
    for (r, u), (t0, peak) in open_.items():  # still raised at the end of the run
        s = reg.sensors[r]
        records.append(AlarmRecord(s.enterprise_id, s.id, Level(peak), t0, last, eng.rule_names[u]))
    return records, sc.labels(START), len(reg), last - START


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=10, help="random scenarios (seeds 1..N)")
    ap.add_argument("--hours", type=float, default=24.0, help="length of each random scenario")
    a = ap.parse_args()
    scenarios: list[tuple[str, Scenario]] = [(n, load_scenario(p)) for n, p in sorted(bundled_scenarios().items())
                                             if n in ("gas", "dust", "power")]
    scenarios += [(f"random-{s}", generate_scenario(s, plants=3, duration_s=a.hours * 3600.0))
                  for s in range(1, a.random + 1)]
    all_records: list[AlarmRecord] = []
    all_labels: list[Any] = []
    sensor_days = 0.0
    t0 = time.perf_counter()
    per_run = []
    for name, sc in scenarios:
        recs, labs, n_sensors, span = run(sc)
        # scenarios are independent plants: prefix ids so runs never match each other's labels
        recs = [AlarmRecord(f"{name}/{r.enterprise_id}", r.sensor_id, r.level, r.raised_at, r.updated_at, r.rule)
                for r in recs]
        labs = [{**lab.to_dict(), "enterprise_id": f"{name}/{lab.enterprise_id}"} for lab in labs]
        days = n_sensors * span / 86_400_000
        ev = evaluate(labs, recs, sensor_days=days)
        per_run.append((name, len(labs), ev.detection_rate, len(ev.false_alarms), days))
        all_records += recs
        all_labels += labs
        sensor_days += days
    secs = time.perf_counter() - t0
    ev = evaluate(all_labels, all_records, sensor_days=sensor_days)
    above_blue = [i for i in ev.false_alarms if all_records[i].level > Level.BLUE]
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {len(scenarios)} scenarios "
          f"in {secs:.1f} s; {sensor_days:.1f} sensor-days; {len(all_labels)} labels, {len(all_records)} alarms")
    print()
    print("| scenario | labels | detected | false alarms | sensor-days |")
    print("|---|---:|---:|---:|---:|")
    for name, n, rate, fa, days in per_run:
        print(f"| {name} | {n} | {rate:.0%} | {fa} | {days:.1f} |")
    print()
    print("| incident / fault kind | labels | detected | median time to detect | p95 |")
    print("|---|---:|---:|---:|---:|")

    def s(ms: float | None) -> str:
        return "-" if ms is None else f"{ms / 1000:.0f} s"
    for k, st in sorted(ev.per_kind.items()):
        print(f"| {k} | {st.labels} | {st.detected} ({st.detection_rate:.0%}) | {s(st.ttd_median_ms)} | "
              f"{s(st.ttd_p95_ms)} |")
    print()
    print(f"all: detection rate {ev.detection_rate:.1%}, time to detect median {s(ev.ttd_median_ms)}, "
          f"p95 {s(ev.ttd_p95_ms)}; false alarms {len(ev.false_alarms)} = "
          f"{ev.false_alarms_per_sensor_day:.3f} per sensor-day ({len(above_blue)} above blue = "
          f"{len(above_blue) / sensor_days:.4f} per sensor-day); under-graded {ev.under_graded}; "
          f"NAB-style score {ev.nab_score:.1f}")
    missed = [r.label for r in ev.results if r.label.expected and r.alarm is None]
    for lab in missed[:20]:
        print(f"  missed: {lab.kind} {lab.enterprise_id} {lab.sensors} min {lab.min_level.label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
