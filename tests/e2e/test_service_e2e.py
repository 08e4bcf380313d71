"""End to end: real Mosquitto, ``plantwatch serve`` as users start it, HTTP + WebSocket.

Issue 2 acceptance: a combustible-gas reading crossing 25 %LEL then 50 %LEL yields a
yellow then an orange alarm (one alarm, escalated), visible over the API and the
WebSocket within 2 s of the crossing reading; back below the hysteresis bound it
clears; malformed payloads are counted and the service keeps ingesting.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import websockets
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.service import RunningService, plantwatch_serve, wait_for
from tests.servers import Broker

pytestmark = pytest.mark.e2e

CONFIG = """
[[enterprise]]
id = "E1"
name = "Test chemical plant"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
area = "tank-farm"
id = "GT-101"
kind = "gas.combustible"
"""


@pytest.fixture
def service(broker: Broker, tmp_path: Path) -> Any:
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG) as svc:
        yield svc


@pytest.fixture
def publisher(broker: Broker) -> Any:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-gateway")
    c.connect(broker.host, broker.port)
    c.loop_start()
    yield c
    c.loop_stop()
    c.disconnect()


def publish(c: mqtt.Client, topic: str, payload: bytes | str, qos: int = 1) -> None:
    c.publish(topic, payload, qos=qos).wait_for_publish(5)


def reading(sensor: str, value: float, ts_ms: int | None = None) -> str:
    return json.dumps({"sensor": sensor, "ts": ts_ms or int(time.time() * 1000), "value": value})


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def next_event(ws: Any, timeout_s: float, rule: str = "high") -> dict[str, Any]:
    """The next event of ``rule`` (other rules, e.g. the rate-of-rise early warning, may interleave)."""
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
        out: dict[str, Any] = json.loads(msg)
        if out["alarm"]["rule"] == rule:
            return out


def threshold_alarms(service: RunningService) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = service.get("/api/v1/alarms?enterprise_id=E1")
    assert {a["rule"] for a in alarms} <= {"high", "rate"}  # the threshold alarm and its early warning
    return [a for a in alarms if a["rule"] == "high"]


async def test_gas_escalation_over_api_and_websocket(service: RunningService, publisher: mqtt.Client) -> None:
    topic = "plants/E1/GW1/telemetry"
    uri = f"ws://127.0.0.1:{service.port}/api/v1/alarms/stream"
    async with websockets.connect(uri) as ws:
        publish(publisher, topic, reading("GT-101", 5.0))
        t0 = time.monotonic()
        publish(publisher, topic, reading("GT-101", 30.0))
        ev = await next_event(ws, 2.0)
        assert time.monotonic() - t0 < 2.0
        assert ev["event"]["type"] == "raised"
        assert ev["alarm"]["level"] == "yellow"
        assert ev["alarm"]["sensor_id"] == "GT-101"
        alarm_id = ev["alarm"]["id"]
        api = threshold_alarms(service)
        assert [(a["id"], a["level"], a["status"]) for a in api] == [(alarm_id, "yellow", "active")]

        t1 = time.monotonic()
        publish(publisher, topic, reading("GT-101", 55.0))
        ev = await next_event(ws, 2.0)
        assert time.monotonic() - t1 < 2.0
        assert ev["event"]["type"] == "escalated"
        assert (ev["alarm"]["id"], ev["alarm"]["level"]) == (alarm_id, "orange")
        api = threshold_alarms(service)
        assert [(a["id"], a["level"], a["kind"]) for a in api] == [(alarm_id, "orange", "gas.combustible")]
        for key in ("id", "enterprise_id", "sensor_id", "kind", "rule", "level", "status", "value",
                    "raised_at", "updated_at"):
            assert key in api[0]
        assert api[0]["value"] == 55.0

        # 24 %LEL is below the 25 threshold but inside the hysteresis band: no clear yet
        publish(publisher, topic, reading("GT-101", 24.0))
        ev = await next_event(ws, 2.0)
        assert ev["event"]["type"] == "deescalated"
        assert ev["alarm"]["level"] == "yellow"
        publish(publisher, topic, reading("GT-101", 2.0))
        ev = await next_event(ws, 2.0)
        assert ev["event"]["type"] == "cleared"
        assert ev["alarm"]["id"] == alarm_id
        assert ev["alarm"]["status"] == "cleared"

    ack = service.post(f"/api/v1/alarms/{alarm_id}/ack", {"by": "Li Wei", "comment": "checked on site"})
    assert ack[0] == 200
    assert ack[1]["acked_by"] == "Li Wei"
    closed = service.post(f"/api/v1/alarms/{alarm_id}/close", {"by": "Li Wei", "comment": "valve resealed"})
    assert closed[0] == 200
    assert closed[1]["status"] == "closed"
    detail = service.get(f"/api/v1/alarms/{alarm_id}")
    assert [e["type"] for e in detail["events"]] == [
        "raised", "escalated", "deescalated", "cleared", "acknowledged", "closed"]
    m = service.metrics()
    assert metric(m, "plantwatch_alarms_raised_total", '{level="yellow"}') >= 1.0


def test_malformed_payloads_are_counted_and_ingest_continues(service: RunningService,
                                                             publisher: mqtt.Client) -> None:
    topic = "plants/E1/GW1/telemetry"
    now = int(time.time() * 1000)
    bad = [
        (topic, b"{not json"),
        (topic, json.dumps({"sensor": "GT-101", "ts": now}).encode()),
        (topic, json.dumps({"sensor": "GT-101", "ts": now, "value": "high"}).encode()),
        (topic, b'{"sensor": "GT-101", "value": NaN}'),
        (topic, json.dumps({"sensor": "GT-101", "ts": now + 86_400_000, "value": 1.0}).encode()),
        (topic, json.dumps({"sensor": "GT-101", "ts": now - 400 * 86_400_000, "value": 1.0}).encode()),
        (topic, b"x" * (300 * 1024)),
        ("plants/E1/telemetry", reading("GT-101", 1.0).encode()),
    ]
    for t, p in bad:
        publish(publisher, t, p)
    # a batch with one bad reading: the good ones still land
    publish(publisher, topic, json.dumps({"ts": now, "readings": [
        {"sensor": "GT-101", "value": 3.5}, {"sensor": "GT-101", "value": None}, {"sensor": "XX-9", "value": 4.5,
                                                                                   "ts": now + 1}]}))

    def rejected_total() -> float:
        text = service.metrics()
        return sum(float(v) for v in re.findall(r"^plantwatch_ingest_rejected_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))

    wait_for(lambda: rejected_total() >= len(bad) + 1, 10.0, "all malformed inputs counted")
    text = service.metrics()
    for reason in ("bad_json", "missing_value", "non_numeric", "ts_future", "ts_past", "oversize", "bad_topic"):
        assert metric(text, "plantwatch_ingest_rejected_total", f'{{reason="{reason}"}}') >= 1, reason
    assert service.proc.poll() is None
    # the service still ingests after all that
    publish(publisher, topic, reading("GT-101", 7.25, now + 5))
    rows = wait_for(lambda: [r for r in service.get(
        f"/api/v1/readings?enterprise_id=E1&sensor_id=GT-101&start={now - 1000}&end={now + 10_000}")
        if r["value"] in (3.5, 7.25)] or None, 10.0, "good readings stored")
    assert sorted(r["value"] for r in rows) == [3.5, 7.25]
    unreg = service.get("/api/v1/sensors/unregistered")
    assert any(u["sensor_id"] == "XX-9" for u in unreg)
    log = service.log()
    assert "bad_json" in log
    assert "plants/E1/GW1/telemetry" in log
