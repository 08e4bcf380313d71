"""``plantwatch simulate`` as users run it (a subprocess) driving ``plantwatch serve`` on a
real broker at real time, so that offline faults are judged by the service's own clock too:
a leak and a sensor dropout are both alarmed at their labels' levels (the dropout by the
deadman, evaluated on the service's timer while no message arrives)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.labels import read_labels
from simulators.testing import fetch_alarms, score
from tests.e2e.service import plantwatch_serve, wait_for
from tests.servers import Broker

pytestmark = pytest.mark.e2e

SCENARIO = """
[scenario]
name = "cli-e2e"
seed = 7
duration_s = 10

[[enterprise]]
id = "chem-a"
schedule = "continuous"

[[sensor]]
enterprise_id = "chem-a"
device_id = "gw-1"
id = "GT-101"
kind = "gas.combustible"
area = "tank-farm"
interval_s = 1

[[sensor]]
enterprise_id = "chem-a"
device_id = "gw-1"
id = "OT-301"
kind = "gas.oxygen"
area = "tank-farm"
interval_s = 1

[[incident]]
kind = "gas_leak"
enterprise_id = "chem-a"
sensors = ["GT-101"]
start_s = 2
duration_s = 6
intensity = 70.0
params = { rise_s = 1 }

[[fault]]
kind = "dropout"
enterprise_id = "chem-a"
sensors = ["OT-301"]
start_s = 2
duration_s = 63   # silent from 2 s to the end; labels claim blue from 3 intervals + 60 s of margin
"""


def _plantwatch(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "plantwatch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "plantwatch.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout_s, check=False)


def test_simulate_command_drives_the_service_and_a_dropout_is_alarmed(broker: Broker, tmp_path: Path) -> None:
    scenario = tmp_path / "plant.toml"
    scenario.write_text(SCENARIO)
    registry = tmp_path / "registry.toml"
    dry = _plantwatch("simulate", "--scenario", str(scenario), "--dry-run", "--registry-out", str(registry))
    assert dry.returncode == 0, dry.stderr
    with plantwatch_serve(tmp_path / "svc", broker.url, registry.read_text()) as svc:
        labels_path = tmp_path / "labels.jsonl"
        run = _plantwatch("simulate", "--scenario", str(scenario), "--mqtt-url", broker.url, "--speed", "1",
                          "--labels-out", str(labels_path), "--no-offline")
        assert run.returncode == 0, run.stderr
        labels = read_labels(labels_path)
        assert {(lab.kind, lab.sensors) for lab in labels} == {("gas_leak", ("GT-101",)), ("dropout", ("OT-301",))}

        def all_detected() -> bool:
            return not score(fetch_alarms(svc.base, with_events=True), labels).missed
        wait_for(all_detected, 10.0, "every label alarmed at its level")
        s = score(fetch_alarms(svc.base, with_events=True), labels)
        dropout = next(lab for lab in labels if lab.kind == "dropout")
        deadman = [a for a in fetch_alarms(svc.base, with_events=True) if a["rule"] == "deadman"]
        assert [a["sensor_id"] for a in deadman] == ["OT-301"]
        assert s.detected[dropout.id] == [deadman[0]["id"]]
        assert "readings" in run.stdout + run.stderr  # the command reports what it published
