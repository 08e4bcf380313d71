"""The service raises a system alarm when the InfluxDB outage spool nears full, and clears it
once the spool has drained (real victoria-metrics stopped and restarted, real spool files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.store import BufferFull, InfluxReadingStore
from plantwatch.clock import FakeClock
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Registry
from plantwatch.service import BUFFER_RULE, BUFFER_SOURCE, Service
from plantwatch.settings import Settings
from tests.store._util import grid_batch
from tests.store.conftest import RestartableVM

pytestmark = pytest.mark.e2e

T0 = 1_795_459_488_000


async def test_buffer_near_full_alarm_raised_then_cleared(vm_restartable: RestartableVM, tmp_path: Path) -> None:
    vm = vm_restartable
    clock = FakeClock(T0)
    settings = Settings(store="influx", influx_url=vm.url, data_dir=tmp_path / "data", buffer_max_bytes=60_000)
    svc = Service(settings, clock=clock, registry=Registry())
    store = svc.readings
    assert isinstance(store, InfluxReadingStore)
    try:
        svc.tick()
        assert svc.book.open_alarms() == []  # empty spool: nothing to say
        vm.stop()  # InfluxDB goes away; readings pile up in the spool
        for k in range(1000):
            try:
                store.write_readings(grid_batch(20, 5, T0 + k * 5_000, seed=k))
            except BufferFull:
                break
            if store.buffer_near_full:
                break
        assert store.buffer_near_full
        clock.advance(1000)
        svc.tick()
        [alarm] = svc.book.open_alarms()
        assert (alarm.sensor_id, alarm.rule, alarm.kind) == (BUFFER_SOURCE, BUFFER_RULE, "system")
        assert alarm.level >= Level.ORANGE
        assert alarm.value >= 80.0  # percent of buffer_max_bytes in use
        assert svc.metrics.registry.get_sample_value("plantwatch_store_buffer_bytes") == store.buffer_bytes
        stored = svc.alarms.get_alarm(alarm.id)
        assert stored is not None  # persisted like any alarm
        assert stored.rule == BUFFER_RULE

        vm.start()
        store.drain()
        assert store.buffer_bytes == 0
        clock.advance(1000)
        svc.tick()
        [after] = svc.book.open_alarms()
        assert after.id == alarm.id
        assert after.extra["cond_level"] == 0  # the condition ended
        if alarm.level is Level.RED:  # red latches until acknowledged (docs/lifecycle.md)
            assert after.status is AlarmStatus.ACTIVE
            assert after.extra["latched"]
        else:
            assert after.status is AlarmStatus.CLEARED
    finally:
        await svc.stop()
