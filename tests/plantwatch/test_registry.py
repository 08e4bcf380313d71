"""Registry: loading from TOML, validation messages naming file and key, stable rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwatch.domain import KINDS, ProductionStatus
from plantwatch.registry import Registry, RegistryError

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
