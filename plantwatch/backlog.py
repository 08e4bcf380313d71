"""Engine transitions waiting for the alarm book during an alarm storm (plain data, no I/O).

The service applies a storm (more transitions at once than it applies per event-loop turn)
in slices, oldest first; this queue keeps them with the time of their evaluation, hands out
slices without copying the rest, and can pull one (sensor row, rule) pair's transitions out
ahead of the others (its own order kept), for a staff action on that alarm. Transitions of
one pair never overtake each other, whatever is taken first. docs/lifecycle.md "Alarm storms".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from alerts.transitions import Transitions


def pair_key(row: int, rule: int) -> int:
    """:meth:`Transitions.pair_keys` of one pair."""
    return (int(row) << 16) | (int(rule) & 0xFFFF)


@dataclass(slots=True)
class _Entry:
    tr: Transitions
    now_ms: int
    start: int = 0  # transitions before it are applied


class Backlog:
    """FIFO of engine transitions, each set with the ``now_ms`` it was evaluated at."""

    def __init__(self) -> None:
        self._q: deque[_Entry] = deque()
        self._n = 0

    def __len__(self) -> int:
        """Transitions waiting."""
        return self._n

    def add(self, tr: Transitions, now_ms: int) -> None:
        if len(tr):
            self._q.append(_Entry(tr, now_ms))
            self._n += len(tr)

    def take(self, limit: int) -> list[tuple[Transitions, int]]:
        """Up to ``limit`` of the oldest transitions, as (set, now_ms) parts in order."""
        out: list[tuple[Transitions, int]] = []
        while self._q and limit > 0:
            e = self._q[0]
            stop = min(e.start + limit, len(e.tr))
            part = e.tr if e.start == 0 and stop == len(e.tr) else e.tr.take(np.arange(e.start, stop))
            out.append((part, e.now_ms))
            limit -= stop - e.start
            self._n -= stop - e.start
            e.start = stop
            if stop == len(e.tr):
                self._q.popleft()
        return out

    def take_pair(self, row: int, rule: int) -> list[tuple[Transitions, int]]:
        """Every waiting transition of one (row, rule) pair, removed from the queue, in order."""
        key = pair_key(row, rule)
        out: list[tuple[Transitions, int]] = []
        for e in self._q:
            hit = e.tr.pair_keys()[e.start:] == key
            if hit.any():
                idx = e.start + np.flatnonzero(hit)
                out.append((e.tr.take(idx), e.now_ms))
                e.tr, e.start = e.tr.take(e.start + np.flatnonzero(~hit)), 0
                self._n -= len(idx)
        self._q = deque(e for e in self._q if e.start < len(e.tr))
        return out

    def pending_keys(self) -> set[int]:
        """The pairs (:func:`pair_key`) with a transition waiting."""
        if not self._q:
            return set()
        keys = np.concatenate([e.tr.pair_keys()[e.start:] for e in self._q])
        return set(np.unique(keys).tolist())
