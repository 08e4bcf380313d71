"""Shared fixtures: real Mosquitto and VictoriaMetrics servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Broker, VictoriaMetrics, mosquitto, victoria_metrics


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh real Mosquitto broker for one test."""
    with mosquitto(tmp_path / "mosquitto") as b:
        yield b


@pytest.fixture
def vmetrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh real VictoriaMetrics server for one test."""
    with victoria_metrics(tmp_path / "vm") as vm:
        yield vm
