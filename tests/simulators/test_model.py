"""Plant models: physical ranges over a simulated week, normal statistics, incident shapes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from plantwatch.domain import KINDS
from simulators.levels import rule_series, rules_for
from simulators.model import Plant
from simulators.scenario import Scenario, generate_scenario, load_scenario
from simulators.spec import EnterpriseSpec, EventSpec, SensorSpec
from tests.simulators.helpers import START_MS, series

WEEK_S = 7 * 86400.0


def _quiet_week(seed: int = 1) -> Scenario:
    """Incident-free week: two plants per domain, one power plant under suspension."""
    sc = generate_scenario(seed, plants=6, duration_s=WEEK_S, incidents_per_plant=0, faults_per_plant=0,
                           start_ms=START_MS, suspended_share=0.5)
    assert any(e.production_status == "suspended" for e in sc.enterprises)
    assert any(e.production_status == "normal" and e.id.startswith("power") for e in sc.enterprises)
    return sc


def test_week_stays_in_physical_range_and_every_kind_is_covered() -> None:
    plant = _quiet_week().plant()
    kinds = {s.kind for s in plant.sensors}
    assert kinds == set(KINDS), f"kinds not simulated: {set(KINDS) - kinds}"
    n = 0
    for b in plant.blocks():
        assert np.isfinite(b.values).all()
        assert (b.values >= plant.lo).all()
        assert (b.values <= plant.hi).all()
        n += int(b.due.sum())
    assert n > 1_000_000  # a full week of readings was generated


def test_week_with_incidents_and_faults_stays_in_range_except_out_of_range_faults() -> None:
    sc = generate_scenario(11, plants=6, duration_s=WEEK_S, incidents_per_plant=20, faults_per_plant=10,
                           start_ms=START_MS)
    plant = sc.plant()
    oor = np.zeros(plant.n, dtype=bool)
    for ev, eff in plant.events:
        if ev.kind == "out_of_range":
            for ov in eff.post:
                oor[ov.cols] = True
    for b in plant.blocks():
        inside = (b.values >= plant.lo) & (b.values <= plant.hi)
        assert inside[:, ~oor].all()


Series = dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]]


@pytest.fixture(scope="module")
def quiet() -> tuple[Plant, Series]:
    plant = _quiet_week().plant()
    return plant, series(plant, range(plant.n))


def test_incident_free_week_never_crosses_a_default_threshold(quiet: tuple[Plant, Series]) -> None:
    plant, data = quiet
    for c, (t, v, _) in data.items():
        s = plant.sensors[c]
        for rule in rules_for(s, plant.enterprises[plant.ent[c]]):
            hit = rule.test(rule_series(s.kind, t, v))
            assert not hit.any(), f"{s.enterprise_id}/{s.id} {s.kind} crosses {rule.name} at {v[hit][:3]}"


def test_normal_statistics_match_the_model(quiet: tuple[Plant, Series]) -> None:
    plant, data = quiet
    for c, (_, v, _) in data.items():
        s, m = plant.sensors[c], plant.models[c]
        if s.kind.startswith("power.") or m.noise_sd == 0:
            continue
        # mean within drift amplitude (+ a little) of the level; noise at least the model's σ
        assert abs(v.mean() - m.level) <= m.drift_amp + 0.1 * max(m.noise_sd, 1e-3) + 10.0 ** -m.decimals, s.id
        assert v.std() >= 0.8 * m.noise_sd, s.id


def test_power_follows_shifts_weekdays_and_suspension() -> None:
    ents = (EnterpriseSpec("f", capacity_kw=1000.0, schedule="shifts"),
            EnterpriseSpec("s", capacity_kw=1000.0, schedule="shifts", production_status="suspended"))
    sens = (SensorSpec("f", "PM", "power.active_power", "m", interval_s=600.0),
            SensorSpec("s", "PM", "power.active_power", "m", interval_s=600.0))
    plant = Scenario("p", ents, sens, duration_s=WEEK_S, start_ms=START_MS - 7 * 3600_000).plant()  # Mon 00:00
    data = series(plant, [0, 1])
    t, v, _ = data[0]
    hour = ((t - plant.start_ms) // 3600_000) % 24
    day = (t - plant.start_ms) // 86_400_000  # 0 = Monday
    weekday_day = v[(day < 5) & (hour >= 9) & (hour < 12)]
    night = v[(hour >= 22) | (hour < 6)]
    sunday = v[day == 6]
    assert weekday_day.min() > 600
    assert night.max() < 130
    assert sunday.max() < 130
    _, vs, _ = data[1]
    assert vs.max() < 1.2 * 100.0  # a suspended enterprise stays at its baseline (+20 % is the blue rule)


def _one(kind: str, ev: EventSpec, *extra: SensorSpec, duration_s: float = 3600.0, **params: object) -> Scenario:
    ent = EnterpriseSpec("e", schedule="continuous")
    sensors = (SensorSpec("e", "S1", kind, "gw", "A", 5.0, params=params), *extra)
    return Scenario("t", (ent,), sensors, (ev,), duration_s=duration_s, start_ms=START_MS, seed=5)


def test_stuck_sensor_is_exactly_flat() -> None:
    sc = _one("gas.combustible", EventSpec("fault", "stuck", "e", 600, 1200, ("S1",)))
    t, v, _ = series(sc.plant(), [0])[0]
    w = (t >= START_MS + 600_000) & (t < START_MS + 1_800_000)
    assert w.sum() == 240
    assert np.unique(v[w]).size == 1
    assert v[w][0] == round(sc.plant().models[0].level, 2)
    assert np.unique(v[~w]).size > 10  # noisy outside the fault


def test_dropout_withholds_readings_exactly_in_its_window() -> None:
    sc = _one("gas.oxygen", EventSpec("fault", "dropout", "e", 600, 300, ("S1",)))
    t, _, _ = series(sc.plant(), [0])[0]
    assert not ((t >= START_MS + 600_000) & (t < START_MS + 900_000)).any()
    assert len(t) == 720 - 60


def test_gateway_death_silences_its_sensors_and_schedules_will_and_online() -> None:
    other = SensorSpec("e", "S2", "gas.oxygen", "gw2", "B", 5.0)
    same = SensorSpec("e", "S3", "gas.oxygen", "gw", "A", 5.0)
    sc = _one("gas.combustible", EventSpec("fault", "gateway_death", "e", 100, 200, device_id="gw"), same, other)
    plant = sc.plant()
    data = series(plant, [0, 1, 2])

    def win(t: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return (t >= START_MS + 100_000) & (t < START_MS + 300_000)

    assert not win(data[0][0]).any()
    assert not win(data[1][0]).any()
    assert win(data[2][0]).sum() == 40
    assert plant.status == [(START_MS + 100_000, ("e", "gw"), False), (START_MS + 300_000, ("e", "gw"), True)]


def test_spikes_drift_and_out_of_range_look_as_specified() -> None:
    sc = _one("gas.combustible", EventSpec("fault", "spike", "e", 600, 300, ("S1",), intensity=60.0,
                                           params={"every_s": 100}))
    t, v, _ = series(sc.plant(), [0])[0]
    assert list((t[v == 60.0] - START_MS) // 1000) == [600, 700, 800]
    sc = _one("gas.oxygen", EventSpec("fault", "drift", "e", 0, 3000, ("S1",), intensity=-3.0))
    t, v, _ = series(sc.plant(), [0])[0]
    first, last = v[t < START_MS + 300_000].mean(), v[(t >= START_MS + 2_700_000) & (t < START_MS + 3_000_000)].mean()
    assert -3.0 < last - first < -2.2
    assert abs(v[t >= START_MS + 3_000_000].mean() - 20.9) < 0.2  # recalibrated after the fault
    sc = _one("dust.air_velocity", EventSpec("fault", "out_of_range", "e", 60, 60, ("S1",), intensity=75.0))
    t, v, _ = series(sc.plant(), [0])[0]
    assert (v[(t >= START_MS + 60_000) & (t < START_MS + 120_000)] == 75.0).all()
    assert v.max() == 75.0
    assert (v[t >= START_MS + 120_000] < 60).all()


def test_leak_reaches_neighbours_later_and_weaker() -> None:
    nb = [SensorSpec("e", f"N{i}", "gas.combustible", "gw", "A", 5.0) for i in (1, 2)]
    far = SensorSpec("e", "F", "gas.combustible", "gw", "B", 5.0)
    sc = _one("gas.combustible", EventSpec("incident", "gas_leak", "e", 60, 600, ("S1",), intensity=80.0),
              *nb, far)
    data = series(sc.plant(), [0, 1, 2, 3])
    first = [int(data[c][0][np.argmax(data[c][1] >= 15.0)]) for c in (0, 1, 2)]
    peaks = [float(data[c][1].max()) for c in (0, 1, 2)]
    assert first[0] < first[1] < first[2]
    assert peaks[0] > peaks[1] > peaks[2] > 15.0
    assert data[3][1].max() < 5.0  # another area is not reached


def test_dust_shapes_clog_rupture_airflow_smoulder() -> None:
    dp = SensorSpec("e", "DP", "dust.pressure_diff", "gw", "A", 5.0, params={"baseline": 1000.0})
    ev = EventSpec("incident", "airflow_loss", "e", 600, 600, ("S1",), intensity=0.5)
    sc = _one("dust.air_velocity", ev, dp)
    data = series(sc.plant(), [0, 1])
    t, v, _ = data[0]
    mid = (t >= START_MS + 900_000) & (t < START_MS + 1_100_000)
    ratio_v = v[mid].mean() / v[t < START_MS + 600_000].mean()
    ratio_dp = data[1][1][mid].mean() / data[1][1][t < START_MS + 600_000].mean()
    assert ratio_v == pytest.approx(0.5, abs=0.05)
    assert ratio_dp == pytest.approx(0.25, abs=0.05)
    for kind, inten, lo, hi in (("filter_clogging", 1.5, 1.4, 1.6), ("bag_rupture", 0.05, 0.0, 0.1)):
        sc = _one("dust.pressure_diff", EventSpec("incident", kind, "e", 600, 1200, ("S1",), intensity=inten),
                  baseline=1000.0)
        t, v, _ = series(sc.plant(), [0])[0]
        late = v[(t >= START_MS + 1_700_000) & (t < START_MS + 1_800_000)] / 1000.0
        assert lo < late.mean() < hi, kind
    sc = _one("dust.hopper_temperature", EventSpec("incident", "smouldering", "e", 600, 1200, ("S1",),
                                                   intensity=80.0), baseline=35.0)
    t, v, _ = series(sc.plant(), [0])[0]
    assert 75 < v.max() < 85
    assert np.all(np.diff(v[(t > START_MS + 700_000) & (t < START_MS + 1_100_000)]) > -2)


def test_critical_feeder_loss_is_exactly_zero_and_overload_lifts_the_meter() -> None:
    ent = EnterpriseSpec("e", capacity_kw=1000.0, schedule="continuous")
    sens = (SensorSpec("e", "PM", "power.active_power", "m", interval_s=60.0),
            SensorSpec("e", "FV", "power.feeder_current", "m", interval_s=60.0, params={"critical": True}))
    evs = (EventSpec("incident", "critical_feeder_loss", "e", 600, 1200, ("FV",)),
           EventSpec("incident", "overload", "e", 3600, 3600, intensity=1.3))
    plant = Scenario("p", (ent,), sens, evs, duration_s=3 * 3600.0, start_ms=START_MS).plant()
    data = series(plant, [0, 1])
    t, v, _ = data[1]
    assert (v[(t >= START_MS + 660_000) & (t < START_MS + 1_800_000)] == 0.0).all()
    assert (v[t < START_MS + 600_000] > 0).all()
    t, v, _ = data[0]
    held = v[(t >= START_MS + 4_500_000) & (t < START_MS + 7_200_000)]
    assert 1.25 * 1000 < held.mean() < 1.35 * 1000


def test_bundled_scenarios_compile() -> None:
    for name in ("gas", "dust", "power", "demo"):
        sc = load_scenario(name)
        assert sc.events
        assert sc.plant(START_MS).n == len(sc.sensors)
