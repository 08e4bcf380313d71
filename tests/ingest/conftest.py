"""In-memory stand-ins for the store and the alarm sink, and a registry for ingest tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from ingest.batch import ReadingBatch
from plantwatch.registry import Enterprise, Registry, Sensor


@dataclass
class RecordingStore:
    """Keeps every written batch; ``fail_next`` makes the next N writes raise."""

    batches: list[ReadingBatch] = field(default_factory=list)
    fail_next: int = 0
    delay_s: float = 0.0  # a slow disk: blocks the event loop like a real synchronous write

    def write_readings(self, batch: ReadingBatch) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise OSError("disk on fire")
        self.batches.append(batch)

    @property
    def batch(self) -> ReadingBatch:
        return ReadingBatch.concat(self.batches)

    def values(self) -> dict[str, list[float]]:
        """sensor id -> values in arrival order."""
        out: dict[str, list[float]] = {}
        b = self.batch
        for s, v in zip(b.sensor_id.tolist(), b.value.tolist(), strict=True):
            out.setdefault(s, []).append(v)
        return out


@dataclass
class RecordingSink:
    """Records what the pipeline hands to the alarm side; ``fail`` makes on_readings raise."""

    readings: list[tuple[ReadingBatch, int]] = field(default_factory=list)
    statuses: list[tuple[str, str, bool, int]] = field(default_factory=list)
    fail: bool = False

    def on_readings(self, batch: ReadingBatch, now_ms: int) -> None:
        if self.fail:
            raise RuntimeError("engine bug")
        self.readings.append((batch, now_ms))

    def on_gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> None:
        self.statuses.append((enterprise_id, device_id, online, ts_ms))


@pytest.fixture
def registry() -> Registry:
    """Enterprise e1 with sensors GT-101 (gas) and TT-201 (dust temperature)."""
    reg = Registry()
    reg.upsert_enterprise(Enterprise("e1"))
    reg.upsert_sensor(Sensor("e1", "GT-101", "gas.combustible", device_id="gw1"))
    reg.upsert_sensor(Sensor("e1", "TT-201", "dust.inlet_temperature", device_id="gw1"))
    return reg
