"""Columnar level transitions produced by the engine and consumed by the lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class Transitions:
    """Per (sensor row, rule) level changes, all columns of equal length.

    row: sensor row (int32); rule: index into the engine's ``rule_names`` (int16);
    level / prev: new and previous :class:`plantwatch.domain.Level` (int8);
    value: the reading (or derived quantity) that caused it, in the rule's unit
    (float64, NaN for timer-driven transitions such as deadman);
    ts_ms: event time, epoch ms (the reading's own timestamp, or the tick time).
    """

    row: npt.NDArray[np.int32]
    rule: npt.NDArray[np.int16]
    level: npt.NDArray[np.int8]
    prev: npt.NDArray[np.int8]
    value: npt.NDArray[np.float64]
    ts_ms: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def empty(cls) -> Transitions:
        return cls(
            np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int8),
            np.empty(0, np.int8), np.empty(0, np.float64), np.empty(0, np.int64),
        )

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__slots__))

    def take(self, idx: npt.NDArray[np.intp]) -> Transitions:
        return Transitions(*(getattr(self, f)[idx] for f in self.__slots__))

    def pair_keys(self) -> npt.NDArray[np.int64]:
        """One int64 per (row, rule) pair: ``row << 16 | rule`` (rules are int16; rows >= -1)."""
        return self.row.astype(np.int64) << 16 | (self.rule.astype(np.int64) & 0xFFFF)

    def most_severe_first(self) -> Transitions:
        """The same transitions, the (row, rule) pairs ordered by the highest level each reaches
        here, highest first; a pair's own sequence and ties keep their order (stable). An alarm
        storm is applied in slices in this order, so its red alarms reach the staff first."""
        if len(self) < 2:
            return self
        _, inv = np.unique(self.pair_keys(), return_inverse=True)
        top = np.zeros(int(inv.max()) + 1, np.int16)
        np.maximum.at(top, inv, self.level.astype(np.int16))
        return self.take(np.argsort(-top[inv], kind="stable"))

    def last_per_pair(self) -> Transitions:
        """Only the newest transition of each (row, rule), in their original order: the net
        change of a sequence (what a replay must tell a book that already saw the sequence)."""
        if len(self) < 2:
            return self
        key = self.pair_keys()
        _, first_in_reversed = np.unique(key[::-1], return_index=True)
        return self.take(np.sort(len(key) - 1 - first_in_reversed))

