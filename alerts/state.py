"""Preallocated per-sensor state arrays, indexed by row, grown (never shrunk) on sync.

:class:`RowState` is a small table of named numpy arrays whose first axis is the sensor
row. Capacity grows geometrically when the registry grows, so a batch never allocates
per-sensor memory and memory does not grow with the number of readings. Snapshots are
plain ``dict[str, np.ndarray]`` (safe for ``np.savez``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: "No timestamp" sentinel for int64 epoch-ms timer arrays.
NO_TS = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Column:
    """Declaration of one per-row array: trailing shape, dtype and initial fill."""

    name: str
    dtype: type[np.generic]
    fill: float | int
    shape: tuple[int, ...] = ()


class RowState:
    """Named per-row arrays with capacity ``cap`` (rows ``>= n`` are unused padding)."""

    def __init__(self, columns: list[Column], cap: int) -> None:
        self.columns = {c.name: c for c in columns}
        self.cap = 0
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.grow(max(cap, 1))

    def _new(self, c: Column, cap: int) -> npt.NDArray[Any]:
        return np.full((cap, *c.shape), c.fill, dtype=c.dtype)

    def grow(self, need: int) -> None:
        """Ensure capacity for ``need`` rows (doubling); existing rows keep their values."""
        if need <= self.cap:
            return
        cap = max(need, 2 * self.cap, 16)
        for name, c in self.columns.items():
            new = self._new(c, cap)
            old = self.arrays.get(name)
            if old is not None:
                new[: self.cap] = old
            self.arrays[name] = new
        self.cap = cap

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.arrays[name]

    def nbytes_per_row(self) -> int:
        """Bytes of state per sensor row (excluding padding)."""
        return sum(int(np.dtype(c.dtype).itemsize * int(np.prod(c.shape, dtype=np.int64)))
                   for c in self.columns.values())

    def snapshot(self, n: int, prefix: str = "") -> dict[str, npt.NDArray[Any]]:
        """Copies of the first ``n`` rows of every array."""
        return {prefix + name: a[:n].copy() for name, a in self.arrays.items()}

    def restore(self, snap: dict[str, npt.NDArray[Any]], prefix: str = "") -> int:
        """Load arrays written by :meth:`snapshot`; returns the number of rows restored.

        Missing names keep their initial fill (forward compatible); a snapshot with more
        rows than the current capacity grows the state.
        """
        n = 0
        for name, c in self.columns.items():
            a = snap.get(prefix + name)
            if a is None:
                continue
            if a.shape[1:] != c.shape:
                raise ValueError(f"snapshot array {prefix + name!r} has shape {a.shape}, expected (n, *{c.shape})")
            self.grow(len(a))
            self.arrays[name][: len(a)] = a
            n = max(n, len(a))
        return n
