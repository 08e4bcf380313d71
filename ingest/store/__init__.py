"""Storage backends for readings and alarms (see docs/storage.md).

``open_stores(settings, registry)`` is the only entry point the service needs: readings
go to SQLite or to InfluxDB (with the durable outage spool), alarms always to SQLite.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from alerts.model import Alarm, AlarmEvent, Change
from ingest.store.base import (
    AggRow,
    AlarmStore,
    BufferFull,
    ReadingRow,
    ReadingStore,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    UnregisteredSensor,
)
from ingest.store.sqlite import SQLiteAlarmStore, SQLiteReadingStore, open_sqlite
from plantwatch.domain import AlarmStatus, Level

if TYPE_CHECKING:  # annotations only: the writer process imports this package and should start fast
    from ingest.store.influx import InfluxReadingStore
    from plantwatch.metrics import Metrics
    from plantwatch.registry import Registry
    from plantwatch.settings import Settings

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """The InfluxDB backend is imported on first use: influxdb-client takes ~0.4 s to import,
    which the SQLite writer process (``ingest.store.writer``) should not pay at start."""
    if name == "InfluxReadingStore":
        from ingest.store import influx

        return getattr(influx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

class MirroredAlarmStore:
    """SQLite alarm store that also appends every saved event to InfluxDB (``alarm_event``).

    SQLite is the record; the InfluxDB copy is for dashboards. ``save_changes`` returns once
    SQLite has committed; a mirror thread sends the copy, in order, through the same
    write-or-spool path as readings, so an alarm save never waits for an HTTP request. If
    even the spool refuses, the copy is dropped with a log line; copies still queued when
    the process is killed are lost from InfluxDB only (the alarms are in SQLite).
    :meth:`flush` waits until every queued copy was handed to InfluxDB or its spool.
    """

    def __init__(self, alarms: SQLiteAlarmStore, influx: InfluxReadingStore) -> None:
        self._alarms = alarms
        self._influx = influx
        self._queue: queue.Queue[list[Change] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._mirror, name="alarm-mirror", daemon=True)
        self._thread.start()

    def save_changes(self, changes: list[Change]) -> None:
        self._alarms.save_changes(changes)
        if changes:
            self._queue.put(list(changes))

    def _mirror(self) -> None:
        while True:
            changes = self._queue.get()
            try:
                if changes is None:
                    return
                self._influx.write_alarm_events(changes)
            except StoreError as exc:
                log.error("alarm events not copied to InfluxDB: %s", exc)
            except Exception:  # the mirror thread must outlive anything one copy does
                log.exception("alarm events not copied to InfluxDB")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Block until every copy queued so far was written to InfluxDB or spooled (returns at
        once after :meth:`close`, whose thread has sent what it will)."""
        if self._thread.is_alive():
            self._queue.join()

    def list_alarms(self, enterprise_id: str | None = None, status: AlarmStatus | None = None,
                    level: Level | None = None, limit: int = 1000, offset: int = 0) -> list[Alarm]:
        return self._alarms.list_alarms(enterprise_id, status, level, limit, offset)

    def get_alarm(self, alarm_id: int) -> Alarm | None:
        return self._alarms.get_alarm(alarm_id)

    def alarm_events(self, alarm_id: int) -> list[AlarmEvent]:
        return self._alarms.alarm_events(alarm_id)

    def load_open_alarms(self) -> list[Alarm]:
        return self._alarms.load_open_alarms()

    def max_alarm_id(self) -> int:
        return self._alarms.max_alarm_id()

    def save_snapshot(self, name: str, data: bytes) -> None:
        self._alarms.save_snapshot(name, data)

    def load_snapshot(self, name: str) -> bytes | None:
        return self._alarms.load_snapshot(name)

    def close(self) -> None:
        """Send the queued copies (up to 30 s), then close the SQLite store."""
        self._queue.put(None)
        self._thread.join(30.0)
        self._alarms.close()


def open_stores(settings: Settings, registry: Registry | None = None, *,
                metrics: Metrics | None = None) -> tuple[ReadingStore, AlarmStore]:
    """The reading store chosen by ``settings.store`` and the alarm store (SQLite), under ``settings.data_dir``.

    With ``store == "influx"``: ``settings.influx_url/token/org/bucket``; the spool bound is
    ``settings.buffer_max_bytes``. ``registry`` gives
    the kind/area tags; ``metrics`` (optional) receives buffer bytes, written readings and
    store errors.
    """
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    if settings.store == "influx":
        from ingest.store.influx import open_influx

        alarms = SQLiteAlarmStore(data_dir / "alarms.sqlite3")
        influx = open_influx(settings.influx_url, settings.influx_token, settings.influx_org, settings.influx_bucket,
                             data_dir, registry=registry, buffer_max_bytes=settings.buffer_max_bytes, metrics=metrics)
        return influx, MirroredAlarmStore(alarms, influx)
    readings, alarms = open_sqlite(data_dir)
    return readings, alarms


__all__ = [
    "AggRow",
    "AlarmStore",
    "BufferFull",
    "InfluxReadingStore",
    "MirroredAlarmStore",
    "ReadingRow",
    "ReadingStore",
    "SQLiteAlarmStore",
    "SQLiteReadingStore",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "UnregisteredSensor",
    "open_sqlite",
    "open_stores",
]
