"""Columnar reading batches: the unit of work between decode, store and the alarm core.

A batch is a set of equal-length numpy columns. Strings (enterprise, device, sensor)
are kept as object arrays because they are needed by the stores and by the registry
lookup; every numeric column is a fixed dtype so the alarm core can work on it
without conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from plantwatch.registry import Registry

ObjArray = npt.NDArray[np.object_]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


@dataclass(slots=True)
class ReadingBatch:
    """Readings decoded from one or more MQTT messages.

    Columns (all length ``n``):
      enterprise_id, device_id, sensor_id: str (object arrays)
      ts_ms: measurement time, epoch milliseconds (int64)
      value: reading in the sensor kind's unit (float64, always finite)
      ts_source: :class:`plantwatch.domain.TsSource` code (uint8)
      received_ms: ingest receive time, epoch milliseconds (int64)
      row: sensor row in the registry, -1 when the sensor is not registered (int32)
    """

    enterprise_id: ObjArray
    device_id: ObjArray
    sensor_id: ObjArray
    ts_ms: I64
    value: F64
    ts_source: U8
    received_ms: I64
    row: I32 = field(default_factory=lambda: np.empty(0, dtype=np.int32))

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        if len(self.row) != n:
            self.row = np.full(n, -1, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def empty(cls) -> ReadingBatch:
        return BatchBuilder().build()

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> ReadingBatch:
        """A new batch holding the selected rows (index array or boolean mask)."""
        return ReadingBatch(
            self.enterprise_id[idx],
            self.device_id[idx],
            self.sensor_id[idx],
            self.ts_ms[idx],
            self.value[idx],
            self.ts_source[idx],
            self.received_ms[idx],
            self.row[idx],
        )

    @classmethod
    def concat(cls, batches: list[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return ReadingBatch(
            np.concatenate([b.enterprise_id for b in batches]),
            np.concatenate([b.device_id for b in batches]),
            np.concatenate([b.sensor_id for b in batches]),
            np.concatenate([b.ts_ms for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.ts_source for b in batches]),
            np.concatenate([b.received_ms for b in batches]),
            np.concatenate([b.row for b in batches]),
        )


class BatchBuilder:
    """Accumulates decoded readings in Python lists and freezes them into a batch.

    Decoding is per message; building the numpy columns once per flush keeps the
    per-reading cost to a few list appends.
    """

    __slots__ = ("_dev", "_ent", "_recv", "_sensor", "_spans", "_src", "_ts", "_val")

    def __init__(self) -> None:
        self._ent: list[str] = []
        self._dev: list[str] = []
        self._sensor: list[str] = []
        self._ts: list[int] = []
        self._val: list[float] = []
        self._src: list[int] = []
        self._recv: list[int] = []
        self._spans: list[list[Any]] = []  # [enterprise_id, count] runs, in order (registry lookups)

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, enterprise_id: str, device_id: str, sensor_id: str, ts_ms: int, value: float,
            ts_source: int, received_ms: int) -> None:
        self._span(enterprise_id, 1)
        self._ent.append(enterprise_id)
        self._dev.append(device_id)
        self._sensor.append(sensor_id)
        self._ts.append(ts_ms)
        self._val.append(value)
        self._src.append(ts_source)
        self._recv.append(received_ms)

    def add_many(self, enterprise_id: str, device_id: str, sensors: list[str], ts: list[int],
                 values: list[float], sources: list[int], received_ms: int) -> None:
        """Append the readings of one message (same enterprise, device, receive time)."""
        n = len(ts)
        self._span(enterprise_id, n)
        self._ent.extend([enterprise_id] * n)
        self._dev.extend([device_id] * n)
        self._sensor.extend(sensors)
        self._ts.extend(ts)
        self._val.extend(values)
        self._src.extend(sources)
        self._recv.extend([received_ms] * n)

    def _span(self, enterprise_id: str, n: int) -> None:
        sp = self._spans
        if sp and sp[-1][0] == enterprise_id:
            sp[-1][1] += n
        else:
            sp.append([enterprise_id, n])

    def rows(self, registry: Registry) -> list[int]:
        """Registry rows of the readings added so far (-1 = unregistered), looked up per
        run of one enterprise's readings."""
        out: list[int] = []
        pos = 0
        sensors = self._sensor
        for ent, n in self._spans:
            out.extend(registry.rows_in(ent, sensors[pos:pos + n]))
            pos += n
        return out

    def build(self) -> ReadingBatch:
        """Freeze the accumulated readings into a batch and reset the builder."""
        n = len(self._ts)
        ent = np.empty(n, dtype=object)
        dev = np.empty(n, dtype=object)
        sen = np.empty(n, dtype=object)
        ent[:] = self._ent
        dev[:] = self._dev
        sen[:] = self._sensor
        batch = ReadingBatch(
            ent, dev, sen,
            np.asarray(self._ts, dtype=np.int64).reshape(n),
            np.asarray(self._val, dtype=np.float64).reshape(n),
            np.asarray(self._src, dtype=np.uint8).reshape(n),
            np.asarray(self._recv, dtype=np.int64).reshape(n),
        )
        self.__init__()  # type: ignore[misc]
        return batch
