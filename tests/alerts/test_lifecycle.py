"""Alarm lifecycle rules, each on a crafted sequence with a fake clock (epoch ms)."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.lifecycle import (
    EVENT_TYPES,
    HOUR_MS,
    MINUTE_MS,
    AlarmBook,
    AlarmNotFound,
    Deadlines,
    InvalidTransition,
    LifecycleError,
    suppressed,
)
from alerts.model import Alarm, Change
from alerts.transitions import Transitions
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Sensor

T0 = 1_795_459_488_000
YEL, ORA, RED, BLU, NON = Level.YELLOW, Level.ORANGE, Level.RED, Level.BLUE, Level.NONE

SENSORS = [
    Sensor("E1", "GT-101", "gas.combustible", device_id="GW1", area="A1", unit="%LEL", row=0),
    Sensor("E1", "GT-102", "gas.combustible", device_id="GW1", area="A1", row=1),  # unit from the kind
    Sensor("E2", "OT-1", "gas.oxygen", device_id="GW9", area="B", unit="%VOL", row=2),
]
RULES = ["high", "deadman"]


def sensor_of(row: int) -> Sensor | None:
    return SENSORS[row] if 0 <= row < len(SENSORS) else None


def tr(*items: tuple[int, int, Level, float, int]) -> Transitions:
    """Transitions from (row, rule, level, value, ts_ms) tuples (prev is not used by the book)."""
    return Transitions(
        np.array([i[0] for i in items], np.int32), np.array([i[1] for i in items], np.int16),
        np.array([int(i[2]) for i in items], np.int8), np.zeros(len(items), np.int8),
        np.array([i[3] for i in items], np.float64), np.array([i[4] for i in items], np.int64),
    )


def go(book: AlarmBook, level: Level, t: int, value: float = 30.0, row: int = 0, rule: int = 0) -> list[Change]:
    return book.apply(tr((row, rule, level, value, t)), t)


def types(changes: list[Change]) -> list[str]:
    return [c[1].type for c in changes]


def only(changes: list[Change]) -> Alarm:
    assert len(changes) == 1
    return changes[0][0]


@pytest.fixture
def book() -> AlarmBook:
    return AlarmBook(sensor_of, RULES)


# -- raising and level moves -----------------------------------------------------------------
def test_raise_takes_identity_from_sensor_and_rule_and_writes_a_message(book: AlarmBook) -> None:
    ch = go(book, YEL, T0, 30.0)
    a, ev = ch[0]
    assert (a.id, a.enterprise_id, a.sensor_id, a.device_id, a.area, a.kind, a.rule) == (
        1, "E1", "GT-101", "GW1", "A1", "gas.combustible", "high")
    assert (a.level, a.peak_level, a.status, a.value, a.raised_at, a.updated_at) == (
        YEL, YEL, AlarmStatus.ACTIVE, 30.0, T0, T0)
    assert a.message == "GT-101 gas.combustible 30.0 %LEL (yellow, high)"
    assert (ev.type, ev.level, ev.prev_level, ev.status, ev.value, ev.ts_ms) == (
        "raised", YEL, NON, AlarmStatus.ACTIVE, 30.0, T0)


def test_message_uses_kind_unit_threshold_and_no_data() -> None:
    book = AlarmBook(sensor_of, RULES, threshold_of=lambda row, rule, lv: ("≥", 50.0))
    a = only(go(book, ORA, T0, 52.0, row=1))
    assert a.message == "GT-102 gas.combustible 52.0 %LEL ≥ 50 (orange, high)"
    a = only(go(book, YEL, T0, float("nan"), row=2, rule=1))
    assert a.message.startswith("OT-1 gas.oxygen no data")
    assert a.rule == "deadman"


def test_escalate_and_deescalate_move_one_alarm_and_keep_peak(book: AlarmBook) -> None:
    go(book, YEL, T0, 30.0)
    up = go(book, ORA, T0 + 1000, 52.0)
    a = only(up)
    assert types(up) == ["escalated"]
    assert a.id == 1
    assert (a.level, a.peak_level, a.value, a.updated_at) == (ORA, ORA, 52.0, T0 + 1000)
    assert (up[0][1].level, up[0][1].prev_level) == (ORA, YEL)
    down = go(book, YEL, T0 + 2000, 40.0)
    a = only(down)
    assert types(down) == ["deescalated"]
    assert (a.level, a.peak_level, a.value) == (YEL, ORA, 40.0)
    assert len(book) == 1


def test_same_transition_twice_and_readings_ms_apart_raise_one_alarm(book: AlarmBook) -> None:
    first = book.apply(tr((0, 0, YEL, 30.0, T0), (0, 0, YEL, 30.1, T0 + 1)), T0 + 1)
    assert types(first) == ["raised"]
    assert go(book, YEL, T0 + 2, 30.2) == []
    assert [a.id for a in book.open_alarms()] == [1]


def test_different_rules_and_sensors_get_their_own_alarms(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, YEL, T0, rule=1)
    go(book, YEL, T0, row=1)
    assert [(a.sensor_id, a.rule) for a in book.open_alarms()] == [
        ("GT-101", "high"), ("GT-101", "deadman"), ("GT-102", "high")]


def test_none_clears_and_repeated_clear_is_a_no_op(book: AlarmBook) -> None:
    assert go(book, NON, T0) == []  # nothing to clear
    go(book, YEL, T0)
    ch = go(book, NON, T0 + 5000, 20.0)
    a, ev = ch[0]
    assert (ev.type, ev.level, ev.prev_level, ev.status) == ("cleared", NON, YEL, AlarmStatus.CLEARED)
    assert (a.status, a.cleared_at, a.level, a.value) == (AlarmStatus.CLEARED, T0 + 5000, YEL, 20.0)
    assert go(book, NON, T0 + 6000) == []


def test_new_condition_on_cleared_alarm_reactivates_it(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.acknowledge(1, "li", "checking", T0 + 10)
    go(book, NON, T0 + 20)
    ch = go(book, ORA, T0 + 30, 55.0)
    a, ev = ch[0]
    assert (ev.type, ev.level, ev.prev_level) == ("reactivated", ORA, NON)
    assert (a.id, a.status, a.level, a.cleared_at, a.acked_by) == (1, AlarmStatus.ACTIVE, ORA, None, None)


def test_after_close_a_new_condition_raises_a_new_alarm(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, NON, T0 + 10)
    closed = book.close(1, "li", "sensor recalibrated", T0 + 20)
    assert closed[1].type == "closed"
    assert closed[0].status is AlarmStatus.CLOSED
    assert closed[0].closed_by == "li"
    assert closed[0].close_comment == "sensor recalibrated"
    assert book.get(1) is None
    ch = go(book, YEL, T0 + 30)
    assert types(ch) == ["raised"]
    assert ch[0][0].id == 2


def test_unknown_row_still_raises_an_alarm() -> None:
    book = AlarmBook(sensor_of, RULES)
    a = only(go(book, RED, T0, row=99))
    assert (a.enterprise_id, a.sensor_id, a.kind) == ("", "row:99", "")


def test_changes_hold_snapshots_not_the_live_alarm(book: AlarmBook) -> None:
    first = go(book, YEL, T0)
    go(book, ORA, T0 + 1)
    assert first[0][0].level is YEL
    got = book.get(1)
    assert got is not None
    got.level = Level.BLUE
    assert book.open_alarms()[0].level is ORA


# -- acknowledge, note, close ----------------------------------------------------------------
@pytest.mark.parametrize(("by", "comment", "field"), [("", "x", "by"), ("  ", "x", "by"), ("li", "", "comment")])
def test_ack_requires_named_person_and_comment(book: AlarmBook, by: str, comment: str, field: str) -> None:
    go(book, YEL, T0)
    with pytest.raises(InvalidTransition) as err:
        book.acknowledge(1, by, comment, T0 + 1)
    assert err.value.field == field
    assert err.value.alarm_id == 1
    assert field in str(err.value)


def test_ack_unknown_alarm_raises_not_found(book: AlarmBook) -> None:
    with pytest.raises(AlarmNotFound) as err:
        book.acknowledge(42, "li", "ok", T0)
    assert err.value.alarm_id == 42
    assert isinstance(err.value, LifecycleError)


def test_ack_keeps_acknowledged_until_cleared(book: AlarmBook) -> None:
    go(book, ORA, T0)
    a, ev = book.acknowledge(1, "li", "on my way", T0 + 100)
    assert (a.status, a.acked_by, a.acked_at, a.ack_comment) == (
        AlarmStatus.ACKNOWLEDGED, "li", T0 + 100, "on my way")
    assert (ev.type, ev.by, ev.comment) == ("acknowledged", "li", "on my way")
    assert only(go(book, YEL, T0 + 200)).status is AlarmStatus.ACKNOWLEDGED
    with pytest.raises(InvalidTransition, match="already acknowledged"):
        book.acknowledge(1, "wang", "me too", T0 + 300)
    assert only(go(book, NON, T0 + 400)).status is AlarmStatus.CLEARED


def test_rise_on_acknowledged_alarm_rearms_it_unless_configured(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.acknowledge(1, "li", "ok", T0 + 1)
    a = only(go(book, ORA, T0 + 2))
    assert (a.status, a.acked_by) == (AlarmStatus.ACTIVE, None)
    calm = AlarmBook(sensor_of, RULES, deadlines=Deadlines(rearm_on_rise=False))
    go(calm, YEL, T0)
    calm.acknowledge(1, "li", "ok", T0 + 1)
    assert only(go(calm, ORA, T0 + 2)).status is AlarmStatus.ACKNOWLEDGED


def test_close_refused_while_condition_present(book: AlarmBook) -> None:
    go(book, YEL, T0)
    with pytest.raises(InvalidTransition, match="still present") as err:
        book.close(1, "li", "done", T0 + 1)
    assert err.value.status is AlarmStatus.ACTIVE
    assert err.value.action == "close"
    book.acknowledge(1, "li", "ok", T0 + 2)
    with pytest.raises(InvalidTransition, match="still present"):
        book.close(1, "li", "done", T0 + 3)
    go(book, NON, T0 + 4)
    assert book.close(1, "li", "vented, detector checked", T0 + 5)[0].status is AlarmStatus.CLOSED
    with pytest.raises(AlarmNotFound):
        book.close(1, "li", "again", T0 + 6)


def test_close_requires_by_and_comment(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, NON, T0 + 1)
    with pytest.raises(InvalidTransition) as err:
        book.close(1, "li", " ", T0 + 2)
    assert err.value.field == "comment"


def test_cleared_unacknowledged_alarm_can_be_acknowledged_then_closed(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, NON, T0 + 1)
    a, _ = book.acknowledge(1, "li", "seen", T0 + 2)
    assert (a.status, a.acked_by) == (AlarmStatus.CLEARED, "li")
    assert book.close(1, "li", "fine", T0 + 3)[1].type == "closed"


def test_note_records_disposal(book: AlarmBook) -> None:
    go(book, YEL, T0)
    a, ev = book.add_note(1, "zhao", "valve closed, area ventilated", T0 + 50)
    assert (ev.type, ev.by, ev.comment, ev.status) == ("note", "zhao", "valve closed, area ventilated",
                                                       AlarmStatus.ACTIVE)
    assert a.updated_at == T0 + 50
    with pytest.raises(InvalidTransition):
        book.add_note(1, "zhao", "", T0 + 60)


# -- latching --------------------------------------------------------------------------------
def test_red_latches_until_acknowledged(book: AlarmBook) -> None:
    go(book, RED, T0, 80.0)
    ch = go(book, NON, T0 + 1000, 5.0)
    a, ev = ch[0]
    assert (ev.type, a.status, a.level, a.extra["latched"]) == ("cleared", AlarmStatus.ACTIVE, RED, True)
    assert go(book, NON, T0 + 1500) == []
    with pytest.raises(InvalidTransition, match="latched"):
        book.close(1, "li", "done", T0 + 2000)
    a, ev = book.acknowledge(1, "li", "leak stopped", T0 + 3000)
    assert (a.status, a.cleared_at, a.extra["latched"], ev.status) == (
        AlarmStatus.CLEARED, T0 + 1000, False, AlarmStatus.CLEARED)
    assert book.close(1, "li", "done", T0 + 4000)[0].status is AlarmStatus.CLOSED


def test_red_that_passed_through_lower_levels_still_latches(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, RED, T0 + 1)
    go(book, ORA, T0 + 2)
    assert only(go(book, NON, T0 + 3)).status is AlarmStatus.ACTIVE


def test_acknowledged_red_clears_normally(book: AlarmBook) -> None:
    go(book, RED, T0)
    book.acknowledge(1, "li", "ok", T0 + 1)
    assert only(go(book, NON, T0 + 2)).status is AlarmStatus.CLEARED


def test_latched_alarm_whose_condition_returns_is_reactivated(book: AlarmBook) -> None:
    go(book, RED, T0)
    go(book, NON, T0 + 1)
    ch = go(book, ORA, T0 + 2)
    a, ev = ch[0]
    assert (ev.type, ev.prev_level, a.level, a.status, a.extra["latched"]) == (
        "reactivated", RED, ORA, AlarmStatus.ACTIVE, False)


def test_latching_can_be_switched_off() -> None:
    book = AlarmBook(sensor_of, RULES, deadlines=Deadlines(latch_red=False))
    go(book, RED, T0)
    assert only(go(book, NON, T0 + 1)).status is AlarmStatus.CLEARED


# -- shelving --------------------------------------------------------------------------------
def test_shelve_validates_reason_expiry_and_level(book: AlarmBook) -> None:
    go(book, YEL, T0)
    with pytest.raises(InvalidTransition) as err:
        book.shelve(1, "li", "", T0 + HOUR_MS, T0)
    assert err.value.field == "reason"
    with pytest.raises(InvalidTransition) as err:
        book.shelve(1, "li", "maintenance", T0, T0)
    assert err.value.field == "until_ms"
    with pytest.raises(InvalidTransition, match="at most"):
        book.shelve(1, "li", "maintenance", T0 + 25 * HOUR_MS, T0)
    with pytest.raises(InvalidTransition, match="not shelved"):
        book.unshelve(1, "li", "", T0)
    go(book, RED, T0 + 1, row=1)
    with pytest.raises(InvalidTransition, match="red"):
        book.shelve(2, "li", "maintenance", T0 + HOUR_MS, T0 + 2)


def test_shelved_alarm_does_not_escalate_and_unshelves_on_expiry(book: AlarmBook) -> None:
    go(book, YEL, T0)
    until = T0 + 2 * HOUR_MS
    a, ev = book.shelve(1, "li", "detector calibration", until, T0 + 10)
    assert (ev.type, ev.comment, a.shelved_until, a.shelve_reason) == (
        "shelved", "detector calibration", until, "detector calibration")
    assert suppressed(a)
    assert book.tick(until - 1) == []  # the 1 h deadline passed while shelved: nothing
    ch = book.tick(until)
    a, ev = ch[0]
    assert (ev.type, ev.ts_ms, a.shelved_until, suppressed(a)) == ("unshelved", until, None, False)
    assert book.tick(until + HOUR_MS - 1) == []  # deadline restarted at expiry
    assert types(book.tick(until + HOUR_MS)) == ["overdue"]


def test_manual_unshelve_restarts_the_deadline(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.shelve(1, "li", "works", T0 + 3 * HOUR_MS, T0)
    _, ev = book.unshelve(1, "wang", "works done", T0 + 2 * HOUR_MS)
    assert (ev.type, ev.by) == ("unshelved", "wang")
    assert book.tick(T0 + 3 * HOUR_MS - 1) == []
    assert types(book.tick(T0 + 3 * HOUR_MS)) == ["overdue"]


def test_shelved_alarm_reaching_red_is_unshelved(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.shelve(1, "li", "works", T0 + HOUR_MS, T0)
    ch = go(book, RED, T0 + 100)
    assert types(ch) == ["escalated", "unshelved"]
    assert ch[-1][0].shelved_until is None


def test_close_ends_shelving(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.shelve(1, "li", "works", T0 + HOUR_MS, T0)
    go(book, NON, T0 + 1)
    assert book.close(1, "li", "done", T0 + 2)[0].shelved_until is None


# -- escalation deadlines --------------------------------------------------------------------
def test_unacknowledged_yellow_escalates_tier_and_level_at_its_deadlines(book: AlarmBook) -> None:
    go(book, YEL, T0)
    assert book.tick(T0 + HOUR_MS - 1) == []
    a, ev = book.tick(T0 + HOUR_MS)[0]
    assert (ev.type, ev.ts_ms, ev.level, ev.prev_level, a.tier, a.level, a.peak_level) == (
        "overdue", T0 + HOUR_MS, ORA, YEL, 1, ORA, ORA)
    assert "county" in (ev.comment or "")
    t2 = T0 + HOUR_MS + 15 * MINUTE_MS  # restarted with orange's 15 min
    assert book.tick(t2 - 1) == []
    a, ev = book.tick(t2)[0]
    assert (a.tier, a.level, ev.prev_level) == (2, RED, ORA)
    assert "city" in (ev.comment or "")
    assert book.tick(t2 + 10 * HOUR_MS) == []  # city tier and red: capped
    assert book.next_due() is None


def test_red_escalates_tier_only_every_five_minutes(book: AlarmBook) -> None:
    go(book, RED, T0)
    assert book.tick(T0 + 5 * MINUTE_MS - 1) == []
    a, ev = book.tick(T0 + 5 * MINUTE_MS)[0]
    assert (a.tier, a.level, ev.level, ev.prev_level) == (1, RED, RED, RED)
    assert book.tick(T0 + 10 * MINUTE_MS)[0][0].tier == 2
    assert book.tick(T0 + HOUR_MS) == []


def test_blue_never_escalates(book: AlarmBook) -> None:
    go(book, BLU, T0)
    assert book.tick(T0 + 100 * HOUR_MS) == []


def test_acknowledged_in_time_does_not_escalate(book: AlarmBook) -> None:
    go(book, ORA, T0)
    book.acknowledge(1, "li", "ok", T0 + 15 * MINUTE_MS - 1)
    assert book.tick(T0 + HOUR_MS) == []


def test_level_up_is_configurable() -> None:
    book = AlarmBook(sensor_of, RULES, deadlines=Deadlines(level_up=False))
    go(book, YEL, T0)
    a = book.tick(T0 + HOUR_MS)[0][0]
    assert (a.tier, a.level) == (1, YEL)
    a = book.tick(T0 + 2 * HOUR_MS)[0][0]
    assert (a.tier, a.level) == (2, YEL)
    assert book.tick(T0 + 10 * HOUR_MS) == []


def test_late_tick_catches_up_with_events_at_due_instants(book: AlarmBook) -> None:
    go(book, YEL, T0)
    ch = book.tick(T0 + 5 * HOUR_MS)
    assert [c[1].ts_ms for c in ch] == [T0 + HOUR_MS, T0 + HOUR_MS + 15 * MINUTE_MS]
    assert [c[0].tier for c in ch] == [1, 2]


def test_rise_shortens_the_running_deadline(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, RED, T0 + 10 * MINUTE_MS)
    assert book.tick(T0 + 15 * MINUTE_MS - 1) == []
    assert book.tick(T0 + 15 * MINUTE_MS)[0][0].tier == 1


def test_overdue_level_is_a_floor_until_the_condition_ends(book: AlarmBook) -> None:
    go(book, YEL, T0)
    book.tick(T0 + HOUR_MS)  # now orange by escalation
    assert go(book, BLU, T0 + HOUR_MS + 1) == []  # engine says lower: still orange
    assert book.open_alarms()[0].level is ORA
    assert types(go(book, RED, T0 + HOUR_MS + 2)) == ["escalated"]
    cleared = only(go(book, NON, T0 + HOUR_MS + 3))
    assert cleared.status is AlarmStatus.ACTIVE  # red while unacknowledged: latched
    book.acknowledge(1, "li", "ok", T0 + HOUR_MS + 4)
    assert only(go(book, YEL, T0 + HOUR_MS + 5)).level is YEL  # floor gone after the clear


def test_missing_disposal_feedback_escalates_once(book: AlarmBook) -> None:
    go(book, RED, T0)
    book.acknowledge(1, "li", "ok", T0 + MINUTE_MS)
    assert book.tick(T0 + MINUTE_MS + 2 * HOUR_MS - 1) == []
    a, ev = book.tick(T0 + MINUTE_MS + 2 * HOUR_MS)[0]
    assert (ev.type, a.tier, a.level) == ("overdue", 1, RED)
    assert "feedback" in (ev.comment or "")
    assert book.tick(T0 + 100 * HOUR_MS) == []


def test_note_satisfies_the_feedback_deadline(book: AlarmBook) -> None:
    go(book, RED, T0)
    book.acknowledge(1, "li", "ok", T0)
    book.add_note(1, "li", "shut-off valve closed", T0 + HOUR_MS)
    assert book.tick(T0 + 100 * HOUR_MS) == []


# -- restart ---------------------------------------------------------------------------------
def test_restart_mid_deadline_escalates_at_the_same_wall_time(book: AlarmBook) -> None:
    go(book, YEL, T0)
    go(book, ORA, T0 + 1, row=1)
    go(book, NON, T0 + 2, row=1)
    book.close(2, "li", "ok", T0 + 3)
    assert book.tick(T0 + 30 * MINUTE_MS) == []
    again = AlarmBook(sensor_of, RULES, next_id=book.next_id)
    again.load(book.open_alarms())
    assert again.tick(T0 + HOUR_MS - 1) == []
    ch = again.tick(T0 + HOUR_MS)
    assert [(c[1].type, c[1].ts_ms, c[0].tier) for c in ch] == [("overdue", T0 + HOUR_MS, 1)]
    assert types(go(again, YEL, T0 + HOUR_MS, row=1)) == ["raised"]
    assert again.open_alarms()[-1].id == 3


def test_load_continues_ids_skips_closed_and_keeps_the_key(book: AlarmBook) -> None:
    go(book, YEL, T0)
    alarms = book.open_alarms()
    closed = Alarm(id=7, enterprise_id="E1", sensor_id="GT-102", device_id="", area="", kind="gas.combustible",
                   rule="high", level=YEL, status=AlarmStatus.CLOSED, value=1.0, raised_at=T0, updated_at=T0)
    fresh = AlarmBook(sensor_of, RULES)
    fresh.load([*alarms, closed])
    assert [a.id for a in fresh.open_alarms()] == [1]
    assert fresh.next_id == 2
    assert go(fresh, YEL, T0 + 5) == []  # same key: the loaded alarm, no duplicate
    assert types(go(fresh, ORA, T0 + 6)) == ["escalated"]


def test_load_without_bookkeeping_derives_deadlines_from_stored_times() -> None:
    bare = Alarm(id=5, enterprise_id="E1", sensor_id="GT-101", device_id="GW1", area="A1",
                 kind="gas.combustible", rule="high", level=ORA, status=AlarmStatus.ACTIVE, value=55.0,
                 raised_at=T0, updated_at=T0, peak_level=ORA)
    book = AlarmBook(sensor_of, RULES)
    book.load([bare])
    assert book.tick(T0 + 15 * MINUTE_MS - 1) == []
    assert book.tick(T0 + 15 * MINUTE_MS)[0][0].tier == 1
    assert types(go(book, NON, T0 + HOUR_MS)) == ["cleared"]
    assert book.next_id == 6


def test_load_restores_a_latched_alarm(book: AlarmBook) -> None:
    go(book, RED, T0)
    go(book, NON, T0 + 1)
    again = AlarmBook(sensor_of, RULES)
    again.load(book.open_alarms())
    with pytest.raises(InvalidTransition, match="latched"):
        again.close(1, "li", "x", T0 + 2)
    assert again.acknowledge(1, "li", "ok", T0 + 3)[0].status is AlarmStatus.CLEARED


# -- misc ------------------------------------------------------------------------------------
def test_every_event_type_is_known(book: AlarmBook) -> None:
    seen: list[Change] = []
    seen += go(book, YEL, T0)
    seen += go(book, ORA, T0 + 1)
    seen += go(book, YEL, T0 + 2)
    seen += [book.acknowledge(1, "li", "ok", T0 + 3), book.add_note(1, "li", "n", T0 + 4)]
    seen += [book.shelve(1, "li", "r", T0 + 10, T0 + 5), book.unshelve(1, "li", "", T0 + 6)]
    seen += go(book, NON, T0 + 7)
    seen += go(book, YEL, T0 + 8)
    seen += book.tick(T0 + 2 * HOUR_MS)
    seen += go(book, NON, T0 + 2 * HOUR_MS)  # escalated to red by the overdues: latched
    seen.append(book.acknowledge(1, "li", "ok", T0 + 2 * HOUR_MS + 1))
    seen.append(book.close(1, "li", "c", T0 + 3 * HOUR_MS))
    assert {c[1].type for c in seen} == EVENT_TYPES


def test_deadlines_are_validated() -> None:
    with pytest.raises(ValueError, match="ack_ms"):
        Deadlines(ack_ms={Level.RED: 0})
    with pytest.raises(ValueError, match="max_tier"):
        Deadlines(max_tier=-1)
    with pytest.raises(ValueError, match="not an alarm level"):
        Deadlines(feedback_ms={Level.NONE: 5})


def test_non_finite_value_keeps_the_last_reading_and_events_carry_none(book: AlarmBook) -> None:
    go(book, YEL, T0, 30.0)
    a, ev = go(book, ORA, T0 + 1, float("nan"))[0]
    assert a.value == 30.0
    assert ev.value is None
    assert "no data" in a.message


def test_out_of_range_level_is_clamped_not_fatal_for_the_batch(book: AlarmBook) -> None:
    ch = book.apply(tr((0, 0, YEL, 30.0, T0), (1, 0, Level.RED, 90.0, T0)), T0)
    bad = tr((2, 0, YEL, 1.0, T0))
    bad.level[0] = 9
    ch += book.apply(bad, T0)
    assert [c[0].level for c in ch] == [YEL, RED, RED]
    assert book.open_counts() == {BLU: 0, YEL: 1, ORA: 0, RED: 2}


def test_load_tolerates_raw_level_and_status_values() -> None:
    raw = Alarm(id=3, enterprise_id="E1", sensor_id="GT-101", device_id="", area="", kind="gas.combustible",
                rule="high", level=4, status="active", value=80.0,  # type: ignore[arg-type]
                raised_at=T0, updated_at=T0, peak_level=4)  # type: ignore[arg-type]
    book = AlarmBook(sensor_of, RULES)
    book.load([raw])
    (a,) = book.open_alarms()
    assert (a.level, a.status) == (RED, AlarmStatus.ACTIVE)
    assert only(go(book, NON, T0 + 1)).extra["latched"] is True
