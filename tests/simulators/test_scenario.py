"""Scenario files, generator, registry export and byte-identical streams."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from plantwatch.registry import Registry
from simulators.demo import demo_scenario
from simulators.scenario import (
    Scenario,
    bundled_scenarios,
    generate_scenario,
    load_mode_scenario,
    load_scenario,
    scenario_from_dict,
    scenario_to_toml,
)
from simulators.spec import ScenarioError
from simulators.stream import plant_messages
from simulators.tomlw import registry_toml
from tests.simulators.helpers import START_MS


def _digest(sc: Scenario, *, batch: bool = True) -> str:
    h = hashlib.sha256()
    for m in plant_messages(sc.plant(), batch=batch):
        h.update(m.topic.encode() + b"\0" + m.payload + b"\n")
    return h.hexdigest()


def test_bundled_scenarios_one_per_domain_and_demo() -> None:
    assert {"gas", "dust", "power", "demo"} <= set(bundled_scenarios())
    domains = {name: {s.kind.split(".")[0] for s in load_scenario(name).sensors} for name in ("gas", "dust", "power")}
    assert domains["gas"] == {"gas"}
    assert "dust" in domains["dust"]
    assert domains["power"] == {"power"}


def test_same_scenario_and_seed_give_a_byte_identical_stream() -> None:
    a = generate_scenario(42, plants=3, duration_s=3 * 3600.0, start_ms=START_MS)
    b = generate_scenario(42, plants=3, duration_s=3 * 3600.0, start_ms=START_MS)
    assert a == b
    assert _digest(a) == _digest(b)
    assert _digest(a, batch=False) == _digest(b, batch=False)
    assert _digest(a) != _digest(a.with_seed(43))
    gas = load_scenario("gas").with_start(START_MS)
    assert _digest(gas) == _digest(load_scenario("gas").with_start(START_MS))


def test_stream_does_not_depend_on_how_it_is_consumed() -> None:
    sc = load_scenario("dust").with_start(START_MS).with_duration(1800.0)
    first = [m.payload for m in plant_messages(sc.plant())]
    again = [m.payload for m in plant_messages(sc.with_start(START_MS).plant())]
    assert first == again


def test_scenario_round_trips_through_toml() -> None:
    g = generate_scenario(9, start_ms=START_MS)
    back = scenario_from_dict(tomllib.loads(scenario_to_toml(g)))
    assert back.labels() == g.labels()
    assert _digest(back.with_duration(3600.0)) == _digest(g.with_duration(3600.0))
    demo = demo_scenario(START_MS, duration_s=1200.0)
    assert load_scenario("demo").labels(START_MS) == demo.labels()


def test_registry_export_loads_and_matches_what_is_simulated(tmp_path: Path) -> None:
    for name in ("gas", "dust", "power", "demo"):
        sc = load_scenario(name)
        reg = Registry()
        reg.load(sc.registry(), where=name)
        assert len(reg) == len(sc.sensors)
        plant = sc.plant(START_MS)
        for s in plant.sensors:
            rs = reg.sensor(s.enterprise_id, s.id)
            assert rs is not None
            assert (rs.kind, rs.device_id, rs.area, rs.interval_s) == (s.kind, s.device_id, s.area, s.interval_s)
            assert rs.params == dict(s.params)
        path = tmp_path / f"{name}.toml"
        path.write_text(registry_toml(sc.registry()))
        assert len(Registry.from_toml(path)) == len(sc.sensors)
    reg = Registry()
    reg.load(load_scenario("gas").registry())
    tox = reg.sensor("chem-a", "TT-203")
    assert tox is not None
    assert tox.params == {"gas": "NH3", "oel_ppm": 28.0}
    reg.load(load_scenario("power").registry())
    vent = reg.sensor("fab-a", "FD-VENT")
    meter = reg.sensor("fab-a", "PM-1")
    assert vent is not None
    assert meter is not None
    assert vent.params["critical"] is True
    assert meter.params["capacity"] == 2000.0
    assert meter.params["baseline"] == 200.0
    assert reg.enterprises["susp-b"].production_status == "suspended"


@pytest.mark.parametrize(("patch", "where"), [
    ({"sensor": [{"enterprise_id": "e", "id": "s", "kind": "gas.nope", "device_id": "g"}]}, "sensor[0].kind"),
    ({"sensor": [{"enterprise_id": "e", "id": "s", "kind": "gas.oxygen"}]}, "sensor[0].device_id"),
    ({"incident": [{"kind": "gas_leak", "enterprise_id": "e", "sensors": ["nope"], "start_s": 0,
                    "duration_s": 10}]}, "incident[0]"),
    ({"incident": [{"kind": "meteor", "enterprise_id": "e", "sensors": ["s"], "start_s": 0,
                    "duration_s": 10}]}, "incident[0] (meteor).kind"),
    ({"fault": [{"kind": "stuck", "enterprise_id": "e", "sensors": ["s"], "start_s": 0}]}, "fault[0].duration_s"),
    ({"incident": [{"kind": "gas_leak", "enterprise_id": "e", "sensors": ["s"], "start_s": 0,
                    "duration_s": 10}]}, "needs one of"),
])
def test_invalid_scenarios_name_file_and_key(tmp_path: Path, patch: dict[str, object], where: str) -> None:
    base: dict[str, object] = {
        "scenario": {"name": "x"},
        "enterprise": [{"id": "e"}],
        "sensor": [{"enterprise_id": "e", "id": "s", "kind": "gas.oxygen", "device_id": "g"}],
    }
    base.update(patch)
    from simulators.tomlw import tables, value

    lines = ["[scenario]", *(f"{k} = {value(v)}" for k, v in base.pop("scenario").items()), ""]  # type: ignore[attr-defined]
    for k, rows in base.items():
        lines += tables(k, rows)  # type: ignore[arg-type]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value)
    assert where in str(err.value)


def test_load_mode_scenario_shape_and_rate() -> None:
    sc = load_mode_scenario(4, 25, 2.0, duration_s=60.0, start_ms=START_MS)
    assert len(sc.enterprises) == 4
    assert len(sc.sensors) == 100
    assert not sc.events
    msgs = list(plant_messages(sc.plant()))
    readings = sum(m.readings for m in msgs)
    assert readings == 100 * 2 * 60
    assert sum(m.kind == "data" for m in msgs) == 4 * 2 * 60  # one batch per gateway and tick


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[scenario]\nname = "x"\n[[enterprise]]\nid = "e"\n[[sensor]]\nenterprise_id = "e"\nid = "s"\n'
                    'kind = "gas.oxygen"\ndevice_id = "g"\n[[fault]]\nkind = "stuck"\nenterprise_id = "e"\n'
                    'sensors = ["s"]\nstart_s = 0\nduration_s = 5\nintensty = 3\n')
    with pytest.raises(ScenarioError, match=r"typo.toml: fault\[0\].intensty: unknown key"):
        load_scenario(path)


def test_stream_memory_is_bounded_by_a_block_not_the_duration() -> None:
    import tracemalloc

    def peak(duration_s: float) -> int:
        sc = load_mode_scenario(2, 200, 1.0, duration_s=duration_s, start_ms=START_MS)
        plant = sc.plant()
        tracemalloc.start()
        n = sum(m.readings for m in plant_messages(plant))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert n == 400 * int(duration_s)
        return top

    short, long = peak(60.0), peak(600.0)
    assert long < 1.5 * short + 256 * 1024  # ten times the stream, about the same memory
