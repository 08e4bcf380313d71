"""Registry: loading from TOML, validation messages naming file and key, stable rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plantwatch.domain import KINDS, ProductionStatus
from plantwatch.registry import Enterprise, OutOfService, Registry, RegistryError

GOOD = """
[[enterprise]]
id = "E1"
capacity_kw = 500
production_status = "suspended"

[[sensor]]
enterprise_id = "E1"
id = "GT-101"
kind = "gas.combustible"
device_id = "GW1"
area = "tanks"
thresholds = { yellow = 20.0 }

[[sensor]]
enterprise_id = "E1"
id = "HS-1"
kind = "gas.toxic"
params = { oel_ppm = 7.0 }
interval_s = 2
"""


def test_load_assigns_rows_units_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text(GOOD)
    reg = Registry.from_toml(f)
    assert [s.row for s in reg.sensors] == [0, 1]
    gt = reg.sensor("E1", "GT-101")
    assert gt is not None
    assert gt.unit == "%LEL"
    assert gt.interval_s == KINDS["gas.combustible"].interval_s
    assert gt.thresholds == {"yellow": 20.0}
    assert reg.sensors[1].interval_s == 2.0
    assert reg.enterprises["E1"].production_status is ProductionStatus.SUSPENDED
    assert reg.rows_for(["E1", "E1", "E2"], ["HS-1", "nope", "GT-101"]) == [1, -1, -1]


def test_upsert_keeps_row_and_bumps_version() -> None:
    reg = Registry()
    reg.add_enterprise({"id": "E1"})
    a = reg.add_sensor({"enterprise_id": "E1", "id": "A", "kind": "dust.spark"})
    b = reg.add_sensor({"enterprise_id": "E1", "id": "B", "kind": "dust.spark"})
    v = reg.version
    a2 = reg.add_sensor({"enterprise_id": "E1", "id": "A", "kind": "dust.spark", "area": "line 2"})
    assert (a.row, b.row, a2.row) == (0, 1, 0)
    assert reg.sensors[0].area == "line 2"
    assert reg.version > v


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ('[[sensor]]\nenterprise_id = "E1"\nid = "X"\nkind = "gas.unknown"\n', "sensor[0].kind"),
        ('[[sensor]]\nenterprise_id = "E1"\nid = "X"\nkind = "gas.toxic"\nthresholds = { purple = 1 }\n',
         "sensor[0].thresholds.purple"),
        ('[[sensor]]\nenterprise_id = "E1"\nid = "X"\nkind = "gas.toxic"\ninterval_s = -1\n', "sensor[0].interval_s"),
        ('[[sensor]]\nenterprise_id = "E9"\nid = "X"\nkind = "gas.toxic"\n', "sensor[0].enterprise_id"),
        ('[[sensor]]\nenterprise_id = "E1"\nkind = "gas.toxic"\n', "sensor[0].id"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, snippet: str, where: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[[enterprise]]\nid = "E1"\n' + snippet)
    with pytest.raises(RegistryError) as exc:
        Registry.from_toml(f)
    assert str(f) in str(exc.value)
    assert where in str(exc.value)


def test_unreadable_toml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[[enterprise]\nid=")
    with pytest.raises(RegistryError, match=r"broken\.toml"):
        Registry.from_toml(f)


def test_saved_registry_round_trips_with_its_rows(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text(GOOD)
    reg = Registry.from_toml(p)
    reg.add_sensors([{"enterprise_id": "E1", "id": "NEW", "kind": "dust.spark", "params": {"x": [1, 2]}}])
    back = Registry.from_json(reg.to_json())
    assert [(s.key, s.row) for s in back.sensors] == [(s.key, s.row) for s in reg.sensors]
    assert back.sensors[0].thresholds == {"yellow": 20.0}
    assert back.sensors[2].params == {"x": [1, 2]}
    assert back.enterprises["E1"].production_status is ProductionStatus.SUSPENDED
    assert back.enterprises["E1"].capacity_kw == 500.0


def test_from_json_refuses_what_it_did_not_write() -> None:
    with pytest.raises(RegistryError, match="saved registry: not JSON"):
        Registry.from_json(b"{oops")
    with pytest.raises(RegistryError, match="format 1"):
        Registry.from_json(b'{"enterprise": []}')


def test_add_sensors_is_all_or_nothing_and_names_the_item() -> None:
    reg = Registry()
    reg.add_enterprises([{"id": "E1"}])
    good = {"enterprise_id": "E1", "id": "A", "kind": "gas.combustible"}
    with pytest.raises(RegistryError) as err:
        reg.add_sensors([good, {"enterprise_id": "E1", "id": "B", "kind": "gas.unobtainium"}])
    assert err.value.where == "body[1].kind"
    assert len(reg) == 0
    assert reg.version == 1
    with pytest.raises(RegistryError) as err:
        reg.add_sensors([good, {"enterprise_id": "E9", "id": "C", "kind": "gas.combustible"}])
    assert err.value.where == "body[1].enterprise_id"
    with pytest.raises(RegistryError) as err:
        reg.add_sensors([good], check=lambda i, s: (_ for _ in ()).throw(RegistryError(f"body[{i}].params.x", "no")))
    assert err.value.where == "body[0].params.x"
    assert len(reg) == 0
    assert [s.row for s in reg.add_sensors([good, {**good, "id": "B"}])] == [0, 1]


def test_add_enterprises_is_all_or_nothing() -> None:
    reg = Registry()
    with pytest.raises(RegistryError) as err:
        reg.add_enterprises([{"id": "E1"}, {"id": "E2", "production_status": "closed"}])
    assert err.value.where == "body[1].production_status"
    assert reg.enterprises == {}


def test_load_keep_status_keeps_an_existing_enterprises_production_status() -> None:
    reg = Registry()
    reg.add_enterprises([{"id": "E1", "production_status": "suspended", "name": "old"}])
    reg.load({"enterprise": [{"id": "E1", "name": "new"}, {"id": "E2", "production_status": "limited"}]},
             keep_status=True)
    assert reg.enterprises["E1"].production_status is ProductionStatus.SUSPENDED
    assert reg.enterprises["E1"].name == "new"
    assert reg.enterprises["E2"].production_status is ProductionStatus.LIMITED
    reg.load({"enterprise": [{"id": "E1"}]})
    assert str(reg.enterprises["E1"].production_status) == "normal"


def test_rows_in_looks_up_one_enterprises_sensors_and_follows_replace_with() -> None:
    reg = Registry()
    reg.add_enterprises([{"id": "E1"}, {"id": "E2"}])
    reg.add_sensors([{"enterprise_id": "E1", "id": "A", "kind": "dust.spark"},
                     {"enterprise_id": "E2", "id": "A", "kind": "dust.spark"}])
    assert reg.rows_in("E1", ["A", "B", "A"]) == [0, -1, 0]
    assert reg.rows_in("E2", ["A"]) == [1]
    assert reg.rows_in("E9", ["A"]) == [-1]
    other = Registry()
    other.add_enterprises([{"id": "E2"}])
    other.add_sensors([{"enterprise_id": "E2", "id": "A", "kind": "dust.spark"}])
    reg.replace_with(other)
    assert reg.rows_in("E2", ["A"]) == [0]
    assert reg.rows_in("E1", ["A"]) == [-1]


def test_saving_again_encodes_what_changed_since_and_nothing_stale(tmp_path: Path) -> None:
    """to_json reuses each sensor's encoding until the sensor is replaced (re-registered, a
    hold set or ended, even the very object handed in again after a change): every save
    equals a fresh encoding of the whole registry."""
    from dataclasses import asdict

    def fresh(reg: Registry) -> dict[str, Any]:
        return {"format": 1,
                "enterprise": [{**asdict(e), "production_status": str(e.production_status)}
                               for e in reg.enterprises.values()],
                "sensor": [{k: v for k, v in asdict(s).items() if k != "row"} for s in reg.sensors]}

    p = tmp_path / "r.toml"
    p.write_text(GOOD)
    reg = Registry.from_toml(p)
    assert json.loads(reg.to_json()) == fresh(reg)
    reg.add_sensors([{"enterprise_id": "E1", "id": "NEW", "kind": "dust.spark", "params": {"x": [1, 2]}}])
    assert json.loads(reg.to_json()) == fresh(reg)
    first = reg.sensors[0]
    reg.set_out_of_service(first.enterprise_id, first.id, OutOfService(1, None, "Li", "decommissioned"))
    reg.add_sensors([{"enterprise_id": "E1", "id": "NEW", "kind": "dust.spark", "params": {"x": [3]}}])
    assert json.loads(reg.to_json()) == fresh(reg)
    same = reg.sensors[1]
    same.thresholds["yellow"] = 33.0  # changed in place, then handed in again
    reg.upsert_sensor(same)
    saved = json.loads(reg.to_json())
    assert saved == fresh(reg)
    assert saved["sensor"][1]["thresholds"]["yellow"] == 33.0
    assert saved["sensor"][0]["out_of_service"]["reason"] == "decommissioned"
    reg.upsert_enterprise(Enterprise(id="E9", name="new"))
    assert json.loads(reg.to_json()) == fresh(reg)


def test_an_enterprises_sensors_come_from_the_index_in_row_order(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text(GOOD)
    reg = Registry.from_toml(p)
    reg.upsert_enterprise(Enterprise(id="E2"))
    reg.add_sensors([{"enterprise_id": "E2", "id": "X", "kind": "dust.spark"},
                     {"enterprise_id": "E1", "id": "A", "kind": "dust.spark"}])
    assert [s.id for s in reg.sensors_of("E1")] == ["GT-101", "HS-1", "A"]
    assert [s.id for s in reg.sensors_of("E2")] == ["X"]
    assert reg.sensors_of("E404") == []
    assert (reg.count_of("E1"), reg.count_of("E2"), reg.count_of("E404")) == (3, 1, 0)
