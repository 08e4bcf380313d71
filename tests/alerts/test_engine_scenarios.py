"""The engine alone on the bundled (and two random) simulator scenarios (no MQTT, no service): every labelled
incident and fault is caught at or above its label's level, inside its window, and nothing
above blue is raised outside a label's window.

The scenario's readings are fed tick by tick with ``now_ms`` = the reading time (as a
real-time run would), gateway last wills are passed to ``gateway_status`` and ``tick`` runs
on every simulator tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from alerts.engine import AlarmEngine
from alerts.transitions import Transitions
from plantwatch.domain import Level
from plantwatch.registry import Registry
from simulators.labels import Label
from simulators.scenario import bundled_scenarios, generate_scenario, load_scenario
from simulators.testing import replay_through_engine

MONDAY_0700 = 1_795_388_400_000  # Monday 2026-11-23 07:00 +08:00 (the scenarios' reference start)
SLACK_MS = 120_000  # as simulators.testing.score


@dataclass
class Run:
    engine: AlarmEngine
    registry: Registry
    labels: list[Label]
    # (enterprise, sensor id) -> [(ts_ms, rule, level)]
    episodes: dict[tuple[str, str], list[tuple[int, str, Level]]] = field(default_factory=dict)


def run(name: str) -> Run:
    if name.startswith("random-"):  # simulators' random scenario generator, 3 plants, 6 h
        sc = generate_scenario(int(name.split("-")[1]), plants=3, duration_s=6 * 3600.0)
    else:
        sc = load_scenario(bundled_scenarios()[name])
    episodes: dict[tuple[str, str], list[tuple[int, str, Level]]] = {}
    holder: list[Registry] = []

    def record(eng: AlarmEngine, reg: Registry, tr: Transitions) -> None:
        if not holder:
            holder.append(reg)
        for r, u, lv, t in zip(tr.row, tr.rule, tr.level, tr.ts_ms, strict=True):
            s = reg.sensors[int(r)]
            episodes.setdefault((s.enterprise_id, s.id), []).append(
                (int(t), eng.rule_names[int(u)], Level(int(lv))))

    eng, _ = replay_through_engine(sc, MONDAY_0700, record)
    return Run(eng, holder[0], sc.labels(MONDAY_0700), episodes)


def caught(r: Run, lab: Label) -> Level:
    lo, hi = lab.start_ms - SLACK_MS, lab.settle_ms + SLACK_MS
    best = Level.NONE
    for sid in lab.sensors:
        for t, _, lv in r.episodes.get((lab.enterprise_id, sid), []):
            if lo <= t <= hi and lv > best:
                best = lv
    return best


def unexplained_above_blue(r: Run) -> list[tuple[str, str, int, str, str]]:
    bad = []
    for (ent, sid), eps in r.episodes.items():
        for t, rule, lv in eps:
            if lv <= Level.BLUE:
                continue
            if not any(lab.enterprise_id == ent and sid in lab.sensors
                       and lab.start_ms - SLACK_MS <= t <= lab.settle_ms + SLACK_MS for lab in r.labels):
                bad.append((ent, sid, t, rule, lv.label))
    return bad


# seeds 11, 15, 25 found the area-vote anchor, the per-minute spark count and the temperature
# baseline; seeds 1-45 all pass (checked once, 3 s each); two stay in the suite.
@pytest.fixture(scope="module", params=[*sorted(bundled_scenarios()), "random-11", "random-25"])
def scenario_run(request: pytest.FixtureRequest) -> Run:
    return run(str(request.param))


def test_every_label_is_caught_at_or_above_its_level(scenario_run: Run) -> None:
    missed = [(lab.id, lab.kind, lab.min_level.label, caught(scenario_run, lab).label)
              for lab in scenario_run.labels if caught(scenario_run, lab) < lab.min_level]
    assert missed == []


def test_nothing_above_blue_outside_labelled_windows(scenario_run: Run) -> None:
    assert unexplained_above_blue(scenario_run) == []
