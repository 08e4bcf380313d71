"""Injectable clocks: every timer in plantwatch reads time through one of these."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def wall_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class FakeClock:
    """A settable clock for tests: ``clock()`` returns ``now`` (epoch ms)."""

    def __init__(self, now_ms: int = 1_795_459_488_000) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now
