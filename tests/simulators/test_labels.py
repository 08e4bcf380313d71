"""Ground truth: every label's claimed level is crossed by the noisy stream it labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantwatch.domain import Level
from simulators.demo import demo_scenario
from simulators.labels import read_labels, write_labels
from simulators.scenario import Scenario, generate_scenario, load_scenario
from tests.simulators.helpers import START_MS, crossed_level, series


def _check_labels(sc: Scenario) -> int:
    """Assert every claim on the noisy stream; return how many labels claim a level."""
    plant = sc.plant()
    labels = sc.labels()
    data = series(plant, range(plant.n))
    claimed = 0
    for lab in labels:
        if lab.min_level == Level.NONE:
            continue
        claimed += 1
        if lab.kind in ("dropout", "gateway_death"):
            for sid in lab.sensors:
                c = plant.index.cols[(lab.enterprise_id, sid)]
                t = data[c][0]
                before, after = t[t < lab.start_ms], t[t >= lab.end_ms]
                gap = (after[0] if after.size else lab.end_ms) - (before[-1] if before.size else lab.start_ms)
                assert gap > 3 * plant.sensors[c].interval_s * 1000, (lab, gap)
            continue
        got = crossed_level(plant, lab, data)
        assert got >= lab.min_level, f"{sc.name} {lab.id} {lab.kind} claims {lab.min_level.label}, stream reaches " \
                                     f"{got.label}"
    return claimed


@pytest.mark.parametrize("name", ["gas", "dust", "power", "demo"])
def test_bundled_scenario_labels_are_crossed(name: str) -> None:
    sc = load_scenario(name).with_start(START_MS)
    labels = sc.labels()
    assert labels
    claimed = _check_labels(sc)
    incidents = [lab for lab in labels if lab.category == "incident"]
    assert all(lab.min_level > Level.NONE for lab in incidents), [(x.kind, x.min_level) for x in incidents]
    assert claimed >= len(incidents)


@pytest.mark.parametrize("seed", range(12))
def test_random_scenario_labels_are_crossed(seed: int) -> None:
    sc = generate_scenario(seed, plants=3, duration_s=12 * 3600.0, incidents_per_plant=5, faults_per_plant=3,
                           start_ms=START_MS)
    assert _check_labels(sc) > 0


def test_bundled_scenarios_claim_the_levels_domain_defaults_imply() -> None:
    want = {
        "gas": ["red", "orange", "orange", "yellow", "none", "none", "blue", "yellow"],
        "dust": ["orange", "orange", "orange", "orange", "orange", "orange", "red", "orange", "blue", "none"],
        "power": ["red", "orange", "orange", "blue", "blue", "blue", "none"],
    }
    for name, levels in want.items():
        got = [lab.min_level.label for lab in load_scenario(name).labels(START_MS)]
        assert got == levels, name


def test_demo_raises_graded_alarms_within_the_first_minute() -> None:
    sc = demo_scenario(START_MS, duration_s=3600.0)
    plant = sc.plant()
    c = plant.index.cols[("chem-01", "GT-101")]
    t, v, _ = series(plant, [c])[c]
    rel = (t - START_MS) / 1000.0
    t25, t50 = rel[np.argmax(v >= 25.0)], rel[np.argmax(v >= 50.0)]
    assert 10.0 <= t25 < t50 <= 50.0
    early = [lab for lab in sc.labels() if lab.start_ms < START_MS + 60_000]
    assert {lab.min_level for lab in early} >= {Level.RED, Level.ORANGE}
    # incidents keep coming: one cycle every 20 minutes
    assert len([lab for lab in sc.labels() if lab.kind == "gas_leak"]) == 2 * 3


def test_labels_round_trip_as_json_lines(tmp_path: Path) -> None:
    labels = load_scenario("dust").labels(START_MS)
    p = tmp_path / "labels.jsonl"
    write_labels(labels, p)
    assert len(p.read_text().splitlines()) == len(labels)
    assert read_labels(p) == labels


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**31 - 1), plants=st.integers(min_value=1, max_value=4))
def test_any_seed_gives_labels_its_stream_honours(seed: int, plants: int) -> None:
    sc = generate_scenario(seed, plants=plants, duration_s=4 * 3600.0, incidents_per_plant=4, faults_per_plant=2,
                           start_ms=START_MS)
    _check_labels(sc)
    again = generate_scenario(seed, plants=plants, duration_s=4 * 3600.0, incidents_per_plant=4,
                              faults_per_plant=2, start_ms=START_MS)
    assert again.labels() == sc.labels()
