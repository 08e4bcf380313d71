"""Restart through the real SQLite alarm store: running deadlines, latches and shelving survive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from alerts.lifecycle import HOUR_MS, MINUTE_MS, AlarmBook
from alerts.model import Change
from alerts.transitions import Transitions
from ingest.store.sqlite import SQLiteAlarmStore
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Sensor

T0 = 1_795_459_488_000
SENSORS = [Sensor("E1", f"GT-{i}", "gas.combustible", unit="%LEL", row=i) for i in range(5)]
RULES = ["high"]


def sensor_of(row: int) -> Sensor | None:
    return SENSORS[row] if 0 <= row < len(SENSORS) else None


def at(row: int, level: Level, t: int) -> Transitions:
    return Transitions(np.array([row], np.int32), np.zeros(1, np.int16), np.array([level], np.int8),
                       np.zeros(1, np.int8), np.array([float(level) * 20.0]), np.array([t], np.int64))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteAlarmStore]:
    s = SQLiteAlarmStore(tmp_path / "alarms.sqlite3")
    yield s
    s.close()


def test_restart_from_sqlite_continues_exactly(store: SQLiteAlarmStore) -> None:
    book = AlarmBook(sensor_of, RULES)

    def save(changes: list[Change]) -> list[Change]:
        store.save_changes(changes)
        return changes

    save(book.apply(at(0, Level.YELLOW, T0), T0))  # ack deadline running (1 h)
    save(book.apply(at(1, Level.RED, T0), T0))
    save(book.apply(at(1, Level.NONE, T0 + MINUTE_MS), T0 + MINUTE_MS))  # latched
    save(book.apply(at(2, Level.ORANGE, T0), T0))
    save([book.acknowledge(3, "li", "on site", T0 + MINUTE_MS)])  # feedback deadline running (4 h)
    save(book.apply(at(3, Level.YELLOW, T0), T0))
    save([book.shelve(4, "li", "calibration", T0 + 2 * HOUR_MS, T0 + MINUTE_MS)])
    save(book.apply(at(4, Level.BLUE, T0), T0))
    save(book.apply(at(4, Level.NONE, T0 + 1), T0 + 1))
    save([book.close(5, "li", "blip", T0 + 2)])
    save(book.tick(T0 + 30 * MINUTE_MS))

    again = AlarmBook(sensor_of, RULES, next_id=store.max_alarm_id() + 1)
    again.load(store.load_open_alarms())
    assert [a.to_json() for a in again.open_alarms()] == [a.to_json() for a in book.open_alarms()]

    for t in (T0 + HOUR_MS, T0 + 3 * HOUR_MS, T0 + 5 * HOUR_MS):
        expected = [(a.to_json(), e.to_json()) for a, e in book.tick(t)]
        assert expected  # overdue, shelving expiry and feedback timers all fall in these windows
        assert [(a.to_json(), e.to_json()) for a, e in again.tick(t)] == expected
    latched = again.get(2)
    assert latched is not None
    assert latched.extra["latched"] is True
    assert again.acknowledge(2, "li", "ok", T0 + 6 * HOUR_MS)[0].status is AlarmStatus.CLEARED
    assert again.apply(at(4, Level.YELLOW, T0 + 7 * HOUR_MS), T0 + 7 * HOUR_MS)[0][1].type == "raised"
    assert again.open_alarms()[-1].id == 6


def test_events_saved_together_get_the_ids_the_store_gave_them(store: SQLiteAlarmStore) -> None:
    """save_changes writes a batch at once; each event's id is its row in the store, also
    when one call holds several changes of one alarm and a later call follows."""
    book = AlarmBook(sensor_of, RULES)
    first = book.apply(at(0, Level.YELLOW, T0), T0) + book.apply(at(0, Level.RED, T0 + 1), T0 + 1)
    first += book.apply(at(1, Level.ORANGE, T0 + 2), T0 + 2)
    store.save_changes(first)
    second = book.apply(at(2, Level.BLUE, T0 + 3), T0 + 3)
    store.save_changes(second)
    for alarm, event in first + second:
        stored = {e.id: e for e in store.alarm_events(alarm.id)}
        assert event.id in stored
        assert (stored[event.id].type, stored[event.id].ts_ms) == (event.type, event.ts_ms)
    assert [e.id for _, e in first + second] == list(range(first[0][1].id or 0, (first[0][1].id or 0) + 4))
    saved = store.get_alarm(first[0][0].id)
    assert saved is not None
    assert saved.level is Level.RED  # the later change of the same alarm won
