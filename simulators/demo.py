"""The demo's plant set: a chemical plant, a metal-dust workshop and a power-monitored
factory, with incidents that raise graded alarms within the first minute at speed 1
and then every 20 minutes again (one cycle of eleven incidents and faults).

First cycle at speed 1 (seconds from start): 5 combustible leak at GT-101 (yellow
≈ 15 s, orange ≈ 32 s, red after 60 s at stage 2); 40 spark shower (orange);
90 H2S leak (orange); 200 smouldering hopper (orange); 300 residual current (yellow);
420 ventilation feeder lost while producing (red); 520 wet-collector water loss
(orange); 650 oxygen deficiency (orange); 800 stuck detector (no claim); 850 dust
gateway dies for 2 min (blue: offline); 1000 overload at 120 % of capacity (yellow).
"""

from __future__ import annotations

from simulators.scenario import Scenario
from simulators.spec import EnterpriseSpec, EventSpec, SensorSpec

CYCLE_S = 1200.0


def demo_sensors() -> tuple[tuple[EnterpriseSpec, ...], tuple[SensorSpec, ...]]:
    ents = (
        EnterpriseSpec("chem-01", "Riverside Chemical Co. (demo)", "demo-county", capacity_kw=3000.0,
                       schedule="continuous"),
        EnterpriseSpec("dust-01", "Bright Metal Polishing Workshop (demo)", "demo-county", capacity_kw=800.0,
                       schedule="continuous"),
        EnterpriseSpec("power-01", "Eastgate Cold Storage Factory (demo)", "demo-county", capacity_kw=1500.0,
                       schedule="continuous"),
    )
    S = SensorSpec
    sensors = (
        S("chem-01", "GT-101", "gas.combustible", "gw-1", "tank-farm", 2.0),
        S("chem-01", "GT-102", "gas.combustible", "gw-1", "tank-farm", 2.0),
        S("chem-01", "GT-103", "gas.combustible", "gw-1", "tank-farm", 2.0),
        S("chem-01", "TT-201", "gas.toxic", "gw-2", "reactor", 5.0, params={"gas": "H2S", "oel_ppm": 7.0}),
        S("chem-01", "TT-202", "gas.toxic", "gw-2", "reactor", 5.0, params={"gas": "CO", "oel_ppm": 17.0}),
        S("chem-01", "OT-301", "gas.oxygen", "gw-2", "confined-space", 5.0),
        S("chem-01", "HT-401", "gas.hydrogen", "gw-2", "battery-room", 5.0),
        S("dust-01", "DC1-TH", "dust.hopper_temperature", "gw-1", "DC-1", 5.0, params={"baseline": 35.0}),
        S("dust-01", "DC1-TI", "dust.inlet_temperature", "gw-1", "DC-1", 5.0, params={"baseline": 30.0}),
        S("dust-01", "DC1-DP", "dust.pressure_diff", "gw-1", "DC-1", 5.0, params={"baseline": 1200.0}),
        S("dust-01", "DC1-AV", "dust.air_velocity", "gw-1", "DC-1", 5.0),
        S("dust-01", "DC1-SP", "dust.spark", "gw-1", "DC-1", 5.0),
        S("dust-01", "DC1-RV", "dust.rotary_valve", "gw-1", "DC-1", 5.0),
        S("dust-01", "DC1-IV", "dust.isolation_valve", "gw-1", "DC-1", 5.0),
        S("dust-01", "WC1-WL", "dust.water_level", "gw-2", "WC-1", 5.0, params={"low_limit": 0.8}),
        S("dust-01", "WC1-WF", "dust.water_flow", "gw-2", "WC-1", 5.0, params={"low_limit": 20.0}),
        S("dust-01", "WC1-H2", "gas.hydrogen", "gw-2", "WC-1", 5.0),
        S("power-01", "PM-1", "power.active_power", "meter-1", "main", 5.0),
        S("power-01", "FD-1", "power.feeder_current", "meter-1", "workshop", 5.0,
          params={"critical": False, "share": 0.5}),
        S("power-01", "FD-VENT", "power.feeder_current", "meter-1", "ventilation", 5.0, params={"critical": True}),
        S("power-01", "FD-COLD", "power.feeder_current", "meter-1", "refrigeration", 5.0,
          params={"critical": True}),
        S("power-01", "RC-1", "power.residual_current", "meter-1", "workshop", 5.0),
    )
    return ents, sensors


def _cycle(c: float) -> list[EventSpec]:
    E = EventSpec
    return [
        E("incident", "gas_leak", "chem-01", c + 5, 150, ("GT-101",), intensity=75.0, params={"rise_s": 25.0}),
        E("incident", "spark_shower", "dust-01", c + 40, 60, ("DC1-SP",), intensity=4.0),
        E("incident", "gas_leak", "chem-01", c + 90, 180, ("TT-201",), intensity=20.0),
        E("incident", "smouldering", "dust-01", c + 200, 400, ("DC1-TH",), intensity=78.0, params={"ramp_s": 200.0}),
        E("incident", "residual_current_rise", "power-01", c + 300, 300, ("RC-1",), intensity=420.0,
          params={"ramp_s": 120.0}),
        E("incident", "critical_feeder_loss", "power-01", c + 420, 180, ("FD-VENT",)),
        E("incident", "water_loss", "dust-01", c + 520, 240, ("WC1-WL", "WC1-WF"), intensity=0.3),
        E("incident", "oxygen_deficiency", "chem-01", c + 650, 200, ("OT-301",), intensity=17.5),
        E("incident", "overload", "power-01", c + 1000, 300, intensity=1.2, params={"edge_s": 30.0}),
        E("fault", "stuck", "chem-01", c + 800, 600, ("GT-103",)),
        E("fault", "gateway_death", "dust-01", c + 850, 120, device_id="gw-2"),
    ]


def demo_scenario(start_ms: int, duration_s: float = 24 * 3600.0, seed: int = 2026) -> Scenario:
    """The demo's three enterprises with incident cycles every 20 min from ``start_ms``."""
    ents, sensors = demo_sensors()
    events: list[EventSpec] = []
    c = 0.0
    while c + CYCLE_S <= duration_s:
        events += _cycle(c)
        c += CYCLE_S
    return Scenario(name="demo", enterprises=ents, sensors=sensors, events=tuple(events), duration_s=duration_s,
                    seed=seed, start_ms=int(start_ms),
                    description="chemical plant, dust workshop and power-monitored factory with incident cycles")
