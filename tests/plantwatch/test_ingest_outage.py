"""Losing our own broker is one outage, not a deadman alarm per sensor: a running service
over a real Mosquitto that is stopped and started again, with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from plantwatch.registry import Enterprise, Registry, Sensor
from plantwatch.service import Service
from plantwatch.settings import Settings
from tests.servers import free_port, mosquitto

T0 = 1_795_459_200_000
S = 1000
MIN = 60 * S


async def _until(pred: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll a real server's state (bounded; not a clock substitute: the service's clock is injected)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _deadman(svc: Service) -> list[str]:
    return [a.sensor_id for a in svc.book.open_alarms() if a.rule == "deadman"]


async def test_a_broker_outage_pauses_the_deadman_and_it_counts_again_from_the_return(tmp_path: Path) -> None:
    port = free_port()
    reg = Registry()
    reg.upsert_enterprise(Enterprise(id="E1"))
    for sid in ("GT-1", "GT-2"):
        reg.upsert_sensor(Sensor("E1", sid, "gas.combustible", device_id="GW1", interval_s=5.0))
    now = [T0]
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=f"mqtt://127.0.0.1:{port}", store_writer="inline",
                        tick_interval_ms=3_600_000)  # the test ticks; the ticker stays out of the way
    with mosquitto(tmp_path / "mq", port):
        svc = Service(settings, clock=lambda: now[0], registry=reg)
        await svc.start()
        try:
            await _until(lambda: svc.pipeline.connected, "the first connection")
            svc.tick()
        except BaseException:
            await svc.stop()
            raise
    try:  # the broker is gone
        await _until(lambda: not svc.pipeline.connected, "the session to drop")
        for step in (1 * MIN, 40 * MIN):  # far past 3 x 5 s, and past the 30 min of a yellow
            now[0] = T0 + step
            svc.tick()
            assert _deadman(svc) == []
        assert svc.health()["status"] == "degraded"  # the outage is visible where it belongs
        with mosquitto(tmp_path / "mq", port):  # back on the same port
            await _until(lambda: svc.pipeline.connected, "the reconnection")
            back = T0 + 41 * MIN
            now[0] = back
            svc.tick()
            now[0] = back + 15 * S
            svc.tick()
            assert _deadman(svc) == []  # three intervals from the return have not passed
            now[0] = back + 16 * S
            svc.tick()
            assert sorted(_deadman(svc)) == ["GT-1", "GT-2"]  # and then the silent sensors alarm again
    finally:
        await svc.stop()
