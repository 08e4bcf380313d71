"""Rule catalogue: stable rule names and the per-kind defaults from DOMAIN.md "Default rules".

Rules decide grades; the numbers here are compiled once into per-row threshold vectors
by :mod:`alerts.compile`. Every number carries its unit in the key name or the kind's
unit (``%LEL``, ``ppm``, ``%VOL``, ``°C``, ``Pa``, ``kW``, ``mA``). Marks in comments
follow DOMAIN.md: [S] standard, [F] field practice, [P] our proposal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plantwatch.domain import Level

#: Stable rule names; the index of a name is ``Transitions.rule``. Append only.
RULE_NAMES: tuple[str, ...] = (
    "high",             # 0  graded high thresholds (hysteresis, delay-on/off)
    "low",              # 1  graded low thresholds (oxygen deficiency, water level/flow)
    "rate",             # 2  rate of rise per minute + predicted time to the next threshold
    "flatline",         # 3  exactly flat for a long period (covered / wrapped probe)
    "range",            # 4  outside the kind's physical range (KindSpec.lo/hi)
    "deadman",          # 5  no data for N x reporting interval (wall-clock, tick())
    "gateway_offline",  # 6  gateway status topic says offline (root alarm, one per device)
    "baseline",         # 7  deviation from the commissioning baseline (pressure difference)
    "compound",         # 8  dust temperature rise (>= yellow, or baseline + 15 °C) with a recent spark in the area
    "area_vote",        # 9  >= N gas detectors of one area at stage 2 (one alarm per area)
    "suspension",       # 10 power use inconsistent with a suspension order (停产不停电)
    "overload",         # 11 power against registered capacity / learned load
    "night",            # 12 night production under a suspension or limitation order
    "critical_feeder",  # 13 critical feeder at 0 while production runs
    "anomaly",          # 14 statistical early-warning score (alerts.anomaly), blue
    "interlock",        # 15 an alarm plus an equipment state of its area (fan runs, ventilation off) -> red
)
RULE: dict[str, int] = {name: i for i, name in enumerate(RULE_NAMES)}

#: Level order of the four columns in every threshold vector: blue, yellow, orange, red.
LEVEL_COLUMNS: tuple[Level, ...] = (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)
LEVEL_NAMES: tuple[str, ...] = tuple(lv.label for lv in LEVEL_COLUMNS)


@dataclass(frozen=True, slots=True)
class Ladder:
    """Graded thresholds for one rule, in the kind's unit (None = level not used).

    ``delay_s`` maps a level name to its delay-on (condition held that long, seconds).
    ``deadband`` is an absolute hysteresis band (unit of the kind); when None the band is
    ``hysteresis`` x |threshold| (default 10 %: clear only below 90 % of the threshold).
    """

    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None
    delay_s: dict[str, float] = field(default_factory=dict)
    delay_off_s: float = 0.0
    deadband: float | None = None
    hysteresis: float = 0.10

    def values(self) -> tuple[float | None, ...]:
        return (self.blue, self.yellow, self.orange, self.red)


@dataclass(frozen=True, slots=True)
class KindRules:
    """Default rules of one sensor kind (DOMAIN.md "Default rules")."""

    high: Ladder | None = None
    low: Ladder | None = None
    #: red = the orange (stage-2) threshold held this long, seconds (None = no such red).
    red_held_s: float | None = None
    #: rate rule: blue when value >= floor and rising >= min_per_min (unit/min);
    #: yellow when the predicted time to the next high threshold <= eta_s.
    rate_floor: float | None = None
    rate_min_per_min: float = 1.0
    rate_eta_s: float = 0.0
    #: flatline: exactly the same value for this long -> orange (0 = off).
    flatline_s: float = 0.0
    #: level when a reading is above hi / below lo of the physical range.
    range_hi_level: Level = Level.YELLOW
    range_lo_level: Level = Level.YELLOW
    #: baseline rule (pressure difference): |value/baseline - 1| in % of baseline.
    baseline: Ladder | None = None
    #: baseline rule (temperatures): value - params.baseline, in the kind's unit.
    rise: Ladder | None = None
    #: params that compile into the low ladder: low_limit -> yellow, orange after 2 min.
    uses_low_limit: bool = False
    #: this kind takes part in area voting (gas detectors at stage 2).
    votes: bool = False
    #: dust temperature: compound red with a recent spark in the same area.
    compound_temperature: bool = False
    spark_source: bool = False
    #: the high rule's red needs the area's dust equipment running: while a fresh duct air
    #: velocity shows the fan stopped it is held at orange (no fan signal counts as running).
    red_while_running: bool = False


DAY_S = 86400.0
_GAS_FLAT = DAY_S  # [P] flat or exactly 0 for > 24 h -> orange (covered probe)

#: Default OEL (ppm) per gas for gas.toxic when params.oel_ppm is absent (GBZ 2.1, recalled,
#: converted at 20 °C; DOMAIN.md asks to verify before relying). Unknown gas -> 10 ppm.
OEL_PPM: dict[str, float] = {"h2s": 7.0, "co": 17.0, "nh3": 28.0, "cl2": 0.3}
DEFAULT_OEL_PPM = 10.0
#: gas.toxic stage 2 in %OEL (the orange threshold of the default ladder) ...
TOXIC_OEL_ORANGE_PCT = 200.0
#: ... and, when the detector's range (params.range_ppm) cannot reach it and params.idlh_ppm
#: is given, blue / yellow / orange in %IDLH instead [S: GB/T 50493-2019 5.5.2: stage 1 <= 5 %,
#: stage 2 <= 10 % IDLH; blue at half of stage 1, as 50 %OEL is half of 100 %OEL].
TOXIC_IDLH_PCT = (2.5, 5.0, 10.0)

KIND_RULES: dict[str, KindRules] = {
    # yellow 25 %LEL [S stage-1 max], orange 50 [S stage-2 max], red = stage 2 held 60 s [P];
    # blue = >= 10 and rising [P]; over range -> red [P].
    "gas.combustible": KindRules(
        high=Ladder(yellow=25.0, orange=50.0), red_held_s=60.0,
        rate_floor=10.0, rate_min_per_min=1.0, rate_eta_s=120.0,
        flatline_s=_GAS_FLAT, range_hi_level=Level.RED, votes=True),
    # thresholds in %OEL are converted to ppm with params.oel_ppm: 50/100/200 %OEL, red = held.
    "gas.toxic": KindRules(
        high=Ladder(blue=50.0, yellow=100.0, orange=200.0), red_held_s=60.0,
        flatline_s=_GAS_FLAT, range_hi_level=Level.RED, votes=True),
    # drift ±0.5 from 20.9 [P] blue; <19.5 / >23.5 yellow [F]; <18 orange; <16 / >25 red [P].
    "gas.oxygen": KindRules(
        high=Ladder(blue=21.4, yellow=23.5, red=25.0, deadband=0.2),
        low=Ladder(blue=20.4, yellow=19.5, orange=18.0, red=16.0, deadband=0.2),
        flatline_s=_GAS_FLAT, range_hi_level=Level.RED),
    # hydrogen [P]: 10 / 25 / 50 %LEL, red = 50 held 60 s.
    "gas.hydrogen": KindRules(
        high=Ladder(blue=10.0, yellow=25.0, orange=50.0), red_held_s=60.0,
        rate_floor=10.0, rate_min_per_min=1.0, rate_eta_s=120.0,
        flatline_s=_GAS_FLAT, range_hi_level=Level.RED, votes=True),
    # blue baseline + 15 °C [P] (params.baseline = normal temperature); yellow 60 °C [P];
    # orange 70 °C [S AQ 4273-2016 5.1.4]; red = a temperature rise with a spark (compound).
    "dust.hopper_temperature": KindRules(
        high=Ladder(yellow=60.0, orange=70.0, deadband=3.0), flatline_s=DAY_S,
        rise=Ladder(blue=15.0, deadband=3.0), compound_temperature=True),
    "dust.inlet_temperature": KindRules(
        high=Ladder(yellow=60.0, orange=70.0, deadband=3.0), flatline_s=DAY_S,
        rise=Ladder(blue=15.0, deadband=3.0), compound_temperature=True),
    # ±10 % blue [P], ±20 % for 5 min yellow [S AQ 4273: 20 %], ±40 % or ≈0 orange [P].
    "dust.pressure_diff": KindRules(
        baseline=Ladder(blue=10.0, yellow=20.0, orange=40.0, delay_s={"yellow": 300.0}, deadband=2.0),
        flatline_s=DAY_S),
    "dust.air_velocity": KindRules(flatline_s=DAY_S, uses_low_limit=True),
    # sparks in the last minute (ring buffer): 1 yellow, >= 3 orange [P].
    "dust.spark": KindRules(high=Ladder(yellow=1.0, orange=3.0, deadband=0.5), spark_source=True),
    # valve fault (1) -> orange; fault held > 10 min -> red [P].
    "dust.rotary_valve": KindRules(high=Ladder(orange=0.5, red=0.5, delay_s={"red": 600.0}, deadband=0.0),
                                   red_while_running=True),
    "dust.isolation_valve": KindRules(high=Ladder(orange=0.5, red=0.5, delay_s={"red": 600.0}, deadband=0.0),
                                      red_while_running=True),
    # below params.low_limit: yellow [S mandatory points], held > 2 min orange [P].
    "dust.water_level": KindRules(flatline_s=DAY_S, uses_low_limit=True),
    "dust.water_flow": KindRules(flatline_s=DAY_S, uses_low_limit=True),
    # power analytics (overload, suspension, night, critical feeder) live in alerts.power.
    "power.active_power": KindRules(),
    "power.feeder_current": KindRules(),
    # 200 mA blue [P], 300 mA yellow [S GB 50116], 500 mA orange [P]. A live residual-current
    # monitor always shows some leakage noise: the same value for 24 h is a dead or bypassed
    # sensor (DOMAIN.md "flat for > 24 h, all kinds"). Meters and feeder currents are exempt: a
    # switched-off feeder or a disconnected supply legitimately reads exactly 0 for days.
    "power.residual_current": KindRules(high=Ladder(blue=200.0, yellow=300.0, orange=500.0),
                                        flatline_s=DAY_S),
}

#: Delay before the low-limit orange (dust.water_level / flow), seconds [P].
LOW_LIMIT_ORANGE_S = 120.0
#: Deadman: blue after this many reporting intervals [P] ...
DEADMAN_INTERVALS = 3.0
#: ... yellow after this long without data (or the blue time if later), seconds [P].
DEADMAN_YELLOW_S = 1800.0
#: Gateway offline: blue at once (the MQTT last will already waited 1.5 keepalives),
#: yellow after DEADMAN_YELLOW_S, mirroring the deadman ladder it replaces.
GATEWAY_YELLOW_S = DEADMAN_YELLOW_S
#: Area voting: this many detectors of one area at stage 2 (orange) -> red [P].
AREA_VOTE_N = 2
#: dust.spark thresholds count sparks over this window (ring buffer), seconds [P: "per minute"].
SPARK_RATE_WINDOW_S = 60.0
#: Compound dust: a spark counts as "recent" for this long, seconds [P].
SPARK_WINDOW_S = 60.0
#: Compound dust (issue: "temperature rise with sparks -> red"): a dust temperature whose high
#: rule is at or above this level (60 °C), or whose baseline rise rule is at blue
#: (params.baseline + 15 °C), is "rising" [P].
COMPOUND_TEMP_LEVEL = Level.YELLOW
#: Interlock reds [P] (DOMAIN.md red column): a duct air velocity (dust.air_velocity) at or
#: above this means the area's fan / dust equipment runs, m/s (per sensor: params.running_min).
FAN_RUNNING_MPS = 1.0
#: A temperature (dust.*_temperature) "alarm" for the residual-current red: its high rule at
#: or above this level.
INTERLOCK_TEMP_LEVEL = Level.YELLOW
#: Hydrogen with ventilation off: the hydrogen high rule at or above this level.
INTERLOCK_H2_LEVEL = Level.YELLOW
#: "≈0" pressure difference (bag rupture): at or below this fraction of the baseline.
PDIFF_ZERO_FRAC = 0.10
#: Anomaly score at or above which the anomaly rule raises blue (early warning) [P]. 0.9, not
#: the scorer's 0.5 fire level: on white noise (alerts.anomaly defaults) 0.5 fired 0.78 times
#: per sensor per 4000 samples, 0.9 fired 0.015 times (measured, 2000 sensors) ...
ANOMALY_BLUE = 0.9
#: ... and only after this many samples of the sensor (the scorer's warm-up fires most) ...
ANOMALY_MIN_SAMPLES = 200
#: ... and the blue is held this long after the last score at or above it, s.
ANOMALY_HOLD_S = 600.0

# -- power analytics (alerts.power) -------------------------------------------------------
#: Local time offset for hour-of-week profiles and night hours, hours (China Standard Time).
TZ_OFFSET_H = 8.0
#: Night: local hours [NIGHT_START_H, 24) and [0, NIGHT_END_H).
NIGHT_START_H = 22
NIGHT_END_H = 6
#: Power is "production-like" at >= this fraction of the learned normal load for the hour ...
PROD_FRAC = 0.5
#: ... and stays so (hysteresis) down to this fraction once the suspension rule is yellow.
PROD_HOLD_FRAC = 0.4
#: Profile buckets need this many samples before they are trusted; learning rate floor 1/MAX.
PROFILE_MIN_N = 4
PROFILE_MAX_N = 200
#: P95 of the learned load = mean + P95_Z x sd (sd floored at 5 % of the mean).
P95_Z = 1.645
#: Suspension: blue above this factor of the learned suspended baseline [P] ...
SUSP_BLUE_FACTOR = 1.2
#: ... yellow when production-like for this long, s [P: 15-min profile] ...
SUSP_YELLOW_S = 900.0
#: ... orange when today's energy reaches this share of a normal production day [P].
SUSP_ORANGE_ENERGY = 0.3
