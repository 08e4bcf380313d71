"""End to end over HTTP against ``plantwatch serve`` (real Mosquitto): registry management,
bad API input named by field, alarm filters, downsampled history, OpenAPI, and the
registry (with a production status set over the API) surviving a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.service import plantwatch_serve, wait_for
from tests.servers import Broker

pytestmark = pytest.mark.e2e

CONFIG = """
[[enterprise]]
id = "E1"
"""


def _publish(broker: Broker, topic: str, payload: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="api-test-gateway")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


def _detail(body: Any) -> str:
    return str(body.get("detail"))


def test_registry_management_and_bad_input_over_http(broker: Broker, tmp_path: Path) -> None:
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG) as svc:
        # enterprises: one object or a list
        code, body = svc.post("/api/v1/enterprises", {"id": "E2", "name": "Dust works", "capacity_kw": 800})
        assert code == 201
        assert [e["id"] for e in body] == ["E2"]
        code, body = svc.post("/api/v1/enterprises", [{"id": "E3"}, {"id": "E4", "region": "north"}])
        assert code == 201
        assert [e["id"] for e in body] == ["E3", "E4"]
        code, body = svc.post("/api/v1/enterprises", [{"id": "E5"}, {"id": "E6", "production_status": "closed"}])
        assert code == 422
        assert "production_status" in str(body)
        assert "E5" not in {e["id"] for e in svc.get("/api/v1/enterprises")}

        # sensors: a list is validated whole before anything is added
        good = {"enterprise_id": "E2", "id": "TT-1", "kind": "dust.hopper_temperature", "device_id": "GW2"}
        code, body = svc.post("/api/v1/sensors", [good, {**good, "id": "X-1", "kind": "gas.unobtainium"}])
        assert code == 422
        assert _detail(body).startswith("body[1].kind:")
        code, body = svc.post("/api/v1/sensors", [good, {**good, "id": "P-1", "kind": "dust.pressure_diff",
                                                         "params": {"baseline": "nominal"}}])
        assert code == 422
        assert _detail(body).startswith("body[1].params.baseline:")
        code, body = svc.post("/api/v1/sensors", [good, {**good, "id": "G-9", "enterprise_id": "E9"}])
        assert code == 422
        assert _detail(body).startswith("body[1].enterprise_id:")
        code, body = svc.post("/api/v1/sensors", {**good, "thresholds": {"yellow": "hot"}})
        assert code == 422
        assert any(d["loc"][-1] == "yellow" for d in body["detail"])
        code, body = svc.post("/api/v1/sensors", {**good, "colour": "red"})
        assert code == 422
        assert any(d["loc"][-1] == "colour" for d in body["detail"])
        assert svc.get("/api/v1/sensors?enterprise_id=E2") == []  # nothing from the refused requests

        code, body = svc.post("/api/v1/sensors", good)
        assert code == 201
        assert body[0]["unit"] == "°C"
        assert body[0]["interval_s"] > 0
        code, body = svc.post("/api/v1/sensors", [{**good, "id": "TT-2"}, {**good, "id": "TT-3"}])
        assert code == 201
        assert len(body) == 2
        assert svc.get("/api/v1/sensors/E2/TT-3")["kind"] == "dust.hopper_temperature"
        # listing is paged, in registration order, with the number of matches in a header
        page, headers = svc.get_with_headers("/api/v1/sensors?enterprise_id=E2&limit=2")
        assert [s["id"] for s in page] == ["TT-1", "TT-2"]
        assert headers["x-total-count"] == "3"
        assert [s["id"] for s in svc.get("/api/v1/sensors?enterprise_id=E2&limit=2&offset=2")] == ["TT-3"]
        assert "row" not in page[0]
        code, body = svc.request("GET", "/api/v1/sensors?limit=0")
        assert code == 422
        assert svc.get("/api/v1/enterprises/E2")["sensors"] == 3

        # production status (a suspension order) over PATCH
        code, body = svc.request("PATCH", "/api/v1/enterprises/E2", {"production_status": "suspended"})
        assert code == 200
        assert body["production_status"] == "suspended"
        assert body["name"] == "Dust works"
        code, body = svc.request("PATCH", "/api/v1/enterprises/E2", {"production_status": "paused"})
        assert code == 422
        code, body = svc.request("PATCH", "/api/v1/enterprises/E404", {"name": "x"})
        assert code == 404
        assert "E404" in _detail(body)

        # bad query parameters are named
        code, body = svc.request("GET", "/api/v1/alarms?level=purple")
        assert code == 422
        assert body["detail"][0]["loc"] == ["query", "level"]
        code, body = svc.request("GET", "/api/v1/readings?enterprise_id=E2&sensor_id=TT-1&start=yesterday")
        assert code == 422
        assert _detail(body).startswith("start")

        # OpenAPI
        assert "swagger" in svc.get("/docs").lower()
        paths = svc.get("/openapi.json")["paths"]
        assert {"/api/v1/alarms", "/api/v1/sensors", "/api/v1/enterprises/{enterprise_id}"} <= set(paths)

    # restart on the same data directory: the API's registry changes and the order are kept
    with plantwatch_serve(tmp_path / "svc", broker.url, CONFIG) as svc:
        assert {s["id"] for s in svc.get("/api/v1/sensors?enterprise_id=E2")} == {"TT-1", "TT-2", "TT-3"}
        e2 = svc.get("/api/v1/enterprises/E2")
        assert e2["production_status"] == "suspended"
        assert e2["capacity_kw"] == 800
        assert {e["id"] for e in svc.get("/api/v1/enterprises")} == {"E1", "E2", "E3", "E4"}


def test_alarm_filters_and_downsampled_history(broker: Broker, tmp_path: Path) -> None:
    config = CONFIG + """
[[enterprise]]
id = "E2"

[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-1"
kind = "gas.combustible"

[[sensor]]
enterprise_id = "E2"
device_id = "GW2"
id = "TT-1"
kind = "dust.hopper_temperature"
"""
    now = int(time.time() * 1000)
    with plantwatch_serve(tmp_path / "svc", broker.url, config) as svc:
        # GT-1: one minute of history at 10 s, the last reading at stage 2 (orange)
        series = [{"sensor": "GT-1", "ts": now - 60_000 + i * 10_000, "value": float(v)}
                  for i, v in enumerate([1, 2, 3, 4, 5, 6, 55])]
        _publish(broker, "plants/E1/GW1/telemetry", json.dumps({"readings": series}))
        _publish(broker, "plants/E2/GW2/telemetry", json.dumps({"sensor": "TT-1", "ts": now, "value": 63.0}))

        def high_alarms() -> list[dict[str, Any]]:
            return [a for a in svc.get("/api/v1/alarms") if a["rule"] == "high"]
        wait_for(lambda: len(high_alarms()) == 2, 10.0, "both threshold alarms")

        def rules(q: str) -> set[tuple[str, str]]:
            return {(a["sensor_id"], a["level"]) for a in svc.get("/api/v1/alarms?" + q) if a["rule"] == "high"}
        assert rules("level=orange") == {("GT-1", "orange")}
        assert rules("level=yellow") == {("TT-1", "yellow")}
        assert rules("enterprise_id=E2") == {("TT-1", "yellow")}
        assert rules("status=active") == {("GT-1", "orange"), ("TT-1", "yellow")}
        gt = next(a for a in high_alarms() if a["sensor_id"] == "GT-1")
        code, _ = svc.post(f"/api/v1/alarms/{gt['id']}/ack", {"by": "Li Wei", "comment": "crew sent"})
        assert code == 200
        assert rules("status=acknowledged") == {("GT-1", "orange")}
        assert rules("status=active") == {("TT-1", "yellow")}
        assert rules("status=open&enterprise_id=E1") == {("GT-1", "orange")}
        assert rules("status=closed") == set()

        # alarms are raised when readings are evaluated; the writer process stores them a moment later
        def history() -> list[dict[str, Any]] | None:
            got: list[dict[str, Any]] = svc.get(
                f"/api/v1/readings?enterprise_id=E1&sensor_id=GT-1&start={now - 120_000}&end={now + 1}")
            return got if len(got) >= 7 else None
        raw = wait_for(history, 10.0, "the history stored")
        assert [r["value"] for r in raw] == [1, 2, 3, 4, 5, 6, 55]
        agg = svc.get(f"/api/v1/readings?enterprise_id=E1&sensor_id=GT-1&start={now - 60_000}&end={now + 1}"
                      "&window_s=30")
        assert sum(w["count"] for w in agg) == 7
        assert max(w["max"] for w in agg) == 55
        assert min(w["min"] for w in agg) == 1
        # the readings were written by the service's writer process, which health reports
        writer = svc.get("/api/v1/healthz")["store_writer"]
        assert writer["ready"] is True
        assert isinstance(writer["pid"], int)
        assert (writer["restarts"], writer["queued_readings"]) == (0, 0)
        assert "plantwatch_store_writer_queued_readings 0.0" in svc.metrics()


def test_maintenance_and_removal_over_http(broker: Broker, tmp_path: Path) -> None:
    config = CONFIG + """
[[sensor]]
enterprise_id = "E1"
device_id = "GW1"
id = "GT-1"
kind = "gas.combustible"
"""
    now = int(time.time() * 1000)
    base = "/api/v1/sensors/E1/GT-1"
    with plantwatch_serve(tmp_path / "svc", broker.url, config) as svc:
        code, body = svc.post(base + "/out-of-service", {"by": "Li Wei", "duration_s": 3600})
        assert code == 422
        assert any(d["loc"][-1] == "reason" for d in body["detail"])
        code, body = svc.post("/api/v1/sensors/E1/GT-9/out-of-service",
                              {"by": "Li Wei", "reason": "calibration", "duration_s": 3600})
        assert code == 404
        assert "E1/GT-9" in _detail(body)
        code, body = svc.post(base + "/out-of-service", {"by": "  ", "reason": "calibration", "duration_s": 3600})
        assert code == 422
        assert _detail(body).startswith("by:")
        code, body = svc.post(base + "/in-service", {"by": "Li Wei", "comment": "done"})
        assert code == 409
        assert "in service" in _detail(body)
        code, body = svc.post(base + "/out-of-service", {"by": "Li Wei", "reason": "calibration", "duration_s": 3600})
        assert code == 200
        assert body["out_of_service"]["by"] == "Li Wei"
        assert body["out_of_service"]["until_ms"] - body["out_of_service"]["since_ms"] == 3_600_000

        # calibration gas while held: stored, counted, not alarmed
        _publish(broker, "plants/E1/GW1/telemetry", json.dumps({"sensor": "GT-1", "ts": now, "value": 55.0}))
        wait_for(lambda: "plantwatch_ingest_out_of_service_readings_total 1.0" in svc.metrics(), 10.0,
                 "the held reading counted")
        # counted when evaluated; stored when the writer process commits it, a moment later
        query = f"/api/v1/readings?enterprise_id=E1&sensor_id=GT-1&start={now - 1}&end={now + 1}"
        stored = wait_for(lambda: svc.get(query), 10.0, "the held reading stored")
        assert [r["value"] for r in stored] == [55.0]
        assert {a["rule"] for a in svc.get("/api/v1/alarms")} == {"out_of_service"}

        code, body = svc.post(base + "/in-service", {"by": "Li Wei", "comment": "calibrated"})
        assert code == 200
        assert body["out_of_service"] is None
        _publish(broker, "plants/E1/GW1/telemetry", json.dumps({"sensor": "GT-1", "ts": now + 1000, "value": 55.0}))
        wait_for(lambda: any(a["rule"] == "high" for a in svc.get("/api/v1/alarms")), 10.0, "the high alarm")

        code, body = svc.post(base + "/remove", {"by": "Li Wei", "reason": " "})
        assert code == 422
        assert _detail(body).startswith("reason:")
        code, body = svc.post(base + "/remove", {"by": "Li Wei", "reason": "reactor dismantled"})
        assert code == 200
        assert body["out_of_service"]["until_ms"] is None
        code, body = svc.post(base + "/remove", {"by": "Li Wei", "reason": "again"})
        assert code == 409
        assert svc.get("/api/v1/sensors?enterprise_id=E1") == []
        alarms = {a["rule"]: a for a in svc.get("/api/v1/alarms")}
        assert alarms["high"]["status"] == "cleared"
        assert alarms["removed"]["status"] == "cleared"

    with plantwatch_serve(tmp_path / "svc", broker.url, config) as svc:  # the config file still lists GT-1
        (gt1,) = svc.get("/api/v1/sensors?enterprise_id=E1&removed=true")
        assert gt1["out_of_service"]["reason"] == "reactor dismantled"
        code, body = svc.post("/api/v1/sensors", {"enterprise_id": "E1", "id": "GT-1", "kind": "gas.combustible",
                                                  "device_id": "GW1"})
        assert code == 201
        assert body[0]["out_of_service"] is None  # registered again: back in service
