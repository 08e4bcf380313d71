"""``plantwatch replay`` and ``plantwatch evaluate``: offline runs of the alarm engine.

replay:   INPUT.csv (``timestamp,value``; epoch milliseconds or ISO 8601/RFC 3339, naive =
          UTC) → OUT.csv ``timestamp,value,anomaly_score,level`` via :func:`alerts.replay.replay`.
evaluate: simulator labels (``plantwatch simulate --labels-out``) and a run's alarms (the
          API's ``GET /api/v1/alarms`` JSON, or JSON lines) → detection report.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

CSV_HEADER = ("timestamp", "value", "anomaly_score", "level")


class InputError(ValueError):
    """A replay input problem, naming the file, line and field."""


def parse_ts_ms(text: str) -> int:
    """Epoch milliseconds from an integer string or an ISO 8601 / RFC 3339 date-time (naive = UTC)."""
    s = text.strip()
    if s.lstrip("-").isdigit():
        return int(s)
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def read_series(path: Path) -> tuple[list[str], np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, Any]]:
    """(raw timestamp strings, ts_ms, values) from a ``timestamp,value`` CSV with a header row.

    An empty or non-numeric value becomes NaN (not evaluated, like the service's rejection);
    an unparseable timestamp is an :class:`InputError` naming the line.
    """
    raw: list[str] = []
    ts: list[int] = []
    vals: list[float] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file; expected a header 'timestamp,value'")
        cols = [h.strip().lower() for h in header]
        if "timestamp" not in cols or "value" not in cols:
            raise InputError(f"{path}:1: header must name 'timestamp' and 'value' columns, got {header}")
        it, iv = cols.index("timestamp"), cols.index("value")
        for n, rec in enumerate(reader, start=2):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) <= max(it, iv):
                raise InputError(f"{path}:{n}: expected {len(cols)} columns, got {len(rec)}")
            try:
                ts.append(parse_ts_ms(rec[it]))
            except ValueError:
                raise InputError(f"{path}:{n}: timestamp {rec[it]!r} is neither epoch ms nor ISO 8601") from None
            try:
                vals.append(float(rec[iv]))
            except ValueError:
                vals.append(math.nan)
            raw.append(rec[it])
    return raw, np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)


def replay_main(args: argparse.Namespace) -> int:
    from alerts.replay import level_label, replay

    try:
        raw, ts, values = read_series(Path(args.input))
        rules = tomllib.loads(Path(args.rules).read_text(encoding="utf-8")) if args.rules else None
        res = replay(ts, values, args.kind, rules)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"plantwatch replay: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for r, v, s, lv in zip(raw, values.tolist(), res.score.tolist(), res.level.tolist(), strict=True):
            w.writerow((r, "" if not math.isfinite(v) else repr(v), f"{s:.6f}", level_label(lv)))
    counts = {level_label(k): int(c) for k, c in zip(*np.unique(res.level, return_counts=True), strict=True)}
    skipped = int((~np.isfinite(values)).sum())
    print(f"replayed {len(ts)} rows as {args.kind} (interval {res.interval_s:g} s) -> {out}; rows per level "
          f"{counts}" + (f"; {skipped} rows without a numeric value not evaluated" if skipped else ""),
          file=sys.stderr)
    return 0


def _fmt_ms(v: Any) -> str:
    return "—" if v is None else f"{v / 1000:.1f} s"


def evaluate_main(args: argparse.Namespace) -> int:
    from alerts.evaluation import evaluate_files

    try:
        report = evaluate_files(Path(args.labels), Path(args.alarms), grace_ms=int(args.grace_s * 1000),
                                sensor_days=args.sensor_days, sensor_count=args.sensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"plantwatch evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(render_report(report))
    return 0


def render_report(report: dict[str, Any]) -> str:
    """A terminal table of :meth:`alerts.evaluation.Evaluation.to_json`."""
    fa = report["false_alarms_per_sensor_day"]
    lines = [
        f"labels {report['labels']}, detection rate {report['detection_rate']:.1%}"
        f" ({report['under_graded']} caught below their expected level)",
        f"false alarms {report['false_alarms']} over {report['sensor_days']:.2f} sensor-days = "
        + (f"{fa:.3f} per sensor-day" if math.isfinite(fa) else "n/a (no sensor-time)"),
        f"time to detect: median {_fmt_ms(report['ttd_median_ms'])}, p95 {_fmt_ms(report['ttd_p95_ms'])}",
        f"NAB-style score (standard profile): {report['nab_score']:.1f}",
        "",
        f"{'incident kind':<28} {'labels':>6} {'caught':>6} {'rate':>7} {'median':>9} {'p95':>9}",
    ]
    for kind, k in report["per_kind"].items():
        lines.append(f"{kind:<28} {k['labels']:>6} {k['detected']:>6} {k['detection_rate']:>7.1%} "
                     f"{_fmt_ms(k['ttd_median_ms']):>9} {_fmt_ms(k['ttd_p95_ms']):>9}")
    if report["missed"]:
        lines += ["", "missed:"]
        lines += [f"  {m['kind']} {m['enterprise_id']}/{','.join(m['sensors'])} from {m['start_ms']} "
                  f"(expected {m['min_level']})" for m in report["missed"]]
    return "\n".join(lines)


def add_parsers(sub: Any) -> None:
    """Register ``replay`` and ``evaluate`` on the ``plantwatch`` argument parser."""
    p = sub.add_parser("replay", help="run a recorded series (timestamp,value CSV) through the alarm engine")
    p.add_argument("input", metavar="INPUT.csv", help="CSV with a header naming 'timestamp' and 'value'")
    p.add_argument("--kind", required=True, help="sensor kind, e.g. gas.combustible (see docs/alerts.md)")
    p.add_argument("--rules", metavar="FILE", help="TOML with [sensor] (thresholds, params, interval_s) "
                                                   "and [enterprise] (capacity_kw, production_status) overrides")
    p.add_argument("--out", required=True, metavar="OUT.csv", help="timestamp,value,anomaly_score,level per row")
    p = sub.add_parser("evaluate", help="score a run's alarms against simulator labels")
    p.add_argument("--labels", required=True, metavar="FILE", help="labels (plantwatch simulate --labels-out)")
    p.add_argument("--alarms", required=True, metavar="FILE", help="alarms: JSON list from GET /api/v1/alarms, "
                                                                   "or JSON lines")
    p.add_argument("--grace-s", type=float, default=60.0, help="seconds after a label's end that still count")
    p.add_argument("--sensor-days", type=float, default=None, help="observed sensor-days (default: inferred)")
    p.add_argument("--sensors", type=int, default=None, help="sensor count for the sensor-day figure")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
