"""Property tests of the alarm lifecycle over random sequences of transitions and actions."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.lifecycle import EVENT_TYPES, MINUTE_MS, AlarmBook, Deadlines, LifecycleError
from alerts.model import Alarm, Change
from alerts.transitions import Transitions
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Sensor

T0 = 1_795_459_488_000
SENSORS = [Sensor("E1", f"GT-{i}", "gas.combustible", unit="%LEL", row=i) for i in range(3)]
RULES = ["high", "deadman"]
FAST = Deadlines(ack_ms={Level.RED: 2 * MINUTE_MS, Level.ORANGE: 4 * MINUTE_MS, Level.YELLOW: 8 * MINUTE_MS},
                 feedback_ms={Level.RED: 10 * MINUTE_MS, Level.YELLOW: 20 * MINUTE_MS},
                 max_shelve_ms=30 * MINUTE_MS)

Op = tuple[Any, ...]
dt = st.integers(0, 6 * MINUTE_MS)
idx = st.integers(0, 5)
lvl = st.sampled_from([0, 0, 0, 1, 2, 3, 4])  # NONE often, so alarms clear, close and come back
tr_st = st.tuples(st.just("tr"), st.integers(0, 1), st.integers(0, 1), lvl, dt)
ops_st = st.lists(st.one_of(
    tr_st, tr_st, tr_st,
    st.tuples(st.just("tr2"), st.integers(0, 1), lvl, dt),  # same level twice, 1 ms apart
    st.tuples(st.just("ack"), idx, dt),
    st.tuples(st.just("note"), idx, dt),
    st.tuples(st.just("close"), idx, dt),
    st.tuples(st.just("close"), idx, dt),
    st.tuples(st.just("shelve"), idx, st.integers(1, 40 * MINUTE_MS), dt),
    st.tuples(st.just("unshelve"), idx, dt),
    st.tuples(st.just("tick"), dt),
), min_size=10, max_size=40)


def sensor_of(row: int) -> Sensor | None:
    return SENSORS[row] if 0 <= row < len(SENSORS) else None


def one(row: int, rule: int, level: int, t: int) -> Transitions:
    return Transitions(np.array([row], np.int32), np.array([rule], np.int16), np.array([level], np.int8),
                       np.zeros(1, np.int8), np.array([float(level) * 20.0], np.float64), np.array([t], np.int64))


def step(book: AlarmBook, op: Op, t: int) -> tuple[int, list[Any]]:
    """Run one op at clock ``t + op's dt``; returns the new clock and what happened (JSON-able)."""
    t += op[-1]
    ids = sorted(a.id for a in book.open_alarms())
    target = ids[op[1] % len(ids)] if ids and op[0] not in ("tr", "tr2", "tick") else 999
    ch: list[Change] = []
    try:
        match op[0]:
            case "tr":
                ch = book.apply(one(op[1], op[2], op[3], t), t)
            case "tr2":
                ch = book.apply(one(op[1], 0, op[2], t), t) + book.apply(one(op[1], 0, op[2], t + 1), t + 1)
            case "ack":
                ch = [book.acknowledge(target, "li", "seen", t)]
            case "note":
                ch = [book.add_note(target, "li", "handled", t)]
            case "close":
                ch = [book.close(target, "li", "done", t)]
            case "shelve":
                ch = [book.shelve(target, "li", "maintenance", t + op[2], t)]
            case "unshelve":
                ch = [book.unshelve(target, "li", "", t)]
            case "tick":
                ch = book.tick(t)
    except LifecycleError as exc:
        return t, [type(exc).__name__, exc.alarm_id, str(exc)]
    return t, [(a.to_json(), e.to_json()) for a, e in ch]


def check_invariants(book: AlarmBook, cond: dict[tuple[str, str], int], out: list[Any]) -> None:
    alarms = book.open_alarms()
    keys = Counter((a.sensor_id, a.rule) for a in alarms)
    assert all(n == 1 for n in keys.values()), keys
    by_key = {(a.sensor_id, a.rule): a for a in alarms}
    for a in alarms:
        assert a.status is not AlarmStatus.CLOSED
        assert a.peak_level >= a.level > Level.NONE
        assert 0 <= a.tier <= FAST.max_tier
    for key, level in cond.items():
        if level > 0:  # a present condition is never closed away or hidden below its level
            a = by_key[key]
            assert a.status in (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)
            assert a.level >= level
    if out and isinstance(out[0], tuple):
        for alarm_json, event_json in out:
            assert event_json["type"] in EVENT_TYPES
            assert event_json["alarm_id"] == alarm_json["id"]
            assert event_json["status"] == alarm_json["status"]
            if event_json["type"] == "closed":
                assert alarm_json["cleared_at"] is not None


@settings(max_examples=150, deadline=None)
@given(ops_st)
def test_at_most_one_open_alarm_per_key_and_conditions_stay_visible(ops: list[Op]) -> None:
    book = AlarmBook(sensor_of, RULES, deadlines=FAST)
    cond: dict[tuple[str, str], int] = {}
    closed: set[int] = set()
    t = T0
    for op in ops:
        t, out = step(book, op, t)
        for ev in events(out):
            if isinstance(ev, dict):
                assert ev["alarm_id"] not in closed  # a closed alarm never changes again
                if ev["type"] == "closed":
                    closed.add(ev["alarm_id"])
        if op[0] == "tr":
            cond[(f"GT-{op[1]}", RULES[op[2]])] = op[3]
        elif op[0] == "tr2":
            cond[(f"GT-{op[1]}", "high")] = op[2]
        check_invariants(book, cond, out)


def through_store(alarms: list[Alarm]) -> list[Alarm]:
    """What a store that persists ``extra`` as JSON gives back."""
    return [replace(a, extra=json.loads(json.dumps(a.extra))) for a in alarms]


@settings(max_examples=150, deadline=None)
@given(ops_st, st.integers(0, 40))
def test_restart_then_continuing_equals_never_stopping(ops: list[Op], cut: int) -> None:
    cut = min(cut, len(ops))
    steady = AlarmBook(sensor_of, RULES, deadlines=FAST)
    t = T0
    steady_out = []
    for op in ops:
        t, out = step(steady, op, t)
        steady_out.append(out)

    first = AlarmBook(sensor_of, RULES, deadlines=FAST)
    t = T0
    for op in ops[:cut]:
        t, _ = step(first, op, t)
    second = AlarmBook(sensor_of, RULES, next_id=first.next_id, deadlines=FAST)
    second.load(through_store(first.open_alarms()))
    resumed_out = []
    for op in ops[cut:]:
        t, out = step(second, op, t)
        resumed_out.append(out)

    assert resumed_out == steady_out[cut:]
    assert [a.to_json() for a in second.open_alarms()] == [a.to_json() for a in steady.open_alarms()]


def events(out: list[Any]) -> list[Any]:
    """The events of one step's output (or the error it raised, as one item)."""
    if out and not isinstance(out[0], tuple):
        return [out]
    return [e for _, e in out]


@settings(max_examples=100, deadline=None)
@given(ops_st)
def test_tick_granularity_does_not_change_outcome(ops: list[Op]) -> None:
    """Ticking every minute gives the same events and state as one tick just before each op."""
    coarse = AlarmBook(sensor_of, RULES, deadlines=FAST)
    fine = AlarmBook(sensor_of, RULES, deadlines=FAST)
    t = T0
    got_c: list[Any] = []
    got_f: list[Any] = []
    for op in ops:
        for m in range(t + MINUTE_MS, t + op[-1], MINUTE_MS):
            got_f += events(step(fine, ("tick", 0), m)[1])
        got_f += events(step(fine, ("tick", op[-1]), t)[1])
        got_c += events(step(coarse, ("tick", op[-1]), t)[1])
        step(fine, op, t)
        t, _ = step(coarse, op, t)
    assert got_c == got_f
    assert [a.to_json() for a in coarse.open_alarms()] == [a.to_json() for a in fine.open_alarms()]
