"""Score a run's alarms against simulator ground-truth labels (plain data in, plain data out).

A *label* is one injected incident: ``enterprise_id``, ``sensors`` (sensor ids), ``kind``,
``start_ms``, ``end_ms`` (epoch ms) and ``min_level`` (the colour it must reach). An
*alarm* is a record as the API returns it: ``enterprise_id``, ``sensor_id``, ``level``,
``raised_at``, ``updated_at``, ``rule`` and optionally ``peak_level``.

Labels are the ``--labels-out`` JSON lines of docs/simulators.md (``id``, ``category``
and ``settle_ms`` are used when present). Matching: an alarm *belongs* to a label when it
is on one of the label's sensors (same enterprise) and was raised in ``[start_ms, E + grace_ms]``
with ``E = max(end_ms, settle_ms)`` (readings are abnormal until they settle). Labels with
``min_level = none`` expect nothing: they are left out of the detection figures, and alarms
belonging to them are not false alarms. A label is *detected* by
its earliest belonging alarm whose level (the larger of ``level`` and ``peak_level``)
is at least ``min_level``; time to detect is that alarm's ``raised_at - start_ms``.
(An alarm raised below ``min_level`` and escalated later is credited at ``raised_at``;
alarm records do not say when the escalation happened.) Alarms belonging to no label are
false alarms; belonging alarms below ``min_level`` are counted as *under-graded*.

The early-detection score follows NAB: each label is a window ``[start, E + grace]``;
its earliest qualifying alarm earns ``A_TP * sig(y) / sig(-1)`` with ``y = -(E - t) / (E - S)``
(1 at the start, 0 at the end); a missed label costs ``-A_FN``; a false alarm costs
``A_FP * sig((t - E_prev) / (E_prev - S_prev))`` after the latest earlier label window on
that sensor, ``-A_FP`` otherwise. Normalised to 0 (no alarms) .. 100 (every label at its start).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plantwatch.domain import Level

__all__ = [
    "AlarmRecord",
    "Evaluation",
    "KindStats",
    "Label",
    "LabelResult",
    "evaluate",
    "evaluate_files",
    "load_records",
]

DAY_MS = 86_400_000


def _level(v: Any) -> Level:
    if isinstance(v, Level):
        return v
    if isinstance(v, int):
        return Level(v)
    return Level.parse(str(v))


@dataclass(frozen=True, slots=True)
class Label:
    """One labelled incident (times in epoch ms)."""

    enterprise_id: str
    sensors: tuple[str, ...]
    kind: str
    start_ms: int
    end_ms: int
    min_level: Level = Level.BLUE
    settle_ms: int | None = None  # readings back to normal (simulator labels); extends the window
    id: str = ""
    category: str = "incident"

    @property
    def window_end_ms(self) -> int:
        """End of the matching window before grace: ``settle_ms`` when later than ``end_ms``."""
        return self.end_ms if self.settle_ms is None else max(self.end_ms, self.settle_ms)

    @property
    def expected(self) -> bool:
        """False for ``min_level = none``: nothing need be raised (alarms in it are tolerated)."""
        return self.min_level > Level.NONE

    @classmethod
    def of(cls, d: Label | Mapping[str, Any]) -> Label:
        """Build from a dict (a ``--labels-out`` line of docs/simulators.md) or pass a Label through."""
        if isinstance(d, Label):
            return d
        sensors = d["sensors"]
        if isinstance(sensors, str):
            sensors = [sensors]
        settle = d.get("settle_ms")
        lab = cls(
            str(d["enterprise_id"]),
            tuple(str(s) for s in sensors),
            str(d["kind"]),
            int(d["start_ms"]),
            int(d["end_ms"]),
            _level(d.get("min_level", "blue")),
            None if settle is None else int(settle),
            str(d.get("id", "")),
            str(d.get("category", "incident")),
        )
        if lab.end_ms < lab.start_ms:
            raise ValueError(f"label {lab.kind} on {lab.sensors}: end_ms {lab.end_ms} < start_ms {lab.start_ms}")
        return lab


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """The fields of an API alarm that evaluation needs."""

    enterprise_id: str
    sensor_id: str
    level: Level
    raised_at: int
    updated_at: int
    rule: str = ""
    peak_level: Level | None = None

    @property
    def top_level(self) -> Level:
        """The highest level this alarm reached (``peak_level`` when given)."""
        return self.level if self.peak_level is None else max(self.level, self.peak_level)

    @classmethod
    def of(cls, d: AlarmRecord | Mapping[str, Any]) -> AlarmRecord:
        """Build from an API alarm dict (levels as colour names) or pass a record through."""
        if isinstance(d, AlarmRecord):
            return d
        peak = d.get("peak_level")
        raised = int(d["raised_at"])
        return cls(
            str(d["enterprise_id"]),
            str(d["sensor_id"]),
            _level(d["level"]),
            raised,
            int(d.get("updated_at", raised)),
            str(d.get("rule", "")),
            None if peak is None else _level(peak),
        )


@dataclass(frozen=True, slots=True)
class LabelResult:
    """Outcome for one label: the detecting alarm's index and time to detect (ms), if any."""

    label: Label
    alarm: int | None
    ttd_ms: int | None
    reward: float
    under_graded: int


@dataclass(frozen=True, slots=True)
class KindStats:
    """Detection figures for one incident kind (times in ms)."""

    kind: str
    labels: int
    detected: int
    ttd_median_ms: float | None
    ttd_p95_ms: float | None

    @property
    def detection_rate(self) -> float:
        """Detected / labelled, in [0, 1] (0 for no labels)."""
        return self.detected / self.labels if self.labels else 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything ``evaluate`` measured; ``to_json`` gives the report form."""

    per_kind: dict[str, KindStats]
    results: list[LabelResult]
    false_alarms: list[int]  # indices into the alarm list
    sensor_days: float
    ttd_median_ms: float | None
    ttd_p95_ms: float | None
    nab_raw: float
    nab_null: float
    nab_perfect: float
    under_graded: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def detection_rate(self) -> float:
        """Detected / labelled over all kinds (0 for no labels)."""
        n = len(self.results)
        return sum(r.alarm is not None for r in self.results) / n if n else 0.0

    @property
    def false_alarms_per_sensor_day(self) -> float:
        """False alarms divided by sensor-days observed."""
        return len(self.false_alarms) / self.sensor_days if self.sensor_days > 0 else math.inf

    @property
    def nab_score(self) -> float:
        """NAB-style normalised early-detection score: 0 = no alarms, 100 = perfect."""
        if self.nab_perfect == self.nab_null:
            return 100.0 if self.nab_raw >= self.nab_perfect else 0.0
        return 100.0 * (self.nab_raw - self.nab_null) / (self.nab_perfect - self.nab_null)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (times in ms)."""
        return {
            "labels": len(self.results),
            "detection_rate": self.detection_rate,
            "per_kind": {
                k: {
                    "labels": s.labels,
                    "detected": s.detected,
                    "detection_rate": s.detection_rate,
                    "ttd_median_ms": s.ttd_median_ms,
                    "ttd_p95_ms": s.ttd_p95_ms,
                }
                for k, s in sorted(self.per_kind.items())
            },
            "false_alarms": len(self.false_alarms),
            "sensor_days": self.sensor_days,
            "false_alarms_per_sensor_day": self.false_alarms_per_sensor_day,
            "under_graded": self.under_graded,
            "ttd_median_ms": self.ttd_median_ms,
            "ttd_p95_ms": self.ttd_p95_ms,
            "nab_score": self.nab_score,
            "missed": [
                {"id": r.label.id, "kind": r.label.kind, "enterprise_id": r.label.enterprise_id,
                 "sensors": list(r.label.sensors), "start_ms": r.label.start_ms, "end_ms": r.label.end_ms,
                 "min_level": r.label.min_level.label}
                for r in self.results if r.label.expected and r.alarm is None
            ],
        }


def _sigma(y: float) -> float:
    return -1.0 if y > 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


_SIG_M1 = _sigma(-1.0)


def _pct(values: list[int], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def evaluate(
    labels: Iterable[Label | Mapping[str, Any]],
    alarms: Iterable[AlarmRecord | Mapping[str, Any]],
    *,
    grace_ms: int = 60_000,
    sensor_days: float | None = None,
    sensor_count: int | None = None,
    span_ms: tuple[int, int] | None = None,
    a_tp: float = 1.0,
    a_fp: float = 0.11,
    a_fn: float = 1.0,
) -> Evaluation:
    """Match alarms to labels and compute detection, false-alarm, delay and NAB-style figures.

    ``sensor_days`` (the observed sensor-time) may be given directly, or as
    ``sensor_count`` x ``span_ms`` (start, end); by default the count of distinct sensors
    in labels and alarms times the span from the earliest to the latest time seen.
    ``grace_ms`` extends each label's window past ``max(end_ms, settle_ms)``. Weights default to NAB's
    standard profile.
    """
    labs = [Label.of(d) for d in labels]
    alms = [AlarmRecord.of(d) for d in alarms]

    # index alarms by (enterprise, sensor), time-ordered
    by_sensor: dict[tuple[str, str], list[int]] = {}
    for i, a in enumerate(alms):
        by_sensor.setdefault((a.enterprise_id, a.sensor_id), []).append(i)
    for idx in by_sensor.values():
        idx.sort(key=lambda i: alms[i].raised_at)

    belongs = [False] * len(alms)
    results: list[LabelResult] = []
    for lab in labs:
        hi = lab.window_end_ms + grace_ms
        best: int | None = None
        under = 0
        for s in lab.sensors:
            for i in by_sensor.get((lab.enterprise_id, s), []):
                a = alms[i]
                if a.raised_at < lab.start_ms or a.raised_at > hi:
                    continue
                belongs[i] = True
                if a.top_level >= lab.min_level:
                    if best is None or a.raised_at < alms[best].raised_at:
                        best = i
                else:
                    under += 1
        if not lab.expected:
            continue
        if best is None:
            results.append(LabelResult(lab, None, None, -a_fn, under))
        else:
            t = alms[best].raised_at
            width = max(hi - lab.start_ms, 1)
            reward = a_tp * _sigma(-(hi - t) / width) / _SIG_M1
            results.append(LabelResult(lab, best, t - lab.start_ms, reward, under))

    false_idx = [i for i, b in enumerate(belongs) if not b]

    # NAB-style false-alarm cost: relative to the latest earlier label window on that sensor
    windows: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for lab in labs:
        for s in lab.sensors:
            windows.setdefault((lab.enterprise_id, s), []).append((lab.start_ms, lab.window_end_ms + grace_ms))
    fp_cost = 0.0
    for i in false_idx:
        a = alms[i]
        prev = [w for w in windows.get((a.enterprise_id, a.sensor_id), []) if w[1] < a.raised_at]
        if prev:
            s0, e0 = max(prev, key=lambda w: w[1])
            fp_cost += a_fp * _sigma((a.raised_at - e0) / max(e0 - s0, 1))
        else:
            fp_cost -= a_fp

    kinds: dict[str, list[LabelResult]] = {}
    for r in results:
        kinds.setdefault(r.label.kind, []).append(r)
    per_kind = {}
    for k, rs in kinds.items():
        ttd = [r.ttd_ms for r in rs if r.ttd_ms is not None]
        per_kind[k] = KindStats(k, len(rs), len(ttd), _pct(ttd, 50), _pct(ttd, 95))
    all_ttd = [r.ttd_ms for r in results if r.ttd_ms is not None]

    if sensor_days is None:
        if sensor_count is None:
            sensor_count = len({(lab.enterprise_id, s) for lab in labs for s in lab.sensors} | set(by_sensor))
        if span_ms is None:
            times = [t for lab in labs for t in (lab.start_ms, lab.window_end_ms)]
            times += [t for a in alms for t in (a.raised_at, a.updated_at)]
            span_ms = (min(times), max(times)) if times else (0, 0)
        sensor_days = sensor_count * max(span_ms[1] - span_ms[0], 0) / DAY_MS

    n = len(results)
    return Evaluation(
        per_kind=per_kind,
        results=results,
        false_alarms=false_idx,
        sensor_days=float(sensor_days),
        ttd_median_ms=_pct(all_ttd, 50),
        ttd_p95_ms=_pct(all_ttd, 95),
        nab_raw=sum(r.reward for r in results) + fp_cost,
        nab_null=-a_fn * n,
        nab_perfect=a_tp * n,
        under_graded=sum(r.under_graded for r in results),
    )


def load_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON list, a JSON object with an ``items``/``labels``/``alarms`` list, or JSON lines."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        for key in ("items", "labels", "alarms"):
            if isinstance(data.get(key), list):
                return list(data[key])
        if "enterprise_id" in data:  # JSON lines holding a single record
            return [data]
        raise ValueError(f"{path}: expected a list, an object with items/labels/alarms, or JSON lines")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list")
    return data


def evaluate_files(
    labels_path: Path,
    alarms_path: Path,
    *,
    grace_ms: int = 60_000,
    sensor_days: float | None = None,
    sensor_count: int | None = None,
) -> dict[str, Any]:
    """``plantwatch evaluate``: labels (``--labels-out`` JSON lines) and alarms (API JSON) to a report dict."""
    ev = evaluate(
        load_records(labels_path),
        load_records(alarms_path),
        grace_ms=grace_ms,
        sensor_days=sensor_days,
        sensor_count=sensor_count,
    )
    return ev.to_json()
