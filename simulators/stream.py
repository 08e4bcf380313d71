"""From readings to MQTT messages (topic, payload) per the contract in docs/mqtt.md, and
recorded CSV data in and out.

Payloads are built as bytes in a fixed order with Python's shortest float repr, so a
stream is byte-identical for the same scenario, seed and start time. A batch carries
its ``ts`` once; a single reading carries its own ``ts``. Gateway status changes come
in the same time-ordered stream: ``online`` (retained) when a gateway (re)connects and
a ``will`` marker where it dies (the publisher then drops the connection so that the
broker publishes the gateway's last will ``offline``).
"""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import orjson

from simulators.model import Plant

MsgKind = Literal["data", "online", "will"]
CSV_HEADER = ("ts_ms", "enterprise_id", "device_id", "sensor", "value")
MAX_BATCH = 1000  # readings per batch message (keeps payloads far below 256 KiB)


@dataclass(frozen=True, slots=True)
class Message:
    """One thing to publish at virtual time ``t_ms`` on gateway ``device``.

    ``kind``: ``data`` (readings), ``online`` (retained status), ``will`` (the gateway
    dies here: the publisher drops its connection and the broker publishes the will;
    ``payload`` shows what subscribers will see).
    """

    t_ms: int
    device: tuple[str, str]
    kind: MsgKind
    topic: str
    payload: bytes
    readings: int = 0
    retain: bool = False


def telemetry_topic(prefix: str, enterprise_id: str, device_id: str) -> str:
    return f"{prefix}/{enterprise_id}/{device_id}/telemetry"


def status_topic(prefix: str, enterprise_id: str, device_id: str) -> str:
    return f"{prefix}/{enterprise_id}/{device_id}/status"


def _encode_batch(t_ms: int, ids: list[bytes], values: list[float]) -> bytes:
    body = b",".join(b'{"sensor":' + i + b',"value":' + repr(v).encode() + b"}" for i, v in zip(ids, values,
                                                                                                 strict=True))
    return b'{"ts":' + str(t_ms).encode() + b',"readings":[' + body + b"]}"


def _encode_single(t_ms: int, sid: bytes, value: float) -> bytes:
    return b'{"sensor":' + sid + b',"ts":' + str(t_ms).encode() + b',"value":' + repr(value).encode() + b"}"


class DeviceFrames:
    """Per-gateway encoder: readings of one tick → one batch message or one message each."""

    def __init__(self, prefix: str, devices: list[tuple[str, str]], sensor_ids: list[list[str]],
                 *, batch: bool, max_batch: int = MAX_BATCH) -> None:
        self.devices = devices
        self.topics = [telemetry_topic(prefix, e, d) for e, d in devices]
        self.ids = [[orjson.dumps(s) for s in ids] for ids in sensor_ids]
        self.batch = batch
        self.max_batch = max_batch

    def encode(self, dev: int, t_ms: int, local: Iterable[int], values: list[float]) -> Iterator[Message]:
        ids = self.ids[dev]
        sel = [ids[i] for i in local]
        topic, device = self.topics[dev], self.devices[dev]
        if self.batch:
            for a in range(0, len(sel), self.max_batch):
                chunk = sel[a:a + self.max_batch]
                yield Message(t_ms, device, "data", topic, _encode_batch(t_ms, chunk, values[a:a + self.max_batch]),
                              len(chunk))
        else:
            for sid, v in zip(sel, values, strict=True):
                yield Message(t_ms, device, "data", topic, _encode_single(t_ms, sid, v), 1)


def plant_messages(plant: Plant, *, batch: bool = True, prefix: str = "plants",
                   max_batch: int = MAX_BATCH, end_ms: int | None = None) -> Iterator[Message]:
    """The full time-ordered message stream of a plant (with noise), from its start.

    Starts with a retained ``online`` per gateway; ends before ``end_ms`` if given.
    """
    frames = DeviceFrames(prefix, plant.devices, [[plant.sensors[c].id for c in cols]
                                                  for cols in plant.device_cols], batch=batch, max_batch=max_batch)
    # column → (device, position within device)
    dev_of = np.empty(plant.n, dtype=np.intp)
    for d, cols in enumerate(plant.device_cols):
        dev_of[cols] = d
    order = np.argsort(dev_of, kind="stable")
    bounds = np.searchsorted(dev_of[order], np.arange(len(plant.devices) + 1))
    local_pos = np.empty(plant.n, dtype=np.intp)
    for cols in plant.device_cols:
        local_pos[cols] = np.arange(len(cols))
    for ent_id, dev_id in plant.devices:
        yield Message(plant.start_ms, (ent_id, dev_id), "online", status_topic(prefix, ent_id, dev_id), b"online",
                      retain=True)
    status = [(t, dev) for t, dev, _ in plant.status]
    online = [on for _, _, on in plant.status]
    si = 0
    for blk in plant.blocks():
        vals = blk.values[:, order]
        due = blk.due[:, order]
        for k in range(len(blk.t_ms)):
            t = int(blk.t_ms[k])
            if end_ms is not None and t >= end_ms:
                return
            while si < len(status) and status[si][0] <= t:
                st, dev = status[si]
                topic = status_topic(prefix, *dev)
                if online[si]:
                    yield Message(st, dev, "online", topic, b"online", retain=True)
                else:
                    yield Message(st, dev, "will", topic, b"offline", retain=True)
                si += 1
            row_due = due[k]
            if not row_due.any():
                continue
            row_vals = vals[k]
            for dv in range(len(plant.devices)):
                a, b = int(bounds[dv]), int(bounds[dv + 1])
                m = row_due[a:b]
                if not m.any():
                    continue
                gcols = order[a:b][m]
                yield from frames.encode(dv, t, local_pos[gcols].tolist(), row_vals[a:b][m].tolist())


def write_csv(plant: Plant, path: Path) -> int:
    """Record a plant's readings as CSV (``ts_ms,enterprise_id,device_id,sensor,value``)."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for blk in plant.blocks():
            ks, js = np.nonzero(blk.due)
            vals = blk.values[ks, js].tolist()
            for k, j, v in zip(ks.tolist(), js.tolist(), vals, strict=True):
                s = plant.sensors[j]
                w.writerow((int(blk.t_ms[k]), s.enterprise_id, s.device_id, s.id, repr(v)))
                n += 1
    return n


@dataclass(frozen=True, slots=True)
class CsvRecording:
    """Rows of a recorded CSV, time-ordered: (ts_ms, enterprise_id, device_id, sensor, value)."""

    rows: list[tuple[int, str, str, str, float]]

    @property
    def devices(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((r[1], r[2]) for r in self.rows))

    @property
    def span_ms(self) -> int:
        return self.rows[-1][0] - self.rows[0][0] if self.rows else 0


class ReplayError(ValueError):
    """A recorded CSV that cannot be replayed; ``where`` is ``file:line``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def read_csv(path: Path) -> CsvRecording:
    """Read a recording; columns by header name, extra columns ignored; sorted by ts (stable)."""
    rows: list[tuple[int, str, str, str, float]] = []
    with path.open(newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        missing = set(CSV_HEADER) - set(r.fieldnames or [])
        if missing:
            raise ReplayError(f"{path}:1", f"missing columns {sorted(missing)}; expected {','.join(CSV_HEADER)}")
        for line, row in enumerate(r, start=2):
            try:
                rows.append((int(row["ts_ms"]), row["enterprise_id"], row["device_id"], row["sensor"],
                             float(row["value"])))
            except (TypeError, ValueError) as exc:
                raise ReplayError(f"{path}:{line}", str(exc)) from None
    rows.sort(key=lambda x: x[0])
    return CsvRecording(rows)


def replay_messages(rec: CsvRecording, *, batch: bool = True, prefix: str = "plants", shift_ms: int = 0,
                    max_batch: int = MAX_BATCH) -> Iterator[Message]:
    """Messages for a recording, timestamps shifted by ``shift_ms``; rows with the same
    (ts, gateway) go into one batch."""
    devices = rec.devices
    for e, d in devices:
        t0 = rec.rows[0][0] + shift_ms if rec.rows else 0
        yield Message(t0, (e, d), "online", status_topic(prefix, e, d), b"online", retain=True)
    i, rows = 0, rec.rows
    while i < len(rows):
        t = rows[i][0]
        j = i
        while j < len(rows) and rows[j][0] == t:
            j += 1
        groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for _, e, d, s, v in rows[i:j]:
            groups.setdefault((e, d), []).append((s, v))
        ts = t + shift_ms
        for (e, d), items in groups.items():
            topic = telemetry_topic(prefix, e, d)
            if batch:
                for a in range(0, len(items), max_batch):
                    chunk = items[a:a + max_batch]
                    yield Message(ts, (e, d), "data", topic,
                                  _encode_batch(ts, [orjson.dumps(s) for s, _ in chunk], [v for _, v in chunk]),
                                  len(chunk))
            else:
                for s, v in items:
                    yield Message(ts, (e, d), "data", topic, _encode_single(ts, orjson.dumps(s), v), 1)
        i = j


def merge(*streams: Iterable[Message]) -> Iterator[Message]:
    """Merge time-ordered streams by ``t_ms`` (stable)."""
    return heapq.merge(*streams, key=lambda m: m.t_ms)
