"""Declarative pieces of a scenario: enterprises, sensors and timed events (incidents, faults).

These are plain frozen records; :mod:`simulators.scenario` reads them from TOML and
:mod:`simulators.model` compiles them into arrays. Times in an event are seconds from
the scenario start, so one scenario can be replayed at any absolute start time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Category = Literal["incident", "fault"]

SCHEDULES = ("shifts", "day", "continuous", "off")


class ScenarioError(ValueError):
    """Invalid scenario content; ``where`` names the file and key."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class EnterpriseSpec:
    """A simulated enterprise.

    ``schedule`` is its production pattern in local time (``shifts``: Mon–Fri 08–20 h
    with a lunch dip and Saturday morning; ``day``: Mon–Fri 08–17 h; ``continuous``;
    ``off``). A ``suspended`` production status forces production to zero.
    ``capacity_kw`` is the registered power capacity (kW).
    """

    id: str
    name: str = ""
    region: str = ""
    production_status: str = "normal"
    capacity_kw: float = 1000.0
    schedule: str = "shifts"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """A simulated sensor on a gateway (``device_id``).

    ``params`` are exported to the registry (``oel_ppm``, ``baseline``, ``low_limit``,
    ``capacity``, ``critical`` ...); ``model`` overrides the simulator's normal
    behaviour (``level``, ``noise_sd``, ``noise_rel``, ``drift_amp``, ``drift_period_s``,
    ``coupling``) and is not exported. ``interval_s`` is the reporting interval (s).
    """

    enterprise_id: str
    id: str
    kind: str
    device_id: str
    area: str = ""
    interval_s: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    model: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.enterprise_id, self.id)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An injected incident or sensor fault.

    ``sensors`` lists the sensors involved (for a gas leak the first is the source);
    ``device_id`` names the gateway for ``gateway_death``. ``start_s``/``duration_s``
    are seconds from the scenario start. ``intensity`` is kind-specific (documented in
    docs/simulators.md); ``None`` takes the kind's default.
    """

    category: Category
    kind: str
    enterprise_id: str
    start_s: float
    duration_s: float
    sensors: tuple[str, ...] = ()
    device_id: str = ""
    intensity: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
