"""The alarm-storm backlog (plantwatch/backlog.py): slices in order without losing or
repeating a transition, one pair pulled out ahead with its own order kept."""

from __future__ import annotations

import numpy as np

from alerts.transitions import Transitions
from plantwatch.backlog import Backlog, pair_key


def _tr(rows: list[int], rules: list[int], start: int) -> Transitions:
    n = len(rows)
    return Transitions(row=np.array(rows, np.int32), rule=np.array(rules, np.int16),
                       level=np.ones(n, np.int8), prev=np.zeros(n, np.int8),
                       value=np.arange(start, start + n, dtype=np.float64),
                       ts_ms=np.arange(start, start + n, dtype=np.int64))


def _values(parts: list[tuple[Transitions, int]]) -> list[float]:
    return [v for tr, _ in parts for v in tr.value.tolist()]


def test_slices_come_out_in_order_across_sets_with_their_times() -> None:
    b = Backlog()
    b.add(_tr([0, 1, 2, 3, 4], [0] * 5, 0), 1000)
    b.add(_tr([5, 6, 7], [0] * 3, 5), 2000)
    b.add(Transitions.empty(), 3000)
    assert len(b) == 8
    first = b.take(3)
    assert _values(first) == [0.0, 1.0, 2.0]
    assert [now for _, now in first] == [1000]
    second = b.take(4)
    assert _values(second) == [3.0, 4.0, 5.0, 6.0]
    assert [now for _, now in second] == [1000, 2000]
    assert len(b) == 1
    assert _values(b.take(10)) == [7.0]
    assert not b
    assert b.take(10) == []


def test_one_pair_is_pulled_out_in_its_order_and_the_rest_stays_in_theirs() -> None:
    b = Backlog()
    b.add(_tr([0, 1, 0, 2], [0, 0, 1, 0], 0), 1000)  # pair (0, 0) first, (0, 1) is another pair
    b.add(_tr([1, 0, 3], [0, 0, 0], 4), 2000)
    b.take(1)  # (0, 0) at value 0 applied already
    assert b.pending_keys() == {pair_key(1, 0), pair_key(0, 1), pair_key(2, 0), pair_key(0, 0), pair_key(3, 0)}
    got = b.take_pair(0, 0)
    assert [(tr.value.tolist(), now) for tr, now in got] == [([5.0], 2000)]
    assert len(b) == 5
    assert _values(b.take(100)) == [1.0, 2.0, 3.0, 4.0, 6.0]
    assert b.take_pair(0, 0) == []


def test_a_pair_spread_over_sets_and_inside_a_partly_applied_one_keeps_its_order_and_times() -> None:
    b = Backlog()
    b.add(_tr([4, 4, 5, 4, 6], [1, 1, 1, 1, 1], 0), 1000)
    b.add(_tr([5, 4], [1, 1], 5), 2000)
    assert _values(b.take(2)) == [0.0, 1.0]  # two of (4, 1) applied
    got = b.take_pair(4, 1)
    assert [(tr.value.tolist(), now) for tr, now in got] == [([3.0], 1000), ([6.0], 2000)]
    assert len(b) == 3
    assert [(tr.value.tolist(), now) for tr, now in b.take(10)] == [([2.0, 4.0], 1000), ([5.0], 2000)]


def test_pulling_the_last_transitions_of_a_set_drops_the_set() -> None:
    b = Backlog()
    b.add(_tr([7, 7], [2, 2], 0), 1000)
    assert _values(b.take_pair(7, 2)) == [0.0, 1.0]
    assert not b
    assert b.pending_keys() == set()
