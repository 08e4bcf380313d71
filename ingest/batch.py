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
    """Accumulates decoded readings and freezes them into a batch.

    Decoding is per message: sensor, ts and value are appended per reading, while the
    enterprise, device, receive time and (usually) ts source are kept once per message
    and expanded with ``np.repeat`` when the batch is built, so a 100-reading message
    costs three list extends.
    """

    __slots__ = ("_per_reading_src", "_r_dev", "_r_ent", "_r_n", "_r_recv", "_r_src", "_sensor", "_spans", "_ts",
                 "_val")

    def __init__(self) -> None:
        self._sensor: list[str] = []
        self._ts: list[int] = []
        self._val: list[float] = []
        # per message (run): enterprise, device, reading count, receive time, ts source(s)
        self._r_ent: list[str] = []
        self._r_dev: list[str] = []
        self._r_n: list[int] = []
        self._r_recv: list[int] = []
        self._r_src: list[Any] = []  # an int, or a list of one per reading when _per_reading_src
        self._per_reading_src = False
        self._spans: list[list[Any]] = []  # [enterprise_id, count] runs, in order (registry lookups)

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, enterprise_id: str, device_id: str, sensor_id: str, ts_ms: int, value: float,
            ts_source: int, received_ms: int) -> None:
        self._span(enterprise_id, 1)
        self._sensor.append(sensor_id)
        self._ts.append(ts_ms)
        self._val.append(value)
        self._r_ent.append(enterprise_id)
        self._r_dev.append(device_id)
        self._r_n.append(1)
        self._r_recv.append(received_ms)
        self._r_src.append(ts_source)

    def add_many(self, enterprise_id: str, device_id: str, sensors: list[str], ts: list[int],
                 values: list[float], sources: list[int] | int, received_ms: int) -> None:
        """Append the readings of one message (same enterprise, device, receive time);
        ``sources`` is one ts source for all of them or one per reading."""
        n = len(ts)
        if not n:
            return
        self._span(enterprise_id, n)
        self._sensor.extend(sensors)
        self._ts.extend(ts)
        self._val.extend(values)
        self._r_ent.append(enterprise_id)
        self._r_dev.append(device_id)
        self._r_n.append(n)
        self._r_recv.append(received_ms)
        self._r_src.append(sources)
        if type(sources) is not int:
            self._per_reading_src = True

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
        m = len(self._r_n)
        ent = np.empty(m, dtype=object)
        dev = np.empty(m, dtype=object)
        ent[:] = self._r_ent
        dev[:] = self._r_dev
        recv = np.asarray(self._r_recv, dtype=np.int64).reshape(m)
        if self._per_reading_src:
            flat: list[int] = []
            for x, k in zip(self._r_src, self._r_n, strict=True):
                flat.extend(x if isinstance(x, list) else [x] * k)
            src = np.asarray(flat, dtype=np.uint8).reshape(n)
        else:
            src = np.asarray(self._r_src, dtype=np.uint8).reshape(m)
        if m != n:  # some message had several readings: expand the per-message columns
            counts = np.asarray(self._r_n, dtype=np.intp)
            ent, dev, recv = np.repeat(ent, counts), np.repeat(dev, counts), np.repeat(recv, counts)
            if not self._per_reading_src:
                src = np.repeat(src, counts)
        sen = np.empty(n, dtype=object)
        sen[:] = self._sensor
        batch = ReadingBatch(
            ent, dev, sen,
            np.asarray(self._ts, dtype=np.int64).reshape(n),
            np.asarray(self._val, dtype=np.float64).reshape(n),
            src, recv,
        )
        self.__init__()  # type: ignore[misc]
        return batch
