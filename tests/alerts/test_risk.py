"""Enterprise risk colour (DOMAIN.md rule) from crafted alarm sets."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.model import Alarm
from alerts.risk import DAY_MS, enterprise_colour, enterprise_colours
from plantwatch.domain import AlarmStatus, Level

NOW = 1_795_459_488_000
ACT, ACK, CLR, CLO = AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED, AlarmStatus.CLEARED, AlarmStatus.CLOSED


def alarm(level: Level, status: AlarmStatus = ACT, *, ent: str = "E1", raised: int = NOW - 1000,
          peak: Level | None = None, **extra: Any) -> Alarm:
    return Alarm(id=1, enterprise_id=ent, sensor_id="S", device_id="", area="", kind="gas.combustible",
                 rule="high", level=level, status=status, value=0.0, raised_at=raised, updated_at=raised,
                 peak_level=peak if peak is not None else level, extra=dict(extra))


def test_no_alarms_is_blue() -> None:
    assert enterprise_colour([], NOW) is Level.BLUE


@pytest.mark.parametrize(("alarms", "colour"), [
    ([alarm(Level.BLUE)], Level.BLUE),
    ([alarm(Level.YELLOW), alarm(Level.BLUE)], Level.YELLOW),
    ([alarm(Level.ORANGE, ACK), alarm(Level.YELLOW)], Level.ORANGE),
    ([alarm(Level.RED), alarm(Level.YELLOW)], Level.RED),
    ([alarm(Level.RED, ACK)], Level.RED),
])
def test_worst_open_alarm_sets_the_colour(alarms: list[Alarm], colour: Level) -> None:
    assert enterprise_colour(alarms, NOW) is colour


def test_cleared_and_closed_alarms_are_not_open_risk() -> None:
    alarms = [alarm(Level.RED, CLO, raised=NOW - 2 * DAY_MS), alarm(Level.YELLOW, CLR)]
    assert enterprise_colour(alarms, NOW) is Level.BLUE
    assert enterprise_colour(alarms, NOW, include_cleared=True) is Level.YELLOW


def test_three_orange_within_24_h_make_red_even_if_closed() -> None:
    two = [alarm(Level.ORANGE, CLO), alarm(Level.ORANGE, CLR)]
    assert enterprise_colour(two, NOW) is Level.BLUE
    three = [*two, alarm(Level.YELLOW, CLO, peak=Level.RED)]  # reached red, counts as orange or above
    assert enterprise_colour(three, NOW) is Level.RED


def test_orange_older_than_24_h_does_not_count() -> None:
    alarms = [alarm(Level.ORANGE, CLO, raised=NOW - DAY_MS - 1) for _ in range(3)]
    assert enterprise_colour(alarms, NOW) is Level.BLUE
    alarms[0] = alarm(Level.ORANGE, CLO, raised=NOW - DAY_MS + 1)
    assert enterprise_colour(alarms, NOW) is Level.BLUE
    assert enterprise_colour(alarms, NOW, window_ms=2 * DAY_MS) is Level.RED


def test_orange_time_comes_from_when_the_alarm_reached_orange() -> None:
    old_yellow_later_orange = alarm(Level.ORANGE, CLO, raised=NOW - 3 * DAY_MS, orange_at=NOW - 60_000)
    alarms = [old_yellow_later_orange, alarm(Level.ORANGE, CLO), alarm(Level.ORANGE, CLO)]
    assert enterprise_colour(alarms, NOW) is Level.RED


def test_colours_per_enterprise() -> None:
    alarms = [alarm(Level.RED, ent="E1"), alarm(Level.YELLOW, ent="E2"), alarm(Level.BLUE, CLO, ent="E3")]
    assert enterprise_colours(alarms, NOW) == {"E1": Level.RED, "E2": Level.YELLOW, "E3": Level.BLUE}


def test_alarm_book_records_when_orange_was_reached() -> None:
    import numpy as np

    from alerts.lifecycle import AlarmBook
    from alerts.transitions import Transitions
    from plantwatch.registry import Sensor

    sensor = Sensor("E1", "GT-1", "gas.combustible", row=0)
    book = AlarmBook(lambda row: sensor, ["high"])

    def at(level: Level, t: int) -> None:
        book.apply(Transitions(np.zeros(1, np.int32), np.zeros(1, np.int16), np.array([level], np.int8),
                               np.zeros(1, np.int8), np.array([1.0]), np.array([t], np.int64)), t)

    at(Level.YELLOW, NOW - 3 * DAY_MS)
    book.acknowledge(1, "li", "ok", NOW - 3 * DAY_MS)
    at(Level.ORANGE, NOW - 1000)
    (a,) = book.open_alarms()
    assert a.extra["orange_at"] == NOW - 1000
    assert enterprise_colour([a, alarm(Level.ORANGE, CLO), alarm(Level.ORANGE, CLO)], NOW) is Level.RED
