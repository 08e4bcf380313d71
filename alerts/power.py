"""Power analytics per enterprise (placeholder filled in below by the engine owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from alerts.compile import Compiled


class PowerAnalytics:
    """Learned hour-of-week load profile, suspension, night production, critical feeders."""

    def sync(self, cfg: Compiled, cap: int) -> None:
        self._cfg = cfg

    def bytes_per_row(self) -> int:
        return 0

    def observe(self, rows: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                v: npt.NDArray[np.float64]) -> None:
        return None

    def evaluate(self, engine: Any, touched: npt.NDArray[np.int32], ts: int, now_ms: int, out: Any) -> None:
        return None

    def tick(self, engine: Any, now_ms: int, out: Any) -> None:
        return None

    def snapshot(self, n: int) -> dict[str, np.ndarray[Any, Any]]:
        return {}

    def restore(self, snap: Any) -> None:
        return None
