"""The test helper: scoring alarms against labels, and a bundled scenario per domain driven
through ``plantwatch serve`` on a real broker (the yardstick the labels exist for)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from plantwatch.domain import Level
from simulators.labels import Label
from simulators.publish import run
from simulators.scenario import Scenario, load_scenario
from simulators.spec import EnterpriseSpec, EventSpec, SensorSpec
from simulators.testing import fetch_alarms, run_scenario, score
from simulators.tomlw import registry_toml
from tests.e2e.service import plantwatch_serve, wait_for
from tests.servers import Broker


def _label(lid: str, level: Level, sensors: tuple[str, ...] = ("S1",)) -> Label:
    return Label(lid, "incident", "gas_leak", "e", "gw", sensors, 10_000, 20_000, 30_000, level)


def _alarm(aid: int, sensor: str, events: list[tuple[int, str]], ent: str = "e") -> dict[str, Any]:
    return {"id": aid, "enterprise_id": ent, "sensor_id": sensor, "level": events[-1][1], "raised_at": events[0][0],
            "events": [{"ts_ms": t, "level": lv} for t, lv in events]}


def test_score_matches_episodes_by_sensor_level_and_time() -> None:
    labels = [_label("a", Level.ORANGE), _label("b", Level.YELLOW, ("S2",)), _label("c", Level.NONE, ("S3",))]
    alarms = [
        _alarm(1, "S1", [(11_000, "yellow"), (12_000, "orange"), (40_000, "none")]),  # detects a
        _alarm(2, "S2", [(500_000, "red")]),  # S2 but far outside b's window: b missed, alarm unexplained
        _alarm(3, "S3", [(15_000, "blue")]),  # explained by c (claims nothing)
        _alarm(4, "S1", [(12_000, "red")], ent="other"),  # another enterprise
    ]
    s = score(alarms, labels, slack_ms=5_000)
    assert s.detected == {"a": [1]}
    assert [lab.id for lab in s.missed] == ["b"]
    assert sorted(a["id"] for a in s.unexplained) == [2, 4]
    assert s.recall == 0.5
    # an alarm whose later episode carries the level counts, even though it was raised long before
    early = _alarm(5, "S2", [(1_000, "blue"), (2_000, "none"), (15_000, "yellow")])
    assert score([early], labels, slack_ms=0).detected == {"b": [5]}
    # without events, raised_at and peak_level stand in
    plain = {"id": 6, "enterprise_id": "e", "sensor_id": "S1", "level": "yellow", "peak_level": "orange",
             "raised_at": 12_000}
    assert score([plain], labels).detected == {"a": [6]}
    assert score([plain], labels, use_time=False).detected == {"a": [6]}


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["gas", "dust", "power"])
async def test_bundled_scenario_drives_the_service_and_every_incident_is_alarmed(
        broker: Broker, tmp_path: Path, name: str) -> None:
    sc = load_scenario(name)
    with plantwatch_serve(tmp_path / "svc", broker.url, registry_toml(sc.registry())) as svc:
        r = await run_scenario(sc, broker.url, svc.base, timeout_s=30.0)
    assert r.stats.readings > 0
    assert r.alarms, "the service raised nothing"
    s = score(r.alarms, r.labels)
    # Offline faults are judged by the service's wall clock, which a fast replay does not advance.
    missed = [(lab.id, lab.kind, lab.min_level.label) for lab in s.missed
              if lab.kind not in ("dropout", "gateway_death")]
    assert not missed, f"{name}: incidents the service did not alarm at their claimed level: {missed}"
    assert {lab.id for lab in r.labels if lab.category == "incident" and lab.min_level > Level.NONE} <= set(s.detected)


@pytest.mark.e2e
async def test_dead_gateway_reaches_the_service_as_an_offline_alarm_in_real_time(
        broker: Broker, tmp_path: Path) -> None:
    """At speed 1 the service's clock and the stream agree, so offline faults can be judged."""
    ent = EnterpriseSpec("e", schedule="continuous")
    sensors = (SensorSpec("e", "S1", "gas.oxygen", "gw-1", interval_s=1.0),
               SensorSpec("e", "S2", "gas.oxygen", "gw-2", interval_s=1.0))
    sc = Scenario("rt", (ent,), sensors, (EventSpec("fault", "gateway_death", "e", 2, 63, device_id="gw-1"),),
                  duration_s=4.0)
    with plantwatch_serve(tmp_path / "svc", broker.url, registry_toml(sc.registry())) as svc:
        stats = await run(sc, broker.url, speed=1.0, start_ms=int(time.time() * 1000), announce_offline=False)
        labels = sc.labels(stats.start_ms)
        assert [lab.min_level for lab in labels] == [Level.BLUE]

        def offline_alarm() -> bool:
            return bool(score(fetch_alarms(svc.base, with_events=True), labels).detected)

        await asyncio.to_thread(wait_for, offline_alarm, 10.0, "the gateway-offline alarm")
    assert stats.wills == 1
