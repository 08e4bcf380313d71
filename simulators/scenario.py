"""Scenarios: plants, sensors and scheduled incidents/faults, from TOML or generated from a seed.

A scenario is declarative; :meth:`Scenario.plant` compiles it for a given start time.
The stream depends only on (scenario, seed, start), never on the publishing speed.
See docs/simulators.md for the file format.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from plantwatch.domain import KINDS
from simulators.labels import Label, derive_labels
from simulators.model import Plant, fill_sensor
from simulators.spec import SCHEDULES, EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

__all__ = [
    "Scenario",
    "ScenarioError",
    "generate_scenario",
    "load_mode_scenario",
    "load_scenario",
    "scenario_from_dict",
    "scenario_to_toml",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    """Plants, sensors and events. ``start_ms`` (epoch ms) may be left to the run."""

    name: str
    enterprises: tuple[EnterpriseSpec, ...]
    sensors: tuple[SensorSpec, ...]
    events: tuple[EventSpec, ...] = ()
    duration_s: float = 3600.0
    seed: int = 0
    start_ms: int | None = None
    tz_offset_h: float = 8.0
    description: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # -- variants --------------------------------------------------------------------
    def with_start(self, start_ms: int) -> Scenario:
        return dataclasses.replace(self, start_ms=int(start_ms), _cache={})

    def with_seed(self, seed: int) -> Scenario:
        return dataclasses.replace(self, seed=int(seed), _cache={})

    def with_duration(self, duration_s: float) -> Scenario:
        return dataclasses.replace(self, duration_s=float(duration_s), _cache={})

    # -- compiled views --------------------------------------------------------------
    def _start(self, start_ms: int | None) -> int:
        s = start_ms if start_ms is not None else self.start_ms
        if s is None:
            raise ScenarioError(f"scenario {self.name}", "no start time: pass start_ms "
                                "(publish.run reports the one it used in PublishStats.start_ms)")
        return int(s)

    def plant(self, start_ms: int | None = None) -> Plant:
        """Compile for ``start_ms`` (default: the scenario's own start)."""
        start = self._start(start_ms)
        key = f"plant:{start}"
        if key not in self._cache:
            self._cache[key] = Plant(self.enterprises, self.sensors, self.events, start_ms=start,
                                     duration_s=self.duration_s, seed=self.seed, tz_offset_h=self.tz_offset_h)
        plant: Plant = self._cache[key]
        return plant

    def labels(self, start_ms: int | None = None) -> list[Label]:
        """Ground-truth labels of every incident and fault (see :mod:`simulators.labels`)."""
        return derive_labels(self.plant(start_ms))

    def registry(self) -> dict[str, list[dict[str, Any]]]:
        """Registry content for ``plantwatch.registry.Registry.load`` (params as simulated)."""
        ents = {e.id: e for e in self.enterprises}
        out_e = [{"id": e.id, "name": e.name or e.id, "region": e.region,
                  "production_status": e.production_status, "capacity_kw": e.capacity_kw}
                 for e in self.enterprises]
        out_s = []
        for i, s in enumerate(self.sensors):
            fs, _ = fill_sensor(s, ents[s.enterprise_id], f"sensor[{i}]")
            row: dict[str, Any] = {"enterprise_id": fs.enterprise_id, "id": fs.id, "kind": fs.kind,
                                   "device_id": fs.device_id, "area": fs.area, "interval_s": fs.interval_s,
                                   "params": dict(fs.params)}
            if fs.thresholds:
                row["thresholds"] = dict(fs.thresholds)
            out_s.append(row)
        return {"enterprise": out_e, "sensor": out_s}

    @property
    def devices(self) -> list[tuple[str, str]]:
        """(enterprise_id, device_id) of every gateway, in first-seen order."""
        return list(dict.fromkeys((s.enterprise_id, s.device_id) for s in self.sensors))


# -- TOML ------------------------------------------------------------------------------
def _req(raw: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    v = raw.get(key)
    if v is None or not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise ScenarioError(f"{where}.{key}", f"required, expected {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _num(raw: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    v = raw.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise ScenarioError(f"{where}.{key}", f"expected a number, got {v!r}")
    return float(v)


def _start_ms(raw: Mapping[str, Any], where: str) -> int | None:
    if "start_ms" in raw:
        return int(_num(raw, "start_ms", where))
    v = raw.get("start")
    if v is None:
        return None
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(f"{where}.start", f"expected RFC 3339 time, got {v!r}") from None
    else:
        raise ScenarioError(f"{where}.start", f"expected RFC 3339 time, got {v!r}")
    if dt.tzinfo is None:
        raise ScenarioError(f"{where}.start", "needs a UTC offset (e.g. 2026-11-23T08:00:00+08:00)")
    return round(dt.timestamp() * 1000)


def _event(raw: Mapping[str, Any], category: str, where: str) -> EventSpec:
    sensors = raw.get("sensors", [])
    if isinstance(sensors, str):
        sensors = [sensors]
    if not isinstance(sensors, list) or not all(isinstance(x, str) for x in sensors):
        raise ScenarioError(f"{where}.sensors", "expected a list of sensor ids")
    intensity = raw.get("intensity")
    if intensity is not None:
        intensity = _num(raw, "intensity", where)
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise ScenarioError(f"{where}.params", "expected a table")
    return EventSpec(category="incident" if category == "incident" else "fault",
                     kind=_req(raw, "kind", str, where), enterprise_id=_req(raw, "enterprise_id", str, where),
                     start_s=_num(raw, "start_s", where), duration_s=_num(raw, "duration_s", where),
                     sensors=tuple(sensors), device_id=str(raw.get("device_id", "")), intensity=intensity,
                     params=dict(params))


_KEYS: dict[str, set[str]] = {
    "scenario": {"name", "description", "seed", "duration_s", "start", "start_ms", "tz_offset_h"},
    "enterprise": {"id", "name", "region", "production_status", "capacity_kw", "schedule"},
    "sensor": {"enterprise_id", "id", "kind", "device_id", "area", "interval_s", "params", "thresholds", "model"},
    "incident": {"kind", "enterprise_id", "sensors", "device_id", "start_s", "duration_s", "intensity", "params"},
}
_KEYS["fault"] = _KEYS["incident"]


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    """Unknown tables and keys are errors (a typo must not silently change a scenario)."""
    for top, v in data.items():
        if top not in _KEYS:
            raise ScenarioError(f"{where}: {top}", f"unknown table; expected {', '.join(_KEYS)}")
        rows = [v] if top == "scenario" else v
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ScenarioError(f"{where}: {top}", "expected " + ("a table" if top == "scenario" else
                                                                   f"an array of tables [[{top}]]"))
        for i, row in enumerate(rows):
            bad = sorted(set(row) - _KEYS[top])
            if bad:
                at = top if top == "scenario" else f"{top}[{i}]"
                raise ScenarioError(f"{where}: {at}.{bad[0]}", f"unknown key; expected {', '.join(sorted(_KEYS[top]))}")


def scenario_from_dict(data: Mapping[str, Any], where: str = "scenario") -> Scenario:
    """Build a scenario from parsed TOML (same layout as the file)."""
    _check_keys(data, where)
    head = data.get("scenario", {})
    ents = []
    for i, raw in enumerate(data.get("enterprise", [])):
        w = f"{where}: enterprise[{i}]"
        sched = str(raw.get("schedule", "shifts"))
        if sched not in SCHEDULES:
            raise ScenarioError(f"{w}.schedule", f"expected one of {', '.join(SCHEDULES)}")
        status = str(raw.get("production_status", "normal"))
        if status not in ("normal", "suspended", "limited"):
            raise ScenarioError(f"{w}.production_status", "expected normal, suspended or limited")
        ents.append(EnterpriseSpec(id=_req(raw, "id", str, w), name=str(raw.get("name", "")),
                                   region=str(raw.get("region", "")), production_status=status,
                                   capacity_kw=_num(raw, "capacity_kw", w, 1000.0), schedule=sched))
    sensors = []
    for i, raw in enumerate(data.get("sensor", [])):
        w = f"{where}: sensor[{i}]"
        kind = _req(raw, "kind", str, w)
        if kind not in KINDS:
            raise ScenarioError(f"{w}.kind", f"unknown sensor kind {kind!r}; known: {', '.join(KINDS)}")
        sensors.append(SensorSpec(enterprise_id=_req(raw, "enterprise_id", str, w), id=_req(raw, "id", str, w),
                                  kind=kind, device_id=_req(raw, "device_id", str, w), area=str(raw.get("area", "")),
                                  interval_s=_num(raw, "interval_s", w, 0.0), params=dict(raw.get("params", {})),
                                  thresholds=dict(raw.get("thresholds", {})), model=dict(raw.get("model", {}))))
    events = [_event(raw, "incident", f"{where}: incident[{i}]") for i, raw in enumerate(data.get("incident", []))]
    events += [_event(raw, "fault", f"{where}: fault[{i}]") for i, raw in enumerate(data.get("fault", []))]
    sc = Scenario(name=str(head.get("name", Path(where).stem)), enterprises=tuple(ents), sensors=tuple(sensors),
                  events=tuple(events), duration_s=_num(head, "duration_s", f"{where}: scenario", 3600.0),
                  seed=int(_num(head, "seed", f"{where}: scenario", 0)), start_ms=_start_ms(head, f"{where}: scenario"),
                  tz_offset_h=_num(head, "tz_offset_h", f"{where}: scenario", 8.0),
                  description=str(head.get("description", "")))
    try:  # validate now, naming the file
        sc.plant(sc.start_ms if sc.start_ms is not None else 0)
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: {exc.where}", exc.message) from None
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file; a bare name (``gas``) means a bundled scenario."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and (BUNDLED / f"{p.name}.toml").exists():
        p = BUNDLED / f"{p.name}.toml"
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(str(p), f"cannot read scenario: {exc}") from None
    return scenario_from_dict(data, str(p))


BUNDLED = Path(__file__).parent / "scenarios"


def bundled_scenarios() -> dict[str, Path]:
    """Bundled scenario files by name (``gas``, ``dust``, ``power``, ``demo`` ...)."""
    return {p.stem: p for p in sorted(BUNDLED.glob("*.toml"))}


# -- generated scenarios ---------------------------------------------------------------
def _gas_plant(eid: str) -> list[SensorSpec]:
    S = SensorSpec
    return [
        S(eid, "GT-101", "gas.combustible", "gw-1", "tank-farm"),
        S(eid, "GT-102", "gas.combustible", "gw-1", "tank-farm"),
        S(eid, "GT-103", "gas.combustible", "gw-1", "tank-farm"),
        S(eid, "GT-201", "gas.combustible", "gw-2", "reactor"),
        S(eid, "TT-201", "gas.toxic", "gw-2", "reactor", params={"gas": "H2S", "oel_ppm": 7.0}),
        S(eid, "TT-202", "gas.toxic", "gw-2", "reactor", params={"gas": "H2S", "oel_ppm": 7.0}),
        S(eid, "TT-301", "gas.toxic", "gw-2", "compressor", params={"gas": "NH3", "oel_ppm": 28.0}),
        S(eid, "OT-401", "gas.oxygen", "gw-2", "confined-space"),
        S(eid, "HT-501", "gas.hydrogen", "gw-2", "battery-room"),
    ]


def _dust_plant(eid: str) -> list[SensorSpec]:
    S = SensorSpec
    return [
        S(eid, "DC1-TH", "dust.hopper_temperature", "gw-1", "DC-1"),
        S(eid, "DC1-TI", "dust.inlet_temperature", "gw-1", "DC-1"),
        S(eid, "DC1-DP", "dust.pressure_diff", "gw-1", "DC-1", params={"baseline": 1200.0}),
        S(eid, "DC1-AV", "dust.air_velocity", "gw-1", "DC-1"),
        S(eid, "DC1-SP", "dust.spark", "gw-1", "DC-1"),
        S(eid, "DC1-RV", "dust.rotary_valve", "gw-1", "DC-1"),
        S(eid, "DC1-IV", "dust.isolation_valve", "gw-1", "DC-1"),
        S(eid, "WC1-WL", "dust.water_level", "gw-2", "WC-1", params={"low_limit": 0.8}),
        S(eid, "WC1-WF", "dust.water_flow", "gw-2", "WC-1", params={"low_limit": 20.0}),
        S(eid, "WC1-H2", "gas.hydrogen", "gw-2", "WC-1"),
    ]


def _power_plant(eid: str) -> list[SensorSpec]:
    S = SensorSpec
    return [
        S(eid, "PM-1", "power.active_power", "meter-1", "main"),
        S(eid, "FD-1", "power.feeder_current", "meter-1", "workshop", params={"critical": False, "share": 0.4}),
        S(eid, "FD-2", "power.feeder_current", "meter-1", "workshop", params={"critical": False, "share": 0.3}),
        S(eid, "FD-VENT", "power.feeder_current", "meter-1", "ventilation", params={"critical": True}),
        S(eid, "FD-COLD", "power.feeder_current", "meter-1", "refrigeration", params={"critical": True}),
        S(eid, "RC-1", "power.residual_current", "meter-1", "workshop"),
    ]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 2)


def _incident(rng: np.random.Generator, domain: str, eid: str, sensors: Sequence[SensorSpec],
              ent: EnterpriseSpec) -> tuple[str, tuple[str, ...], str, float | None, tuple[float, float]]:
    """(kind, sensors, device, intensity, (min, max duration s)) for one random incident."""
    by = {s.id: s for s in sensors}
    if domain == "gas":
        choice = int(rng.integers(4))
        if choice == 0:
            src = str(rng.choice(["GT-101", "GT-102", "GT-103"]))
            return "gas_leak", (src,), "", _u(rng, 15, 95), (120, 900)
        if choice == 1:
            src = str(rng.choice(["TT-201", "TT-202"]))
            return "gas_leak", (src,), "", _u(rng, 0.7, 4.0) * float(by[src].params["oel_ppm"]), (120, 900)
        if choice == 2:
            return "oxygen_deficiency", ("OT-401",), "", _u(rng, 14.5, 19.0), (120, 900)
        return "gas_leak", ("HT-501",), "", _u(rng, 15, 70), (120, 900)
    if domain == "dust":
        kinds = ["filter_clogging", "bag_rupture", "smouldering", "spark_shower", "airflow_loss", "water_loss",
                 "valve_fault", "hydrogen_buildup"]
        k = kinds[int(rng.integers(len(kinds)))]
        table: dict[str, tuple[tuple[str, ...], float | None, tuple[float, float]]] = {
            "filter_clogging": (("DC1-DP",), _u(rng, 1.15, 1.6), (900, 2400)),
            "bag_rupture": (("DC1-DP",), _u(rng, 0.02, 0.3), (300, 1200)),
            "smouldering": (("DC1-TH",), _u(rng, 55, 95), (900, 2400)),
            "spark_shower": (("DC1-SP",), float(rng.integers(1, 6)), (60, 300)),
            "airflow_loss": (("DC1-AV",), _u(rng, 0.2, 0.6), (300, 900)),
            "water_loss": (("WC1-WL", "WC1-WF"), _u(rng, 0.2, 0.6), (300, 900)),
            "valve_fault": ((str(rng.choice(["DC1-RV", "DC1-IV"])),), None, (120, 1200)),
            "hydrogen_buildup": (("WC1-H2",), _u(rng, 15, 70), (300, 900)),
        }
        sens, inten, dur = table[k]
        return k, sens, "", inten, dur
    if ent.production_status == "suspended":
        k = str(rng.choice(["suspension_violation", "night_production", "residual_current_rise"]))
    else:
        k = str(rng.choice(["overload", "critical_feeder_loss", "residual_current_rise", "night_production"]))
    ptable: dict[str, tuple[tuple[str, ...], float | None, tuple[float, float]]] = {
        "suspension_violation": ((), _u(rng, 0.4, 1.0), (3600, 4 * 3600)),
        "night_production": ((), _u(rng, 0.5, 1.0), (3600, 4 * 3600)),
        "overload": ((), _u(rng, 1.12, 1.45), (1800, 2 * 3600)),
        "critical_feeder_loss": ((str(rng.choice(["FD-VENT", "FD-COLD"])),), None, (300, 1800)),
        "residual_current_rise": (("RC-1",), _u(rng, 150, 800), (1800, 3600)),
    }
    sens, inten, dur = ptable[k]
    return k, sens, "", inten, dur


FAULT_KINDS = ("dropout", "gateway_death", "stuck", "spike", "drift", "out_of_range")


def generate_scenario(seed: int, *, plants: int = 3, duration_s: float = 86400.0,
                      incidents_per_plant: int = 3, faults_per_plant: int = 2, start_ms: int | None = None,
                      domains: Sequence[str] = ("gas", "dust", "power"), suspended_share: float = 0.3) -> Scenario:
    """A random scenario from ``seed``: plants cycling through ``domains``, each with
    incidents and faults placed in disjoint time slots (so labels do not overlap)."""
    rng = np.random.default_rng([seed, 7])
    templates = {"gas": _gas_plant, "dust": _dust_plant, "power": _power_plant}
    ents: list[EnterpriseSpec] = []
    sensors: list[SensorSpec] = []
    events: list[EventSpec] = []
    for p in range(plants):
        domain = domains[p % len(domains)]
        eid = f"{domain}-{p + 1:03d}"
        status = "suspended" if domain == "power" and rng.random() < suspended_share else "normal"
        ent = EnterpriseSpec(eid, name=f"{domain} plant {p + 1}", region="sim", production_status=status,
                             capacity_kw=float(rng.choice([500.0, 1000.0, 2000.0, 5000.0])),
                             schedule=str(rng.choice(["shifts", "day", "continuous"])))
        ents.append(ent)
        plant_sensors = templates[domain](eid)
        sensors += plant_sensors
        n_ev = incidents_per_plant + faults_per_plant
        if n_ev == 0:
            continue
        slot = duration_s / n_ev
        kinds: list[str] = ["incident"] * incidents_per_plant + ["fault"] * faults_per_plant
        rng.shuffle(kinds)
        for j, cat in enumerate(kinds):
            if cat == "incident":
                kind, sens, dev, inten, (dmin, dmax) = _incident(rng, domain, eid, plant_sensors, ent)
            else:
                kind = str(rng.choice(FAULT_KINDS))
                pick = plant_sensors[int(rng.integers(len(plant_sensors)))]
                sens, dev, inten = (pick.id,), "", None
                dmin, dmax = (60.0, 300.0) if kind == "out_of_range" else (300.0, 3600.0)
                if kind == "gateway_death":
                    sens, dev = (), pick.device_id
                if kind == "drift" and pick.kind in ("dust.spark", "dust.rotary_valve", "dust.isolation_valve"):
                    kind = "stuck"
            dur = min(_u(rng, dmin, dmax), 0.6 * slot)
            start = j * slot + _u(rng, 0.05 * slot, max(0.05 * slot, slot - dur - 0.1 * slot - 600.0))
            events.append(EventSpec(cat, kind, eid, round(start, 1), round(dur, 1), sens, dev, inten))  # type: ignore[arg-type]
    events.sort(key=lambda e: e.category != "incident")  # the file format lists incidents first
    return Scenario(name=f"random-{seed}", enterprises=tuple(ents), sensors=tuple(sensors), events=tuple(events),
                    duration_s=duration_s, seed=seed, start_ms=start_ms,
                    description=f"generated by simulators.scenario.generate_scenario(seed={seed})")


def load_mode_scenario(plants: int, sensors_per_plant: int, rate: float, *, seed: int = 0,
                       duration_s: float = 3600.0, start_ms: int | None = None) -> Scenario:
    """Incident-free load: ``plants`` gateways × ``sensors_per_plant`` sensors, each reporting
    ``rate`` readings per second (domains and kinds cycle)."""
    if plants <= 0 or sensors_per_plant <= 0 or rate <= 0:
        raise ScenarioError("load", "plants, sensors-per-plant and rate must be positive")
    interval_ms = max(1, round(1000.0 / rate))
    kinds = {
        "gas": ["gas.combustible", "gas.toxic", "gas.oxygen", "gas.hydrogen"],
        "dust": ["dust.hopper_temperature", "dust.inlet_temperature", "dust.pressure_diff", "dust.air_velocity",
                 "dust.spark", "dust.rotary_valve", "dust.isolation_valve", "dust.water_level", "dust.water_flow"],
        "power": ["power.active_power", "power.feeder_current", "power.residual_current"],
    }
    domains = list(kinds)
    ents, sensors = [], []
    for p in range(plants):
        domain = domains[p % 3]
        eid = f"load-{p + 1:04d}"
        ents.append(EnterpriseSpec(eid, name=f"load {domain} {p + 1}", schedule="continuous"))
        for j in range(sensors_per_plant):
            kind = kinds[domain][j % len(kinds[domain])]
            sensors.append(SensorSpec(eid, f"S{j + 1:05d}", kind, "gw-1", f"area-{j // 50 + 1}",
                                      interval_s=interval_ms / 1000.0))
    return Scenario(name=f"load-{plants}x{sensors_per_plant}@{rate}", enterprises=tuple(ents),
                    sensors=tuple(sensors), duration_s=duration_s, seed=seed, start_ms=start_ms)


def scenario_to_toml(sc: Scenario) -> str:
    """Render a scenario in the file format :func:`load_scenario` reads."""
    from simulators import tomlw

    head: dict[str, Any] = {"name": sc.name, "description": sc.description, "seed": sc.seed,
                            "duration_s": sc.duration_s, "tz_offset_h": sc.tz_offset_h}
    if sc.start_ms is not None:
        head["start_ms"] = sc.start_ms
    lines = ["[scenario]", *(f"{k} = {tomlw.value(v)}" for k, v in head.items()), ""]
    lines += tomlw.tables("enterprise", [dataclasses.asdict(e) for e in sc.enterprises])
    lines += tomlw.tables("sensor", [{
        "enterprise_id": s.enterprise_id, "device_id": s.device_id, "id": s.id, "kind": s.kind, "area": s.area,
        "interval_s": s.interval_s or None, "params": dict(s.params), "thresholds": dict(s.thresholds),
        "model": dict(s.model)} for s in sc.sensors])
    for cat in ("incident", "fault"):
        lines += tomlw.tables(cat, [{
            "kind": e.kind, "enterprise_id": e.enterprise_id, "sensors": list(e.sensors) or None,
            "device_id": e.device_id or None, "start_s": e.start_s, "duration_s": e.duration_s,
            "intensity": e.intensity, "params": dict(e.params)} for e in sc.events if e.category == cat])
    return "\n".join(lines)
