"""Alarm evaluation against labels, on crafted labels and alarms."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from alerts.evaluation import AlarmRecord, Label, evaluate, evaluate_files, load_records
from plantwatch.domain import Level

MIN = 60_000
DAY = 86_400_000
T0 = 1_700_000_000_000


def _label(kind: str, sensors: list[str], start: int, end: int, level: str = "yellow") -> dict[str, Any]:
    return {
        "enterprise_id": "E1",
        "sensors": sensors,
        "kind": kind,
        "start_ms": T0 + start,
        "end_ms": T0 + end,
        "min_level": level,
    }


def _alarm(sensor: str, level: str, raised: int, peak: str | None = None, ent: str = "E1") -> dict[str, Any]:
    d: dict[str, Any] = {
        "enterprise_id": ent,
        "sensor_id": sensor,
        "level": level,
        "raised_at": T0 + raised,
        "updated_at": T0 + raised + MIN,
        "rule": "threshold",
    }
    if peak is not None:
        d["peak_level"] = peak
    return d


def _sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_detection_rate_and_time_to_detect_per_kind() -> None:
    labels = [
        _label("gas_leak", ["g1", "g2"], 10 * MIN, 20 * MIN),
        _label("gas_leak", ["g3"], 100 * MIN, 110 * MIN),
        _label("dust_fire", ["d1"], 50 * MIN, 60 * MIN, "red"),
    ]
    alarms = [
        _alarm("g2", "orange", 12 * MIN),  # detects leak 1 after 2 min (via its second sensor)
        _alarm("g1", "red", 15 * MIN),  # later: not the detection
        _alarm("d1", "orange", 51 * MIN),  # below red: under-graded, not a detection
    ]
    ev = evaluate(labels, alarms, grace_ms=0)
    leak = ev.per_kind["gas_leak"]
    assert (leak.labels, leak.detected, leak.detection_rate) == (2, 1, 0.5)
    assert leak.ttd_median_ms == 2 * MIN
    assert ev.per_kind["dust_fire"].detected == 0
    assert ev.under_graded == 1
    assert ev.false_alarms == []
    assert ev.detection_rate == pytest.approx(1 / 3)


def test_peak_level_counts_for_the_minimum_level() -> None:
    labels = [_label("dust_fire", ["d1"], 0, 10 * MIN, "red")]
    ev = evaluate(labels, [_alarm("d1", "yellow", 3 * MIN, peak="red")], grace_ms=0)
    assert ev.results[0].alarm == 0
    assert ev.results[0].ttd_ms == 3 * MIN


def test_grace_period_and_window_edges() -> None:
    labels = [_label("gas_leak", ["g1"], 10 * MIN, 20 * MIN)]
    alarms = [
        _alarm("g1", "red", 9 * MIN),  # before start: false alarm
        _alarm("g1", "red", 21 * MIN),  # inside the 2 min grace: detection
    ]
    ev = evaluate(labels, alarms, grace_ms=2 * MIN)
    assert ev.results[0].alarm == 1
    assert ev.false_alarms == [0]
    assert evaluate(labels, alarms[1:], grace_ms=0).results[0].alarm is None


def test_other_enterprise_or_sensor_is_a_false_alarm() -> None:
    labels = [_label("gas_leak", ["g1"], 0, 10 * MIN)]
    alarms = [_alarm("g1", "red", MIN, ent="E2"), _alarm("g9", "red", MIN)]
    ev = evaluate(labels, alarms, grace_ms=0)
    assert ev.results[0].alarm is None
    assert ev.false_alarms == [0, 1]


def test_false_alarms_per_sensor_day_and_percentiles() -> None:
    labels = [_label("k", ["s1"], i * DAY, i * DAY + 100 * MIN) for i in range(20)]
    alarms = [_alarm("s1", "red", i * DAY + (i + 1) * MIN) for i in range(20)]  # ttd 1..20 min
    alarms += [_alarm("s2", "blue", 5 * DAY), _alarm("s2", "blue", 6 * DAY)]
    ev = evaluate(labels, alarms, grace_ms=0, sensor_count=4, span_ms=(T0, T0 + 10 * DAY))
    assert ev.sensor_days == pytest.approx(40.0)
    assert ev.false_alarms_per_sensor_day == pytest.approx(2 / 40)
    assert ev.ttd_median_ms == pytest.approx(10.5 * MIN)
    assert ev.ttd_p95_ms == pytest.approx(19.05 * MIN)  # numpy linear interpolation
    assert ev.detection_rate == 1.0


def test_nab_style_score_hand_computed() -> None:
    labels = [
        _label("a", ["s1"], 0, 100 * MIN),
        _label("b", ["s2"], 0, 100 * MIN),
        _label("c", ["s3"], 0, 100 * MIN),
    ]
    alarms = [
        _alarm("s1", "red", 0),  # at the start: reward 1
        _alarm("s2", "red", 50 * MIN),  # in the middle: sig(-0.5) / sig(-1)
        _alarm("s1", "red", 150 * MIN),  # false alarm 50 min after a 100 min window: 0.11 sig(0.5)
        _alarm("s4", "red", 10 * MIN),  # false alarm on an unlabelled sensor: -0.11
    ]  # label c missed: -1
    ev = evaluate(labels, alarms, grace_ms=0)
    raw = 1.0 + _sig(-0.5) / _sig(-1.0) + 0.11 * _sig(0.5) - 0.11 - 1.0
    assert ev.nab_raw == pytest.approx(raw)
    assert ev.nab_score == pytest.approx(100 * (raw + 3) / 6)
    perfect = evaluate(labels, [_alarm(s, "red", 0) for s in ("s1", "s2", "s3")], grace_ms=0)
    assert perfect.nab_score == pytest.approx(100.0)
    assert evaluate(labels, [], grace_ms=0).nab_score == pytest.approx(0.0)


def test_records_accept_dataclasses_and_int_levels() -> None:
    lab = Label("E1", ("s1",), "k", T0, T0 + MIN, Level.ORANGE)
    rec = AlarmRecord.of({"enterprise_id": "E1", "sensor_id": "s1", "level": 3, "raised_at": T0})
    assert rec.level is Level.ORANGE
    assert rec.updated_at == T0
    ev = evaluate([lab], [rec], grace_ms=0)
    assert ev.results[0].alarm == 0
    assert ev.to_json()["per_kind"]["k"]["detected"] == 1
    with pytest.raises(ValueError, match="unknown alarm level"):
        Label.of(_label("k", ["s1"], 0, 1, level="purple"))
    with pytest.raises(ValueError, match="end_ms"):
        Label.of(_label("k", ["s1"], 10, 1))


def test_load_records_reads_list_object_and_json_lines(tmp_path: Path) -> None:
    recs = [_label("k", ["s1"], 0, MIN), _label("k", ["s2"], 0, MIN)]
    p1, p2, p3 = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.jsonl"
    p1.write_text(json.dumps(recs))
    p2.write_text(json.dumps({"labels": recs}))
    p3.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert load_records(p1) == load_records(p2) == load_records(p3) == recs


def test_simulator_label_lines_settle_window_and_none_level() -> None:
    # the --labels-out format of docs/simulators.md
    line = (
        '{"id":"L0000","category":"incident","kind":"gas_leak","enterprise_id":"E1","device_id":"gw-1",'
        f'"sensors":["g1","g2"],"start_ms":{T0},"end_ms":{T0 + 5 * MIN},'
        f'"settle_ms":{T0 + 10 * MIN},"min_level":"red","rule":"stage2_held_60s"}}'
    )
    quiet = _label("calibration", ["g3"], 0, 5 * MIN, level="none")
    alarms = [_alarm("g2", "red", 8 * MIN), _alarm("g3", "blue", MIN)]  # after end_ms, before settle_ms
    ev = evaluate([json.loads(line), quiet], alarms, grace_ms=0)
    assert [r.label.id for r in ev.results] == ["L0000"]  # the none-level label expects nothing
    assert ev.results[0].ttd_ms == 8 * MIN
    assert ev.false_alarms == []  # the blue alarm belongs to the none-level label: tolerated
    assert ev.nab_null == -1.0


def test_evaluate_files_reads_label_lines_and_api_alarm_list(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps(_label("gas_leak", ["g1"], 0, 10 * MIN)) + "\n")
    alarms = tmp_path / "alarms.json"
    alarms.write_text(json.dumps({"items": [_alarm("g1", "red", 2 * MIN), _alarm("g9", "blue", MIN)]}))
    rep = evaluate_files(labels, alarms, grace_ms=0, sensor_days=2.0)
    assert rep["per_kind"]["gas_leak"]["ttd_median_ms"] == 2 * MIN
    assert rep["false_alarms"] == 1
    assert rep["false_alarms_per_sensor_day"] == 0.5
