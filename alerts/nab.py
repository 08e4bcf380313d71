"""NAB (Numenta Anomaly Benchmark v1.1) scoring, implemented independently from its formula.

The corpus is flattened once into per-row arrays (window id, TP reward unit, FP cost unit),
so scoring at one threshold is a handful of numpy reductions and the optimised-threshold
sweep over every distinct score value is one sort plus cumulative sums.

Formula (see ``shared/benchmarks/nab/README.md``): probation of min(floor(0.15 N), 750)
rows per file; detection = score >= threshold; inside a window only the earliest detection
counts, rewarded ``A_TP * sig(y) / sig(-1)`` with ``y = -(R - i + 1) / W``; a detection
outside every window costs ``A_FP * sig(|R_prev - i| / (W_prev - 1))`` (``-A_FP`` before the
first window); a missed window costs ``-A_FN``; normalised = 100 (S - S_null) / (S_perfect - S_null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILE_NAMES",
    "CorpusScore",
    "NabCorpus",
    "NabFile",
    "Profile",
    "SweepResult",
    "load_corpus",
    "load_profiles",
    "load_result_scores",
    "load_thresholds",
    "probation_rows",
    "scaled_sigmoid",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class Profile:
    """One NAB cost profile: weights of a true positive, a false positive and a miss."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


def load_profiles(root: Path) -> dict[str, Profile]:
    """Read ``config/profiles.json`` under the NAB root."""
    raw = json.loads((root / "config" / "profiles.json").read_text())
    out: dict[str, Profile] = {}
    for name, body in raw.items():
        cm = body["CostMatrix"]
        out[name] = Profile(name, float(cm["tpWeight"]), float(cm["fpWeight"]), float(cm["fnWeight"]))
    return out


def scaled_sigmoid(y: F64) -> F64:
    """NAB's sigma(y) = 2 / (1 + exp(5 y)) - 1, and -1 for y > 3 (dimensionless)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, s)


def probation_rows(n: int, percent: float = 0.15) -> int:
    """Rows not scored at the start of a file: min(floor(percent * n), percent * 5000)."""
    return int(min(math.floor(percent * n), percent * 5000))


_SIG_M1 = float(scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True)
class NabFile:
    """One labelled series: timestamps (datetime64[s]), values, windows as inclusive row ranges."""

    name: str
    ts: npt.NDArray[np.datetime64]
    values: F64
    windows: I64  # shape (k, 2): first and last row of each window, inclusive

    @property
    def ts_ms(self) -> I64:
        """Timestamps as epoch milliseconds."""
        return self.ts.astype("datetime64[ms]").astype(np.int64)

    def row_units(self) -> tuple[I64, F64, F64]:
        """Per row: window index (-1 outside), TP reward unit sig(y)/sig(-1), FP cost unit sig(y)."""
        n = len(self.values)
        win = np.full(n, -1, dtype=np.int64)
        tp = np.zeros(n)
        fp = np.full(n, -1.0)  # before the first window: unweighted -1
        idx = np.arange(n, dtype=np.int64)
        for k, (a, b) in enumerate(self.windows):
            width = float(b - a + 1)
            sl = slice(int(a), int(b) + 1)
            win[sl] = k
            tp[sl] = scaled_sigmoid(-(b - idx[sl] + 1) / width) / _SIG_M1
            end = int(self.windows[k + 1][0]) if k + 1 < len(self.windows) else n
            after = slice(int(b) + 1, end)
            denom = width - 1.0
            if denom > 0:
                fp[after] = scaled_sigmoid(np.abs(b - idx[after]) / denom)
            else:  # a one-row window: everything after it is "far"
                fp[after] = -1.0
        return win, tp, fp


def _read_csv_columns(path: Path, columns: Sequence[str]) -> tuple[list[str], list[F64]]:
    """Timestamps (first column) and the named float columns of a NAB csv."""
    with path.open() as fh:
        header = fh.readline().strip().split(",")
        cols = [header.index(c) for c in columns]
        ts: list[str] = []
        data: list[list[float]] = [[] for _ in cols]
        for line in fh:
            parts = line.rstrip("\n").split(",")
            if len(parts) < len(header):
                continue
            ts.append(parts[0])
            for j, c in enumerate(cols):
                data[j].append(float(parts[c]))
    return ts, [np.asarray(d, dtype=np.float64) for d in data]


def _windows_to_rows(ts: npt.NDArray[np.datetime64], windows: Sequence[Sequence[str]]) -> I64:
    out = np.zeros((len(windows), 2), dtype=np.int64)
    for k, (start, end) in enumerate(windows):
        s = np.datetime64(start.replace(" ", "T"), "s")
        e = np.datetime64(end.replace(" ", "T"), "s")
        out[k, 0] = np.searchsorted(ts, s, side="left")
        out[k, 1] = np.searchsorted(ts, e, side="right") - 1
    return out


def load_corpus(root: Path, labels: str = "combined_windows.json") -> NabCorpus:
    """Load every labelled series (``data/``) and its windows (``labels/``) under ``root``."""
    windows = json.loads((root / "labels" / labels).read_text())
    files: list[NabFile] = []
    for name in sorted(windows):
        ts_s, (vals,) = _read_csv_columns(root / "data" / name, ["value"])
        ts = np.array([t.replace(" ", "T") for t in ts_s], dtype="datetime64[s]")
        files.append(NabFile(name, ts, vals, _windows_to_rows(ts, windows[name])))
    return NabCorpus(files)


def load_result_scores(results_dir: Path, detector: str, corpus: NabCorpus) -> list[F64]:
    """A published detector's ``anomaly_score`` column, one array per corpus file, same order."""
    out: list[F64] = []
    for f in corpus.files:
        cat, base = f.name.split("/")
        _ts, (score,) = _read_csv_columns(results_dir / cat / f"{detector}_{base}", ["anomaly_score"])
        if len(score) != len(f.values):
            raise ValueError(f"{detector} result for {f.name}: {len(score)} rows, data has {len(f.values)}")
        out.append(score)
    return out


@dataclass(frozen=True)
class CorpusScore:
    """Raw and normalised NAB score of one detector at one threshold under one profile."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def normalised(self) -> float:
        """100 (raw - null) / (perfect - null)."""
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


@dataclass(frozen=True)
class SweepResult:
    """Best threshold over all distinct score values (the published "optimised" figure)."""

    profile: str
    threshold: float
    raw: float
    normalised: float


class NabCorpus:
    """All series flattened once into scorable-row arrays (probation rows dropped)."""

    def __init__(self, files: Sequence[NabFile]) -> None:
        self.files = list(files)
        wins: list[I64] = []
        tps: list[F64] = []
        fps: list[F64] = []
        self._keep: list[slice] = []
        self._perfect_rows: list[I64] = []
        offset = 0
        n_win = 0
        for f in self.files:
            win, tp, fp = f.row_units()
            p = probation_rows(len(f.values))
            win = np.where(win >= 0, win + n_win, -1)
            wins.append(win[p:])
            tps.append(tp[p:])
            fps.append(fp[p:])
            self._keep.append(slice(p, len(f.values)))
            # the perfect detector fires on the first row of each window
            self._perfect_rows.append(f.windows[:, 0].copy())
            offset += len(f.values) - p
            n_win += len(f.windows)
        self.n_windows = n_win
        self.window = np.concatenate(wins) if wins else np.zeros(0, np.int64)
        self.tp_unit = np.concatenate(tps) if tps else np.zeros(0)
        self.fp_unit = np.concatenate(fps) if fps else np.zeros(0)
        self.in_window = self.window >= 0

    def flatten(self, scores: Sequence[F64]) -> F64:
        """Concatenate per-file score arrays over scorable rows (probation dropped)."""
        if len(scores) != len(self.files):
            raise ValueError(f"{len(scores)} score arrays for {len(self.files)} files")
        parts = []
        for f, s, keep in zip(self.files, scores, self._keep, strict=True):
            s = np.asarray(s, dtype=np.float64)
            if s.shape != f.values.shape:
                raise ValueError(f"{f.name}: {s.shape[0]} scores for {len(f.values)} rows")
            parts.append(s[keep])
        return np.concatenate(parts) if parts else np.zeros(0)

    def perfect_scores(self) -> list[F64]:
        """Score arrays of the perfect detector: 1 at each window's first row, else 0."""
        out = []
        for f, rows in zip(self.files, self._perfect_rows, strict=True):
            s = np.zeros(len(f.values))
            s[rows] = 1.0
            out.append(s)
        return out

    def _raw_flat(self, flat: F64, threshold: float, p: Profile) -> tuple[float, int, int, int]:
        det = flat >= threshold
        fp_mask = det & ~self.in_window
        fp_cost = p.a_fp * float(self.fp_unit[fp_mask].sum())
        det_in = np.flatnonzero(det & self.in_window)
        # rows are in time order within a file, so the first occurrence of a window id is its earliest hit
        hit_windows, first = np.unique(self.window[det_in], return_index=True)
        tp_reward = p.a_tp * float(self.tp_unit[det_in[first]].sum())
        n_fn = self.n_windows - len(hit_windows)
        raw = tp_reward + fp_cost - p.a_fn * n_fn
        return raw, len(hit_windows), int(fp_mask.sum()), n_fn

    def bounds(self, p: Profile) -> tuple[float, float]:
        """Raw scores of the null and perfect detectors under profile ``p``."""
        null = -p.a_fn * self.n_windows
        perfect, *_ = self._raw_flat(self.flatten(self.perfect_scores()), 0.5, p)
        return null, perfect

    def score(self, scores: Sequence[F64], threshold: float, p: Profile) -> CorpusScore:
        """Score one detector's per-file outputs at a fixed threshold."""
        raw, tp, fp, fn = self._raw_flat(self.flatten(scores), threshold, p)
        null, perfect = self.bounds(p)
        return CorpusScore(p.name, threshold, raw, null, perfect, tp, fp, fn)

    def sweep(self, scores: Sequence[F64], p: Profile) -> SweepResult:
        """The best raw score over thresholds at every distinct score value (ties enter together)."""
        flat = self.flatten(scores)
        order = np.argsort(-flat, kind="stable")
        s_sorted = flat[order]
        win = self.window[order]
        # contribution of each row when it becomes a detection, in descending-score order
        delta = np.where(win < 0, p.a_fp * self.fp_unit[order], 0.0)
        in_idx = np.flatnonzero(win >= 0)
        if len(in_idx):
            # per window, the reward is the running max of rewards seen so far (earliest hit wins)
            w = win[in_idx]
            r = p.a_tp * self.tp_unit[order][in_idx]
            by_win = np.lexsort((in_idx, w))
            w_s, r_s = w[by_win], r[by_win]
            span = p.a_tp + p.a_fn + 1.0
            cm = np.maximum.accumulate(r_s + w_s * span * 4.0) - w_s * span * 4.0
            prev = np.empty_like(cm)
            prev[1:] = cm[:-1]
            new_group = np.ones(len(w_s), dtype=bool)
            new_group[1:] = w_s[1:] != w_s[:-1]
            prev[new_group] = -p.a_fn
            d = np.empty_like(cm)
            d[by_win] = cm - prev
            delta[in_idx] = d
        total = -p.a_fn * self.n_windows + np.cumsum(delta)
        # only positions where the next score differs are valid thresholds (ties enter together)
        last_of_tie = np.ones(len(s_sorted), dtype=bool)
        last_of_tie[:-1] = s_sorted[:-1] != s_sorted[1:]
        cand = np.flatnonzero(last_of_tie)
        null, perfect = self.bounds(p)
        best_raw, best_thr = null, float("inf")  # threshold above every score: the null detector
        if len(cand):
            k = cand[int(np.argmax(total[cand]))]
            if total[k] > best_raw:
                best_raw, best_thr = float(total[k]), float(s_sorted[k])
        return SweepResult(p.name, best_thr, best_raw, 100.0 * (best_raw - null) / (perfect - null))

    def per_file_raw(self, scores: Sequence[F64], threshold: float, p: Profile) -> dict[str, float]:
        """Raw score of each file (for comparing against NAB's per-file tables)."""
        out: dict[str, float] = {}
        for f, s in zip(self.files, scores, strict=True):
            sub = NabCorpus([f])
            raw, *_ = sub._raw_flat(sub.flatten([s]), threshold, p)
            out[f.name] = raw
        return out


def load_thresholds(root: Path) -> Mapping[str, Mapping[str, Mapping[str, float]]]:
    """``config/thresholds.json``: detector -> profile -> {threshold, score}."""
    data: Mapping[str, Mapping[str, Mapping[str, float]]] = json.loads(
        (root / "config" / "thresholds.json").read_text()
    )
    return data
