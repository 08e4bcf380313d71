"""``plantwatch replay`` and ``plantwatch evaluate`` run as users run them (console script)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alerts.evaluation import evaluate
from alerts.replay import replay
from simulators.labels import write_labels
from simulators.scenario import load_scenario
from simulators.testing import run_scenario
from simulators.tomlw import registry_toml
from tests.e2e.service import plantwatch_serve
from tests.servers import Broker

pytestmark = pytest.mark.e2e


def _plantwatch(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "plantwatch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "plantwatch.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def test_replay_cli_writes_score_and_level_per_row(tmp_path: Path) -> None:
    values: list[float | str] = [*(2.0 + 0.1 * (i % 3) for i in range(40)), 30.0, 56.0, 57.0, 20.0, 3.0, "", "n/a", 2.0]
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n" + "".join(
        f"2026-11-23 08:{i // 6:02d}:{i % 6 * 10:02d},{v}\n" for i, v in enumerate(values)))
    rules = tmp_path / "rules.toml"
    rules.write_text('[sensor]\nthresholds = { yellow = 25.0, orange = 45.0 }\n')
    out = tmp_path / "out.csv"
    p = _plantwatch("replay", str(src), "--kind", "gas.combustible", "--rules", str(rules), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "2 rows without a numeric value not evaluated" in p.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "level"]
    assert len(rows) == len(values)
    assert rows[0]["timestamp"] == "2026-11-23 08:00:00"  # echoed as given
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert [r["level"] for r in rows[40:43]] == ["yellow", "orange", "orange"]
    assert rows[45]["value"] == ""
    assert rows[45]["level"] == rows[44]["level"]  # a missing value changes nothing
    # exactly the library's result for the same series
    ts = np.array([1795420800000 + i * 10_000 for i in range(len(values))], np.int64)
    v = np.array([x if isinstance(x, float) else np.nan for x in values])
    lib = replay(ts, v, "gas.combustible", {"sensor": {"thresholds": {"yellow": 25.0, "orange": 45.0}}})
    assert [r["level"] for r in rows] == [("none", "blue", "yellow", "orange", "red")[x] for x in lib.level]


def test_replay_cli_names_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("timestamp,value\n1795420800000,1.0\nyesterday,2.0\n")
    p = _plantwatch("replay", str(src), "--kind", "gas.combustible", "--out", str(tmp_path / "o.csv"))
    assert p.returncode == 2
    assert "bad.csv:3: timestamp 'yesterday'" in p.stderr
    src.write_text("timestamp,value\n1795420800000,1.0\n")
    p = _plantwatch("replay", str(src), "--kind", "gas.unknown", "--out", str(tmp_path / "o.csv"))
    assert p.returncode == 2
    assert "unknown sensor kind 'gas.unknown'" in p.stderr


async def test_evaluate_cli_scores_a_service_run_against_its_labels(broker: Broker, tmp_path: Path) -> None:
    sc = load_scenario("gas")
    with plantwatch_serve(tmp_path / "svc", broker.url, registry_toml(sc.registry())) as svc:
        run = await run_scenario(sc, broker.url, svc.base, timeout_s=30.0)
    assert run.alarms
    labels, alarms = tmp_path / "labels.jsonl", tmp_path / "alarms.json"
    write_labels(run.labels, labels)
    alarms.write_text(json.dumps(run.alarms))
    p = _plantwatch("evaluate", "--labels", str(labels), "--alarms", str(alarms), "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    want = evaluate([json.loads(line) for line in labels.read_text().splitlines()], run.alarms).to_json()
    assert report == json.loads(json.dumps(want))  # the CLI adds nothing and loses nothing
    leaks = {k: v for k, v in report["per_kind"].items() if "leak" in k}
    assert leaks
    assert all(v["detection_rate"] == 1.0 for v in leaks.values())  # every gas leak caught
    text = _plantwatch("evaluate", "--labels", str(labels), "--alarms", str(alarms))
    assert text.returncode == 0, text.stderr
    assert "detection rate" in text.stdout
    assert "NAB-style score" in text.stdout
    assert "per sensor-day" in text.stdout
