"""Store-test fixtures: a VictoriaMetrics that can be stopped and restarted on the same port/data dir.

The live-InfluxDB module (``test_influx_live.py``) is collected only when
``PLANTWATCH_TEST_INFLUX_URL`` is set; otherwise it is not part of the run at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import find_binary, free_port, wait_port

collect_ignore = [] if os.environ.get("PLANTWATCH_TEST_INFLUX_URL") else ["test_influx_live.py"]


@dataclass
class RestartableVM:
    """A real victoria-metrics process; ``stop()`` terminates it, ``start()`` runs a new one (same port, same data)."""

    data: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_binary("victoria-metrics", "/usr/bin/victoria-metrics")
        self.proc = subprocess.Popen(
            [binary, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data}",
             "-retentionPeriod=100y", "-search.disableCache", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout_s=20, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def vm_restartable(tmp_path: Path) -> Iterator[RestartableVM]:
    vm = RestartableVM(tmp_path / "vm-data")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def vm_export(url: str, metric: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """All raw samples of ``metric`` in [start_ms, end_ms] after forcing a flush (no sleeping)."""
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=30).read()
    q = (f"{url}/api/v1/export?match[]={metric}&start={start_ms / 1000:.3f}&end={end_ms / 1000:.3f}")
    with urllib.request.urlopen(q, timeout=60) as r:
        return [json.loads(line) for line in r.read().splitlines() if line.strip()]


Samples = dict[tuple[str, str], list[tuple[int, float]]]


def samples_by_series(url: str, metric: str, start_ms: int, end_ms: int) -> Samples:
    """``(enterprise, sensor) -> [(ts_ms, value), ...]`` sorted by time, duplicates kept."""
    out: Samples = {}
    for s in vm_export(url, metric, start_ms, end_ms):
        key = (s["metric"].get("enterprise", ""), s["metric"].get("sensor", ""))
        out.setdefault(key, []).extend(zip(s["timestamps"], s["values"], strict=True))
    for v in out.values():
        v.sort()
    return out
