"""Domain vocabulary shared by every package: alarm levels, sensor kinds, units.

Levels are encoded as small integers ordered by severity (``NONE`` < ``BLUE`` < ... <
``RED``) so that the numpy core can take ``np.maximum`` over them. The public grade
number (1 = red ... 4 = blue, as in DOMAIN.md) is derived, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Level(IntEnum):
    """Alarm severity, ordered so that a larger value is more severe."""

    NONE = 0
    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def label(self) -> str:
        """Lower-case colour name used on the wire (``"red"``) or ``"none"``."""
        return _LEVEL_LABELS[self]  # a tuple, not ``name.lower()``: an alarm storm reads it 6x an alarm

    @property
    def grade(self) -> int:
        """Chinese grade number: red=1 (重大) ... blue=4 (低); 0 for NONE."""
        return 0 if self is Level.NONE else 5 - int(self)

    @classmethod
    def parse(cls, name: str) -> Level:
        """Parse a colour name (case-insensitive); raises ValueError naming the input."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown alarm level {name!r}; expected red, orange, yellow or blue") from None


_LEVEL_LABELS: tuple[str, ...] = tuple(lv.name.lower() for lv in Level)  # indexed by the level's value
ALARM_LEVELS: tuple[Level, ...] = (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)


class AlarmStatus(StrEnum):
    """Lifecycle state of an alarm as monitoring-centre staff see it."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"


class ProductionStatus(StrEnum):
    """Enterprise production status (a suspension order makes power use suspicious)."""

    NORMAL = "normal"
    SUSPENDED = "suspended"
    LIMITED = "limited"


class TsSource(IntEnum):
    """Where a reading's timestamp came from (stored with every reading)."""

    READING = 0  # the reading carried its own ts
    BATCH = 1  # inherited from the batch envelope
    RECEIVED = 2  # no ts anywhere: the ingest receive time


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A sensor kind from the catalogue in DOMAIN.md.

    ``lo``/``hi`` bound the physically possible range (readings outside it are an
    out-of-range fault, not a process condition). ``interval_s`` is the default
    reporting interval used by deadman rules when a sensor does not set its own.
    """

    kind: str
    unit: str
    lo: float
    hi: float
    interval_s: float
    domain: str
    description: str


_KINDS: tuple[KindSpec, ...] = (
    KindSpec("gas.combustible", "%LEL", 0.0, 100.0, 5.0, "gas", "combustible gas (catalytic/IR)"),
    KindSpec("gas.toxic", "ppm", 0.0, 1000.0, 5.0, "gas", "toxic gas (H2S, CO, NH3, Cl2, ...)"),
    KindSpec("gas.oxygen", "%VOL", 0.0, 30.0, 5.0, "gas", "oxygen deficiency/enrichment"),
    KindSpec("gas.hydrogen", "%LEL", 0.0, 100.0, 5.0, "gas", "hydrogen (Al/Mg wet collectors)"),
    KindSpec("dust.hopper_temperature", "°C", -40.0, 400.0, 10.0, "dust", "dry collector hopper temperature"),
    KindSpec("dust.inlet_temperature", "°C", -40.0, 400.0, 10.0, "dust", "dry collector inlet temperature"),
    KindSpec("dust.pressure_diff", "Pa", 0.0, 10000.0, 10.0, "dust", "filter pressure difference"),
    KindSpec("dust.air_velocity", "m/s", 0.0, 60.0, 10.0, "dust", "duct air velocity"),
    KindSpec("dust.spark", "count", 0.0, 10000.0, 10.0, "dust", "sparks detected per interval"),
    KindSpec("dust.rotary_valve", "0/1", 0.0, 1.0, 10.0, "dust", "rotary valve fault (1 = fault)"),
    KindSpec("dust.isolation_valve", "0/1", 0.0, 1.0, 10.0, "dust", "isolation valve fault (1 = fault)"),
    KindSpec("dust.water_level", "m", 0.0, 20.0, 10.0, "dust", "wet collector water level"),
    KindSpec("dust.water_flow", "m³/h", 0.0, 1000.0, 10.0, "dust", "wet collector water flow"),
    KindSpec("power.active_power", "kW", 0.0, 1.0e6, 60.0, "power", "enterprise main meter active power"),
    KindSpec("power.feeder_current", "A", 0.0, 1.0e5, 60.0, "power", "feeder current"),
    KindSpec("power.residual_current", "mA", 0.0, 5000.0, 60.0, "power", "residual current (electrical fire)"),
)

KINDS: dict[str, KindSpec] = {k.kind: k for k in _KINDS}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)
KIND_INDEX: dict[str, int] = {name: i for i, name in enumerate(KIND_NAMES)}


def kind_spec(kind: str) -> KindSpec:
    """Look up a kind; raises ValueError naming the unknown kind and the known ones."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown sensor kind {kind!r}; known kinds: {', '.join(KIND_NAMES)}") from None
