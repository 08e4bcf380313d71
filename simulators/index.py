"""Lookup tables over a scenario's sensors, shared by the domain models while compiling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulators.shapes import SensorModel
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec


@dataclass(slots=True)
class Index:
    """Sensors (with filled-in params) in column order, their models and enterprises."""

    sensors: Sequence[SensorSpec]
    models: Sequence[SensorModel]
    enterprises: Sequence[EnterpriseSpec]
    start_ms: int
    cols: dict[tuple[str, str], int] = field(default_factory=dict)
    ent_idx: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cols = {s.key: i for i, s in enumerate(self.sensors)}
        self.ent_idx = {e.id: i for i, e in enumerate(self.enterprises)}

    def col(self, enterprise_id: str, sensor_id: str, where: str) -> int:
        try:
            return self.cols[(enterprise_id, sensor_id)]
        except KeyError:
            raise ScenarioError(where, f"unknown sensor {enterprise_id}/{sensor_id}") from None

    def event_cols(self, ev: EventSpec, where: str, kinds: Iterable[str] | None = None) -> list[int]:
        """Columns of the event's sensors; checks they exist and have an allowed kind."""
        allowed = set(kinds) if kinds is not None else None
        out: list[int] = []
        for sid in ev.sensors:
            c = self.col(ev.enterprise_id, sid, where)
            if allowed is not None and self.sensors[c].kind not in allowed:
                raise ScenarioError(where, f"sensor {sid} has kind {self.sensors[c].kind}; "
                                           f"{ev.kind} needs one of {', '.join(sorted(allowed))}")
            out.append(c)
        if not out:
            raise ScenarioError(where, f"{ev.kind} needs at least one sensor")
        return out

    def of_kind(self, enterprise_id: str, kinds: Iterable[str], area: str | None = None) -> list[int]:
        ks = set(kinds)
        return [i for i, s in enumerate(self.sensors)
                if s.enterprise_id == enterprise_id and s.kind in ks and (area is None or s.area == area)]

    def ent(self, enterprise_id: str, where: str) -> EnterpriseSpec:
        try:
            return self.enterprises[self.ent_idx[enterprise_id]]
        except KeyError:
            raise ScenarioError(where, f"unknown enterprise {enterprise_id!r}") from None

    def window(self, ev: EventSpec, tail_s: float) -> tuple[int, int, int]:
        """(start_ms, lo_ms, hi_ms) of an event whose effect lasts ``tail_s`` past its end."""
        start = self.start_ms + round(ev.start_s * 1000)
        return start, start, start + round((ev.duration_s + tail_s) * 1000)


def intp(cols: Iterable[int]) -> npt.NDArray[np.intp]:
    return np.asarray(list(cols), dtype=np.intp)
