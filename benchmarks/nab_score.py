"""NAB benchmark: reproduce the published Numenta scores, then score plantwatch's AnomalyScorer.

Usage (from the repository root)::

    python benchmarks/nab_score.py [--nab ../shared/benchmarks/nab] [--json out.json]

All 58 series run through one :class:`alerts.anomaly.AnomalyScorer` as 58 sensor rows in
lockstep (sample t of every series in one vectorised call), exactly as the engine calls it.
Thresholds reported:

* ``fixed 0.5``: the scorer's built-in fire level (score 0.5 = Gaussian tail 1e-5 of the
  surprise), chosen before any NAB run;
* ``noAnomaly``: the smallest threshold with no detection on ``artificialNoAnomaly/*`` after
  probation (label-free: those series contain no anomaly by construction);
* ``optimised``: NAB's per-profile sweep over every distinct score value (tuned on labels).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerts.anomaly import AnomalyScorer  # noqa: E402
from alerts.nab import (  # noqa: E402
    PROFILE_NAMES,
    NabCorpus,
    load_corpus,
    load_profiles,
    load_result_scores,
    load_thresholds,
    probation_rows,
)

PUBLISHED = {  # NAB README scoreboard (standard, low FP, low FN)
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM (README: 70.5-69.7 / 62.6-61.7 / 75.2-74.2)": (70.1, 63.1, 74.3),
    "CAD OSE": (69.9, 67.0, 73.2),
    "earthgecko Skyline": (58.2, 46.2, 63.9),
    "KNN CAD": (58.0, 43.4, 64.8),
    "Relative Entropy": (54.6, 47.6, 58.8),
    "Random Cut Forest": (51.7, 38.4, 59.7),
    "Twitter ADVec": (47.1, 33.6, 53.5),
    "Windowed Gaussian": (39.6, 20.9, 47.4),
    "Bayesian Changepoint": (17.7, 3.2, 32.2),
}


def run_scorer(corpus: NabCorpus, **params: Any) -> tuple[list[np.ndarray], float, int]:
    """Scores of every file, wall seconds, and state bytes per sensor."""
    files = corpus.files
    k = len(files)
    lens = np.array([len(f.values) for f in files])
    width = int(lens.max())
    x = np.zeros((k, width))
    ts = np.zeros((k, width), dtype=np.int64)
    for i, f in enumerate(files):
        x[i, : lens[i]] = f.values
        ts[i, : lens[i]] = f.ts_ms
    out = np.zeros((k, width))
    sc = AnomalyScorer(k, **params)
    active = [np.flatnonzero(lens > t).astype(np.int32) for t in range(width)]
    t0 = time.perf_counter()
    for t in range(width):
        rows = active[t]
        out[rows, t] = sc.score_learn(rows, x[rows, t], ts[rows, t])
    dt = time.perf_counter() - t0
    return [out[i, : lens[i]] for i in range(k)], dt, sc.bytes_per_sensor()


def no_anomaly_threshold(corpus: NabCorpus, scores: list[np.ndarray]) -> float:
    """Smallest threshold with no detection on artificialNoAnomaly after probation."""
    top = 0.0
    for f, s in zip(corpus.files, scores, strict=True):
        if f.name.startswith("artificialNoAnomaly/"):
            top = max(top, float(s[probation_rows(len(s)) :].max()))
    return float(np.nextafter(top, np.inf))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "nab")
    ap.add_argument("--params", default="{}", help="JSON dict of AnomalyParams overrides")
    ap.add_argument("--json", type=Path, help="write all figures here")
    args = ap.parse_args()
    params = json.loads(args.params)

    t0 = time.perf_counter()
    corpus = load_corpus(args.nab)
    profiles = load_profiles(args.nab)
    t_load = time.perf_counter() - t0
    n_rows = sum(len(f.values) for f in corpus.files)
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu(), "python": platform.python_version(), "numpy": np.__version__},
        "corpus": {"files": len(corpus.files), "rows": n_rows, "windows": corpus.n_windows},
        "load_s": t_load,
    }

    # 1. Numenta reproduction from the shipped result files
    num = load_result_scores(args.nab / "results" / "numenta", "numenta", corpus)
    thr = load_thresholds(args.nab)["numenta"]
    published = json.loads((args.nab / "results" / "final_results.json").read_text())["numenta"]
    t0 = time.perf_counter()
    rep: dict[str, Any] = {}
    for name in PROFILE_NAMES:
        r = corpus.score(num, thr[name]["threshold"], profiles[name])
        sw = corpus.sweep(num, profiles[name])
        rep[name] = {
            "threshold": r.threshold,
            "score": r.normalised,
            "final_results_json": published[name],
            "raw": r.raw,
            "thresholds_json_raw": thr[name]["score"],
            "sweep_threshold": sw.threshold,
            "sweep_score": sw.normalised,
        }
    report["numenta"] = rep
    report["numenta_scoring_s"] = time.perf_counter() - t0

    # 2. our detector
    ours, run_s, bps = run_scorer(corpus, **params)
    t_na = no_anomaly_threshold(corpus, ours)
    res: dict[str, Any] = {"params": AnomalyScorer(1, **params).params_dict(), "noanomaly_threshold": t_na}
    for name in PROFILE_NAMES:
        fixed = corpus.score(ours, 0.5, profiles[name])
        na = corpus.score(ours, t_na, profiles[name])
        sw = corpus.sweep(ours, profiles[name])
        res[name] = {
            "fixed_0.5": fixed.normalised,
            "fixed_counts": {"tp_windows": fixed.tp, "fp_rows": fixed.fp, "fn_windows": fixed.fn},
            "noanomaly": na.normalised,
            "optimised": sw.normalised,
            "optimised_threshold": sw.threshold,
        }
    res["run_s"] = run_s
    res["samples_per_s"] = n_rows / run_s
    res["bytes_per_sensor"] = bps
    report["plantwatch"] = res

    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _print(rep: dict[str, Any]) -> None:
    c = rep["corpus"]
    print(f"machine: {rep['machine']}")
    print(f"corpus: {c['files']} files, {c['rows']} rows, {c['windows']} windows (load {rep['load_s']:.2f} s)")
    print("\nNumenta reproduction (shipped results/numenta, thresholds.json):")
    for name, r in rep["numenta"].items():
        print(
            f"  {name:20s} {r['score']:.4f}  (final_results.json {r['final_results_json']:.4f}; "
            f"raw {r['raw']:.6f} vs {r['thresholds_json_raw']:.6f}; sweep {r['sweep_score']:.2f}"
            f" @ {r['sweep_threshold']:.4f})"
        )
    print(f"  scoring 3 profiles + sweeps: {rep['numenta_scoring_s']:.2f} s")
    ours = rep["plantwatch"]
    print(
        f"\nplantwatch AnomalyScorer: {ours['run_s']:.2f} s for {c['rows']} samples "
        f"({ours['samples_per_s']:.0f} samples/s, 58 sensors per call), {ours['bytes_per_sensor']} B/sensor"
    )
    print(f"  noAnomaly-derived threshold: {ours['noanomaly_threshold']:.6f}")
    print("\n| detector | standard | low FP | low FN |\n|---|---|---|---|")
    for label, key in (
        ("plantwatch, fixed 0.5", "fixed_0.5"),
        ("plantwatch, noAnomaly threshold", "noanomaly"),
        ("plantwatch, optimised", "optimised"),
    ):
        vals = " | ".join(f"{ours[p][key]:.1f}" for p in PROFILE_NAMES)
        print(f"| {label} | {vals} |")
    vals = " | ".join(f"{rep['numenta'][p]['score']:.1f}" for p in PROFILE_NAMES)
    print(f"| Numenta HTM (reproduced here) | {vals} |")
    for name, v in PUBLISHED.items():
        print(f"| {name} (published) | {v[0]:.1f} | {v[1]:.1f} | {v[2]:.1f} |")
    fc = ours["standard"]["fixed_counts"]
    print(f"\nfixed 0.5, standard: {fc['tp_windows']} windows hit, {fc['fn_windows']} missed, {fc['fp_rows']} FP rows")


if __name__ == "__main__":
    main()
