"""``plantwatch demo`` as a user runs it: embedded broker, simulated plants, alarms within a minute.

The README promises that the demo shows alarms arriving within a minute of starting and
that Ctrl-C stops it; this runs the console script in a subprocess at real time (speed 1)
and checks both over the HTTP API it prints.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.service import RunningService, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.e2e


def test_demo_raises_graded_alarms_within_a_minute_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    exe = Path(sys.executable).parent / "plantwatch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "plantwatch.cli"]
    cmd += ["demo", "--port", str(http_port), "--mqtt-port", str(mqtt_port), "--data-dir", str(tmp_path / "data")]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    started = time.monotonic()
    svc = RunningService(f"http://127.0.0.1:{http_port}", http_port, proc, log_path)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"plantwatch demo exited with {proc.returncode}:\n{svc.log()}")
            try:
                return bool(svc.get("/api/v1/healthz")["mqtt_connected"])
            except (OSError, urllib.error.HTTPError):
                return False

        wait_for(up, 30.0, "the demo's API and its MQTT connection")

        def graded() -> list[dict[str, Any]]:
            alarms: list[dict[str, Any]] = svc.get("/api/v1/alarms?status=open")
            return [a for a in alarms if a["level"] in ("yellow", "orange", "red")]

        alarms = wait_for(graded, 60.0 - (time.monotonic() - started), "a yellow-or-above alarm within a minute")
        assert {a["kind"].split(".")[0] for a in alarms} <= {"gas", "dust", "power", "system"}
        assert all(a["sensor_id"] and a["enterprise_id"] for a in alarms)
        risks = {e["id"]: e["risk_colour"] for e in svc.get("/api/v1/enterprises")}
        assert any(risks[a["enterprise_id"]] != "blue" for a in alarms)  # the risk colour follows its alarms
        assert "plantwatch_alarms_raised_total" in svc.metrics()
        assert "[YELLOW]" in svc.log() or "[ORANGE]" in svc.log() or "[RED]" in svc.log()  # printed live too

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
        out = svc.log()
        assert "plantwatch demo stopped." in out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
