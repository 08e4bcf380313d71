"""Storage backends for readings and alarms (see docs/storage.md)."""

from __future__ import annotations

from ingest.store.base import (
    AggRow,
    AlarmStore,
    BufferFull,
    ReadingRow,
    ReadingStore,
    StoreError,
    StoreUnavailable,
    UnregisteredSensor,
)
from ingest.store.sqlite import SQLiteAlarmStore, SQLiteReadingStore, open_sqlite
from plantwatch.registry import Registry
from plantwatch.settings import Settings


def open_stores(settings: Settings, registry: Registry | None = None) -> tuple[ReadingStore, AlarmStore]:
    """The reading store chosen by ``settings.store`` and the (always SQLite) alarm store."""
    readings, alarms = open_sqlite(settings.data_dir)
    return readings, alarms


__all__ = [
    "AggRow",
    "AlarmStore",
    "BufferFull",
    "ReadingRow",
    "ReadingStore",
    "SQLiteAlarmStore",
    "SQLiteReadingStore",
    "StoreError",
    "StoreUnavailable",
    "UnregisteredSensor",
    "open_sqlite",
    "open_stores",
]
