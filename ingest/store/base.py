"""Storage contracts: the reading store (time series) and the alarm store (records).

Times are epoch milliseconds throughout. Ranges are half-open, ``[start_ms, end_ms)``.
Implementations: :mod:`ingest.store.sqlite` (both) and :mod:`ingest.store.influx`
(readings only; alarms always stay in SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from alerts.model import Alarm, AlarmEvent, Change
from ingest.batch import ReadingBatch
from plantwatch.domain import AlarmStatus, Level

# -- rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One stored reading: measurement time (epoch ms), value, :class:`TsSource` code."""

    ts_ms: int
    value: float
    ts_source: int


@dataclass(frozen=True, slots=True)
class AggRow:
    """Aggregate of one window ``[start_ms, start_ms + window_ms)``; windows align to epoch multiples."""

    start_ms: int
    mean: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class UnregisteredSensor:
    """A sensor that sent readings while not in the registry (its readings are stored).

    ``first_seen_ms``/``last_seen_ms`` are ingest receive times; ``count`` the readings
    received while unregistered (see the backend for whether redeliveries count twice).
    """

    enterprise_id: str
    device_id: str
    sensor_id: str
    first_seen_ms: int
    last_seen_ms: int
    count: int


@dataclass(frozen=True, slots=True)
class StoredSince:
    """Readings committed after a replay mark (see ``SQLiteReadingStore.readings_after``),
    in commit order: ``keys[series[i]]`` is reading i's (enterprise, sensor); ``ts_ms`` and
    ``received_ms`` are epoch ms; ``mark`` is the highest chunk id included."""

    keys: list[tuple[str, str]]
    series: npt.NDArray[np.int64]
    ts_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    received_ms: npt.NDArray[np.int64]
    mark: int

    def __len__(self) -> int:
        return len(self.ts_ms)


# -- errors -----------------------------------------------------------------------------


class StoreError(Exception):
    """A storage operation failed. ``store`` names the backend, ``op`` the operation."""

    def __init__(self, store: str, op: str, message: str) -> None:
        super().__init__(f"{store} {op}: {message}")
        self.store = store
        self.op = op
        self.message = message


class StoreUnavailable(StoreError):
    """The backend could not be reached or refused the write (retryable)."""

    def __init__(self, store: str, op: str, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(store, op, message)
        self.status = status
        self.retry_after_s = retry_after_s


class StoreRejected(StoreError):
    """The backend refused the data itself (HTTP 400/413/422): retrying the same bytes cannot help."""

    def __init__(self, store: str, op: str, message: str, *, status: int) -> None:
        super().__init__(store, op, message)
        self.status = status


class BufferFull(StoreError):
    """The durable outage buffer cannot take the batch: nothing was stored; do not ack."""

    def __init__(self, store: str, used_bytes: int, max_bytes: int, needed_bytes: int) -> None:
        super().__init__(store, "write_readings",
                         f"outage buffer full ({used_bytes} of {max_bytes} bytes used, batch needs {needed_bytes})")
        self.used_bytes = used_bytes
        self.max_bytes = max_bytes
        self.needed_bytes = needed_bytes


# -- contracts --------------------------------------------------------------------------


@runtime_checkable
class ReadingStore(Protocol):
    """Time-series storage of readings."""

    def write_readings(self, batch: ReadingBatch) -> None:
        """Store a batch; durable when it returns (else raises :class:`StoreError`).

        Writing the same reading twice (an MQTT redelivery) stores it once.
        """

    def query_readings(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                       limit: int = 10_000) -> list[ReadingRow]:
        """Readings with ``start_ms <= ts_ms < end_ms``, oldest first, at most ``limit``."""
        ...

    def query_aggregate(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                        window_ms: int) -> list[AggRow]:
        """Mean/min/max/count per epoch-aligned window of ``window_ms``; empty windows omitted."""
        ...

    def unregistered_sensors(self) -> list[UnregisteredSensor]:
        """Sensors whose readings arrived with ``batch.row == -1``."""
        ...

    @property
    def buffer_bytes(self) -> int:
        """Bytes waiting in the outage buffer (0 for a backend without one)."""
        ...

    @property
    def buffer_near_full(self) -> bool:
        """True when the outage buffer is at or above its near-full mark (raise an alarm)."""
        ...

    def close(self) -> None:
        """Flush what can be flushed and release connections/threads."""


@runtime_checkable
class AlarmStore(Protocol):
    """Alarms, their events, and opaque named snapshots (alarm engine state)."""

    def save_changes(self, changes: list[Change]) -> None:
        """Upsert each alarm and append its event, in one transaction; sets ``event.id``."""

    def list_alarms(self, enterprise_id: str | None = None, status: AlarmStatus | None = None,
                    level: Level | None = None, limit: int = 1000, offset: int = 0) -> list[Alarm]:
        """Alarms matching all given filters, newest (highest id) first."""
        ...

    def get_alarm(self, alarm_id: int) -> Alarm | None: ...

    def alarm_events(self, alarm_id: int) -> list[AlarmEvent]:
        """Events of one alarm in the order they were saved."""
        ...

    def load_open_alarms(self) -> list[Alarm]:
        """Every alarm whose status is not ``closed`` (to rebuild the alarm book on start)."""
        ...

    def max_alarm_id(self) -> int:
        """Highest alarm id ever saved, 0 when none."""
        ...

    def save_snapshot(self, name: str, data: bytes) -> None:
        """Replace the snapshot called ``name`` (durable when it returns)."""

    def load_snapshot(self, name: str) -> bytes | None: ...

    def close(self) -> None: ...


__all__ = [
    "AggRow",
    "AlarmStore",
    "BufferFull",
    "ReadingRow",
    "ReadingStore",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoredSince",
    "UnregisteredSensor",
]
