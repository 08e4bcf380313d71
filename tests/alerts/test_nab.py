"""NAB scorer: hand-computed cases, sweep = brute force, and the published Numenta scores."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from alerts.nab import (
    PROFILE_NAMES,
    NabCorpus,
    NabFile,
    Profile,
    load_corpus,
    load_profiles,
    load_result_scores,
    load_thresholds,
    probation_rows,
    scaled_sigmoid,
)


def _nab_dir() -> Path:
    """The NAB corpus beside the checkout (../shared/benchmarks/nab), or PLANTWATCH_NAB_DIR, or
    this workplace's shared folder (a clone elsewhere, e.g. under /tmp, still finds it)."""
    env = os.environ.get("PLANTWATCH_NAB_DIR")
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "nab"
    for p in ([Path(env)] if env else []) + [beside, Path("/work/shared/benchmarks/nab")]:
        if (p / "labels" / "combined_windows.json").exists():
            return p
    return beside


NAB = _nab_dir()
STD = Profile("standard", 1.0, 0.11, 1.0)


def _file(n: int, windows: list[tuple[int, int]]) -> NabFile:
    ts = np.datetime64("2020-01-01T00:00:00", "s") + np.arange(n).astype("timedelta64[m]")
    return NabFile("cat/x.csv", ts, np.zeros(n), np.array(windows, dtype=np.int64).reshape(-1, 2))


def _sig(y: float) -> float:
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def _scores(n: int, rows: list[int]) -> np.ndarray:
    s = np.zeros(n)
    s[rows] = 1.0
    return s


def test_sigmoid_and_probation_follow_the_readme() -> None:
    assert scaled_sigmoid(np.array([0.0]))[0] == pytest.approx(0.0)
    assert scaled_sigmoid(np.array([-1.0]))[0] == pytest.approx(math.tanh(2.5))
    assert scaled_sigmoid(np.array([3.5]))[0] == -1.0
    assert probation_rows(100) == 15
    assert probation_rows(10_000) == 750


def test_earliest_detection_in_window_gets_full_reward_later_ones_nothing() -> None:
    c = NabCorpus([_file(100, [(40, 49)])])
    r = c.score([_scores(100, [40, 45, 49])], 0.5, STD)
    assert r.raw == pytest.approx(1.0)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_late_detection_reward_is_sigmoid_of_position() -> None:
    c = NabCorpus([_file(100, [(40, 49)])])
    r = c.score([_scores(100, [49])], 0.5, STD)
    assert r.raw == pytest.approx(_sig(-0.1) / _sig(-1.0))


def test_false_positive_costs_before_after_and_far_from_window() -> None:
    c = NabCorpus([_file(100, [(40, 49)])])
    # row 10 is in probation (ignored); 20 before the window; 50 just after; 99 far after; window missed
    r = c.score([_scores(100, [10, 20, 50, 99])], 0.5, STD)
    expected = -0.11 + 0.11 * _sig(1 / 9) + 0.11 * _sig(50 / 9) - 1.0
    assert r.raw == pytest.approx(expected)
    assert (r.tp, r.fp, r.fn) == (0, 3, 1)


def test_normalisation_null_is_zero_perfect_is_hundred() -> None:
    c = NabCorpus([_file(100, [(40, 49)]), _file(200, [(60, 69), (150, 159)])])
    low_fn = Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)
    null, perfect = c.bounds(low_fn)
    assert null == pytest.approx(-6.0)
    assert perfect == pytest.approx(3.0)
    assert c.score([np.zeros(100), np.zeros(200)], 0.5, STD).normalised == pytest.approx(0.0)
    assert c.score(c.perfect_scores(), 0.5, STD).normalised == pytest.approx(100.0)


def test_sweep_equals_brute_force_over_every_threshold() -> None:
    rng = np.random.default_rng(3)
    c = NabCorpus([_file(300, [(100, 129), (200, 219)]), _file(250, [(150, 199)])])
    scores = [np.round(rng.random(300), 2), np.round(rng.random(250), 2)]
    for prof in (STD, Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)):
        sw = c.sweep(scores, prof)
        thresholds = np.unique(np.concatenate(scores))
        brute = max(c.score(scores, float(t), prof).raw for t in thresholds)
        assert sw.raw == pytest.approx(max(brute, -prof.a_fn * 3))
        assert c.score(scores, sw.threshold, prof).raw == pytest.approx(sw.raw)


@pytest.fixture(scope="module")
def numenta() -> tuple[NabCorpus, list[np.ndarray]]:
    corpus = load_corpus(NAB)
    return corpus, load_result_scores(NAB / "results" / "numenta", "numenta", corpus)


def test_corpus_shape_matches_the_readme(numenta: tuple[NabCorpus, list[np.ndarray]]) -> None:
    corpus, _ = numenta
    assert len(corpus.files) == 58
    assert sum(len(f.values) for f in corpus.files) == 365_558
    assert corpus.n_windows == 116


def test_numenta_published_scores_reproduced(numenta: tuple[NabCorpus, list[np.ndarray]]) -> None:
    corpus, scores = numenta
    profiles = load_profiles(NAB)
    thresholds = load_thresholds(NAB)["numenta"]
    published = json.loads((NAB / "results" / "final_results.json").read_text())["numenta"]
    expected = {"standard": 70.1, "reward_low_FP_rate": 63.1, "reward_low_FN_rate": 74.3}
    for name in PROFILE_NAMES:
        r = corpus.score(scores, thresholds[name]["threshold"], profiles[name])
        assert round(r.normalised, 1) == expected[name]
        assert r.normalised == pytest.approx(published[name], abs=1e-6)
        assert r.raw == pytest.approx(thresholds[name]["score"], abs=1e-6)
        # the optimised sweep can only match or beat the published threshold
        assert corpus.sweep(scores, profiles[name]).raw >= r.raw - 1e-9


def test_numenta_per_file_scores_match_the_shipped_table(numenta: tuple[NabCorpus, list[np.ndarray]]) -> None:
    corpus, scores = numenta
    thr = load_thresholds(NAB)["numenta"]["standard"]["threshold"]
    ours = corpus.per_file_raw(scores, thr, load_profiles(NAB)["standard"])
    with (NAB / "results" / "numenta" / "numenta_standard_scores.csv").open() as fh:
        rows = [line.rstrip("\n").split(",") for line in fh][1:]
    table = {r[2]: float(r[4]) for r in rows if r[2] in ours}
    assert len(table) == 58
    for name, raw in table.items():
        assert ours[name] == pytest.approx(raw, abs=1e-6), name
