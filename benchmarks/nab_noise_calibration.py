"""False-fire rate of AnomalyScorer on white noise, and its throughput on large batches.

Usage: ``python benchmarks/nab_noise_calibration.py [--sensors 20] [--samples 20000]``.
Counts scores at or above 0.5 / 0.6 / 0.7 / 0.8 after the first 1000 samples of each
sensor (the long-run statistics settle in about 1 / alpha_long samples).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.anomaly import AnomalyScorer

T0 = 1_700_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--samples", type=int, default=20_000)
    args = ap.parse_args()
    k, n = args.sensors, args.samples
    x = 20.0 + np.random.default_rng(0).normal(0.0, 1.0, (k, n))
    sc = AnomalyScorer(k)
    rows = np.arange(k, dtype=np.int32)
    s = np.zeros((k, n))
    for t in range(n):
        s[:, t] = sc.score_learn(rows, x[:, t], np.full(k, T0 + t * 60_000, dtype=np.int64))
    tail = s[:, 1000:]
    print(f"white noise, {k} sensors x {n} samples (first 1000 of each not counted)")
    for th in (0.5, 0.6, 0.7, 0.8):
        rate = float((tail >= th).mean())
        print(f"  score >= {th}: {rate:.2e} per sample = {rate * 1440:.3f} per sensor-day at 1 sample/min")

    print("throughput (one call = one sample of every sensor):")
    for m in (1_000, 10_000, 100_000):
        sc = AnomalyScorer(m)
        rows = np.arange(m, dtype=np.int32)
        vals = np.random.default_rng(1).normal(size=(30, m))
        t0 = time.perf_counter()
        for t in range(30):
            sc.score_learn(rows, vals[t], np.full(m, T0 + t * 60_000, dtype=np.int64))
        dt = time.perf_counter() - t0
        print(f"  {m:>7} sensors per call: {30 * m / dt / 1e6:.2f} M samples/s, {sc.bytes_per_sensor()} B/sensor")


if __name__ == "__main__":
    main()
