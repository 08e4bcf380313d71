"""Plant simulators standing in for gateway hardware (gas, dust, power) with labelled incidents.

Public surface::

    from simulators import load_scenario, generate_scenario, demo_scenario, run, Label
    sc = load_scenario("gas")                 # bundled name or a TOML path
    stats = await run(sc, "mqtt://127.0.0.1:1883", speed=10)
    labels = sc.labels(stats.start_ms)

Modules follow the data flow: ``spec``/``scenario`` (declarations) → ``gas``/``dust``/
``power``/``faults`` (one module per domain) → ``model`` (numpy blocks) → ``labels``
(ground truth) → ``stream`` (MQTT payloads, CSV) → ``publish`` (MQTT, virtual clock).
"""

from simulators.demo import demo_scenario
from simulators.labels import Label, read_labels, write_labels
from simulators.publish import PublishStats, replay, run
from simulators.scenario import (
    Scenario,
    generate_scenario,
    load_mode_scenario,
    load_scenario,
    scenario_to_toml,
)
from simulators.spec import EnterpriseSpec, EventSpec, ScenarioError, SensorSpec

__all__ = [
    "EnterpriseSpec",
    "EventSpec",
    "Label",
    "PublishStats",
    "Scenario",
    "ScenarioError",
    "SensorSpec",
    "demo_scenario",
    "generate_scenario",
    "load_mode_scenario",
    "load_scenario",
    "read_labels",
    "replay",
    "run",
    "scenario_to_toml",
    "write_labels",
]
