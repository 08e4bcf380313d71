"""Batch builders shared by the store tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ingest.batch import ReadingBatch


def obj(values: Sequence[str]) -> npt.NDArray[np.object_]:
    a = np.empty(len(values), dtype=object)
    a[:] = list(values)
    return a


def make_batch(enterprise: Sequence[str], device: Sequence[str], sensor: Sequence[str], ts_ms: Sequence[int],
               value: Sequence[float], *, rows: Sequence[int] | None = None, ts_source: Sequence[int] | None = None,
               received_ms: Sequence[int] | None = None) -> ReadingBatch:
    n = len(ts_ms)
    return ReadingBatch(
        obj(enterprise), obj(device), obj(sensor),
        np.asarray(ts_ms, dtype=np.int64), np.asarray(value, dtype=np.float64),
        np.asarray(ts_source if ts_source is not None else [0] * n, dtype=np.uint8),
        np.asarray(received_ms if received_ms is not None else list(ts_ms), dtype=np.int64),
        np.asarray(rows if rows is not None else [-1] * n, dtype=np.int32),
    )


def grid_batch(n_sensors: int, n_steps: int, t0_ms: int, step_ms: int = 1000, enterprise: str = "E1",
               seed: int = 0, registered: bool = True) -> ReadingBatch:
    """``n_sensors`` sensors × ``n_steps`` timestamps; values with 3 decimals (exact in text)."""
    rng = np.random.default_rng(seed)
    s_idx = np.tile(np.arange(n_sensors), n_steps)
    t_idx = np.repeat(np.arange(n_steps), n_sensors)
    n = len(s_idx)
    sensors = [f"S-{i:04d}" for i in range(n_sensors)]
    return ReadingBatch(
        obj([enterprise] * n), obj([f"GW-{i % 3}" for i in s_idx.tolist()]), obj([sensors[i] for i in s_idx.tolist()]),
        (t0_ms + t_idx * step_ms).astype(np.int64),
        np.round(rng.uniform(-50, 150, n), 3),
        (t_idx % 3).astype(np.uint8),
        (t0_ms + t_idx * step_ms + 5).astype(np.int64),
        (s_idx if registered else np.full(n, -1)).astype(np.int32),
    )
