"""No silent loss: kill -9 of the service under QoS 1, and the InfluxDB store path.

The service acknowledges a QoS 1 message only after its readings are stored, with a
persistent MQTT session, so readings the broker delivered before a SIGKILL are
redelivered on restart; duplicates from redelivery are harmless.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.service import RunningService, plantwatch_serve, wait_for
from tests.servers import Broker, VictoriaMetrics
from tests.store.conftest import samples_by_series

pytestmark = pytest.mark.e2e

CONFIG = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "TT-1"
kind = "dust.hopper_temperature"
"""

N = 3000
T0 = int(time.time() * 1000) - 3_600_000  # an hour ago: inside the accepted past window


def _publisher(broker: Broker) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dur-gw")
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(100)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def _stored_values(svc: RunningService) -> list[float]:
    rows = svc.get(f"/api/v1/readings?enterprise_id=E1&sensor_id=TT-1&start={T0 - 1}&end={T0 + N + 1}&limit=100000")
    return [r["value"] for r in rows]


def test_kill_9_under_qos1_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    pub = _publisher(broker)
    sent = threading.Event()

    def publish_all() -> None:
        for i in range(N):
            pub.publish("plants/E1/GW1/telemetry",
                        json.dumps({"sensor": "TT-1", "ts": T0 + i, "value": float(i)}), qos=1)
            if i % 100 == 0:
                time.sleep(0.1)  # spread the stream over ~3 s so the kill lands mid-stream
        sent.set()

    # the same client id on restart: the broker keeps the persistent session's unacked messages
    same_id = {"PLANTWATCH_MQTT_CLIENT_ID": "plantwatch-kill-test"}
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG, same_id) as svc:
        t = threading.Thread(target=publish_all)
        t.start()
        wait_for(lambda: len(_stored_values(svc)) > 200, 20.0, "some readings stored before the kill")
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait()
        killed_mid_stream = not sent.is_set()
        t.join()
    assert sent.is_set()
    assert killed_mid_stream, "the publisher had finished before the kill: the test proves nothing"
    pub.loop_stop()
    pub.disconnect()
    # restart with the same data dir and client id: the broker redelivers what was not acked
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG, same_id) as svc2:
        values = wait_for(lambda: (v := _stored_values(svc2)) and len(v) >= N and v, 30.0, "all readings stored")
        assert sorted(values) == [float(i) for i in range(N)]


def test_influx_store_path_end_to_end(broker: Broker, vmetrics: VictoriaMetrics, tmp_path: Path) -> None:
    """PLANTWATCH_STORE=influx: readings published over MQTT land in the line-protocol server."""
    env = {"PLANTWATCH_STORE": "influx", "PLANTWATCH_INFLUX_URL": vmetrics.url,
           "PLANTWATCH_INFLUX_TOKEN": "test-token", "PLANTWATCH_INFLUX_ORG": "plantwatch",
           "PLANTWATCH_INFLUX_BUCKET": "plantwatch"}
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG, env):
        pub = _publisher(broker)
        for i in range(50):
            payload = json.dumps({"sensor": "TT-1", "ts": T0 + i * 1000, "value": 20.0 + i})
            pub.publish("plants/E1/GW1/telemetry", payload, qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()

        def exported() -> list[float]:
            urllib.request.urlopen(vmetrics.url + "/internal/force_flush", timeout=5).read()
            q = (f"{vmetrics.url}/api/v1/export?match[]=reading_value&start={T0 // 1000 - 1}"
                 f"&end={T0 // 1000 + 100}")
            out: list[float] = []
            with urllib.request.urlopen(q, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    out.extend(json.loads(line)["values"])
            return out

        values = wait_for(lambda: (v := exported()) and len(v) >= 50 and v, 20.0, "readings exported by the server")
        assert sorted(values) == [20.0 + i for i in range(50)]


TIMER_CONFIG = """
[[enterprise]]
id = "E1"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-1"
kind = "gas.combustible"
params = { delay_on_s = { red = 12 } }
"""
RED_DELAY_MS = 12_000


@pytest.mark.parametrize("store", ["sqlite", "influx"])
def test_kill_9_between_engine_snapshots_keeps_a_running_delay_timer(broker: Broker, tmp_path: Path, store: str,
                                                                     request: pytest.FixtureRequest) -> None:
    """60 %LEL is orange at once and red when held 12 s. The service is killed 3 s into the
    hold, long before its next engine snapshot (the only one was taken at start). The restarted
    service replays the stored readings into the restored engine, so the red comes 12 s after the
    first reading; with the timer lost it could only come 12 s after the first reading seen
    after the restart. With InfluxDB (a real victoria-metrics; the writer thread, as the service
    runs it) the replay comes from the store's local journal."""
    pub = _publisher(broker)
    env = {"PLANTWATCH_MQTT_CLIENT_ID": "plantwatch-timer-test", "PLANTWATCH_SNAPSHOT_INTERVAL_S": "3600",
           "PLANTWATCH_TICK_INTERVAL_MS": "200"}
    vm: VictoriaMetrics | None = None
    if store == "influx":
        vm = request.getfixturevalue("vmetrics")
        env |= {"PLANTWATCH_STORE": "influx", "PLANTWATCH_INFLUX_URL": vm.url, "PLANTWATCH_INFLUX_TOKEN": "t"}
    sent: list[int] = []

    def send() -> None:
        ts = int(time.time() * 1000)
        pub.publish("plants/E1/GW1/telemetry", json.dumps({"sensor": "GT-1", "ts": ts, "value": 60.0}),
                    qos=1).wait_for_publish(5)
        sent.append(ts)

    def stored(svc: RunningService) -> int:
        if vm is not None:  # history reads use Flux, which victoria-metrics does not speak: ask it directly
            got = samples_by_series(vm.url, "reading_value", sent[0], sent[-1] + 1)
            return len(got.get(("E1", "GT-1"), []))
        return len(svc.get(f"/api/v1/readings?enterprise_id=E1&sensor_id=GT-1&start={sent[0]}&end={sent[-1] + 1}"))

    def alarm(svc: RunningService) -> dict[str, object] | None:
        rows = svc.get("/api/v1/alarms?enterprise_id=E1")
        return svc.get(f"/api/v1/alarms/{rows[0]['id']}") if rows else None

    with plantwatch_serve(tmp_path / "svc", broker.url, TIMER_CONFIG, env) as svc:
        while not sent or sent[-1] - sent[0] < 3000:
            send()
            time.sleep(0.25)
        wait_for(lambda: stored(svc) == len(sent), 10.0, "the readings stored (and so acked)")
        first = wait_for(lambda: alarm(svc), 10.0, "the orange alarm")
        assert first["level"] == "orange"
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait()
    killed_at = int(time.time() * 1000)
    with plantwatch_serve(tmp_path / "svc", broker.url, TIMER_CONFIG, env) as svc2:
        assert "caught up with" in svc2.log()

        def red() -> dict[str, object] | None:
            send()
            a = alarm(svc2)
            return a if a is not None and a["level"] == "red" else None

        a = wait_for(red, 30.0, "the red escalation")
    pub.loop_stop()
    pub.disconnect()
    assert a["id"] == first["id"]  # the same alarm escalated, no second one
    [up] = [e for e in a["events"] if e["type"] == "escalated" and e["level"] == "red"]
    t_red = int(up["ts_ms"])
    restarted_first = min(t for t in sent if t > killed_at)
    assert restarted_first + RED_DELAY_MS > sent[0] + RED_DELAY_MS + 2000  # the test can tell the two apart
    assert sent[0] + RED_DELAY_MS <= t_red < sent[0] + RED_DELAY_MS + 1000
