"""InfluxDB backend without InfluxDB: line protocol, Flux construction, retries, spool fallback.

Transport errors are checked against a real loopback HTTP server; the write/spool logic
uses an in-memory sink (tier 2: adapter with a fake), the VictoriaMetrics tests cover the rest.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from influxdb_client.client._base import _BaseQueryApi

from alerts.model import Alarm, AlarmEvent
from ingest.store.base import AggRow, BufferFull, ReadingRow, StoreError, StoreRejected, StoreUnavailable
from ingest.store.buffer import Spool
from ingest.store.influx import (
    FLUX_AGG,
    FLUX_RAW,
    Backoff,
    InfluxHttp,
    InfluxReadingStore,
    LineBuilder,
    alarm_event_lines,
    escape_tag,
    flux_aggregate,
    flux_raw,
    parse_retry_after,
    rows_from_aggregate,
    rows_from_raw,
)
from plantwatch.domain import AlarmStatus, Level
from plantwatch.registry import Enterprise, Registry, Sensor
from tests.store._util import grid_batch, make_batch

T0 = 1_795_459_488_000


# -- line protocol ----------------------------------------------------------------------


def test_escape_tag_values() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("line\nbreak\ttab") == r"line\nbreak\ttab"
    assert escape_tag("plain-ID_01.x") == "plain-ID_01.x"


def _registry() -> Registry:
    reg = Registry()
    reg.upsert_enterprise(Enterprise("E1"))
    reg.upsert_sensor(Sensor("E1", "GT-101", "gas.combustible", device_id="GW1", area="tank farm"))
    reg.upsert_sensor(Sensor("E1", "TT-201", "dust.hopper_temperature", device_id="GW1", area=""))
    return reg


def test_lines_exact_with_registry_tags_and_unregistered() -> None:
    reg = _registry()
    b = make_batch(["E1", "E1", "E1"], ["GW1", "GW1", "GW 9"], ["GT-101", "TT-201", "X,1"],
                   [T0, T0 + 1, T0 + 2], [18.5, 61.2, 1e-300], rows=[0, 1, -1], ts_source=[0, 1, 2])
    lines = LineBuilder(registry=reg).build(b).decode().splitlines()
    assert lines == [
        r"reading,area=tank\ farm,device=GW1,enterprise=E1,kind=gas.combustible,sensor=GT-101 "
        f"value=18.5,ts_source=0i {T0}",
        f"reading,device=GW1,enterprise=E1,kind=dust.hopper_temperature,sensor=TT-201 value=61.2,ts_source=1i {T0 + 1}",
        rf"reading,device=GW\ 9,enterprise=E1,sensor=X\,1 value=1e-300,ts_source=2i {T0 + 2}",
    ]


def test_line_values_round_trip_exactly() -> None:
    rng = np.random.default_rng(3)
    b = grid_batch(50, 40, T0)
    b.value[:] = rng.normal(0, 1e6, len(b)) * 10.0 ** rng.integers(-300, 300, len(b))
    text = LineBuilder(lambda row: ("gas.toxic", "A")).build(b).decode()
    lines = text.splitlines()
    assert len(lines) == len(b)
    got = np.array([float(ln.split(" value=")[1].split(",")[0]) for ln in lines])
    assert np.array_equal(got, b.value)
    assert [int(ln.rsplit(" ", 1)[1]) for ln in lines] == b.ts_ms.tolist()


def test_tag_cache_follows_registry_changes_and_device_moves() -> None:
    reg = _registry()
    lb = LineBuilder(registry=reg)
    b = make_batch(["E1"], ["GW1"], ["GT-101"], [T0], [1.0], rows=[0])
    assert b"area=tank\\ farm" in lb.build(b)
    reg.upsert_sensor(Sensor("E1", "GT-101", "gas.combustible", device_id="GW1", area="loading bay"))
    assert b"area=loading\\ bay" in lb.build(b)
    moved = make_batch(["E1"], ["GW2"], ["GT-101"], [T0], [1.0], rows=[0])
    assert b"device=GW2" in lb.build(moved)


def test_alarm_event_lines() -> None:
    a = Alarm(id=7, enterprise_id="E1", sensor_id="GT-101", device_id="GW1", area="tank farm",
              kind="gas.combustible", rule="high", level=Level.ORANGE, status=AlarmStatus.ACKNOWLEDGED, value=55.0,
              raised_at=T0, updated_at=T0)
    e = AlarmEvent(7, T0 + 5, "acknowledged", Level.ORANGE, Level.YELLOW, AlarmStatus.ACKNOWLEDGED,
                   value=55.0, by='Wang "Li"', comment="on site\\ok")
    assert alarm_event_lines([(a, e)]).decode() == (
        r"alarm_event,alarm_id=7,area=tank\ farm,enterprise=E1,kind=gas.combustible,level=orange,rule=high,"
        r'sensor=GT-101,type=acknowledged level_code=3i,prev_level_code=2i,status="acknowledged",value=55.0,'
        r'by="Wang \"Li\"",comment="on site\\ok" ' + f"{T0 + 5}\n")


# -- retries ----------------------------------------------------------------------------


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    b = Backoff(base_s=0.5, factor=2.0, cap_s=10.0, jitter=0.2)
    assert [b.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert b.delay(1, rand=0.0) == pytest.approx(0.8)
    assert b.delay(1, rand=0.999999) == pytest.approx(1.2, rel=1e-5)
    assert b.delay(3, retry_after_s=42.0) == 42.0  # the server's word wins over the schedule
    assert b.delay(0, retry_after_s=10_000.0) == b.max_retry_after_s


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now_s=now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now_s=now) == 0.0


class _Handler(BaseHTTPRequestHandler):
    status = 204
    delay_s = 0.0
    headers_out: dict[str, str] = {}  # noqa: RUF012
    bodies: list[bytes] = []  # noqa: RUF012

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(n)
        type(self).bodies.append(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw)
        if type(self).delay_s:
            time.sleep(type(self).delay_s)  # a slow server (the test itself does not sleep)
        self.send_response(type(self).status)
        for k, v in type(self).headers_out.items():
            self.send_header(k, v)
        body = b'{"code":"x","message":"nope"}' if type(self).status >= 300 else b""
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"status": 204, "delay_s": 0.0, "headers_out": {}, "bodies": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_write_sends_gzip_ms_and_maps_errors(http_server: tuple[str, type[_Handler]]) -> None:
    url, h = http_server
    sink = InfluxHttp(url, "tok", "org", "bkt", timeout_ms=2000)
    body = b"reading,sensor=S value=1.0,ts_source=0i 1\n"
    sink.write(gzip.compress(body))
    assert h.bodies == [body]
    h.status, h.headers_out = 429, {"Retry-After": "7"}
    with pytest.raises(StoreUnavailable) as ei:
        sink.write(gzip.compress(body))
    assert ei.value.status == 429
    assert ei.value.retry_after_s == 7.0
    h.status, h.headers_out = 503, {}
    with pytest.raises(StoreUnavailable) as ei:
        sink.write(gzip.compress(body))
    assert ei.value.retry_after_s is None
    h.status = 400
    with pytest.raises(StoreRejected) as er:
        sink.write(gzip.compress(body))
    assert er.value.status == 400
    sink.close()


def test_http_write_connection_refused_is_unavailable() -> None:
    from tests.servers import free_port
    sink = InfluxHttp(f"http://127.0.0.1:{free_port()}", "tok", "org", "bkt", timeout_ms=2000)
    with pytest.raises(StoreUnavailable):
        sink.write(gzip.compress(b"x v=1 1\n"))
    sink.close()


# -- Flux construction ------------------------------------------------------------------

HOSTILE = ['") |> drop(columns: ["_value"]) //', 'a" or r.sensor != "', "\\", "东方 化工 1号"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_flux_raw_keeps_input_out_of_the_query_text(hostile: str) -> None:
    q, params = flux_raw("bkt", hostile, hostile, T0, T0 + 60_000, 500)
    assert q == FLUX_RAW  # constant text: input can never change the program
    assert params == {"pw_bucket": "bkt", "pw_enterprise": hostile, "pw_sensor": hostile,
                      "pw_start": datetime(2026, 11, 23, 18, 44, 48, tzinfo=UTC),
                      "pw_stop": datetime(2026, 11, 23, 18, 45, 48, tzinfo=UTC), "pw_limit": 500}
    # what the client sends: `option pw_sensor = <StringLiteral>` in the extern AST
    ast = _BaseQueryApi._build_flux_ast(params)
    lit = {st.assignment.id.name: st.assignment.init for st in ast.body}
    assert lit["pw_sensor"].type == "StringLiteral"
    assert lit["pw_sensor"].value == hostile
    assert lit["pw_start"].type == "DateTimeLiteral"
    assert lit["pw_start"].value == "2026-11-23T18:44:48.000000000Z"
    assert lit["pw_limit"].type == "IntegerLiteral"
    for name in params:
        assert name in q


@pytest.mark.parametrize(("window_ms", "micros"), [(1, 1000), (60_000, 60_000_000), (86_400_000, 86_400_000_000)])
def test_flux_aggregate_parameters(window_ms: int, micros: int) -> None:
    q, params = flux_aggregate("bkt", "E1", "GT-101", T0 + 7, T0 + 3_600_000, window_ms)
    assert q == FLUX_AGG
    assert params["pw_every"] == timedelta(milliseconds=window_ms)
    assert params["pw_start"] == datetime(2026, 11, 23, 18, 44, 48, 7000, tzinfo=UTC)
    ast = _BaseQueryApi._build_flux_ast(params)
    every = next(st.assignment.init for st in ast.body if st.assignment.id.name == "pw_every")
    assert every.type == "DurationLiteral"
    assert (every.values[0].magnitude, every.values[0].unit) == (micros, "us")
    for fn in ("mean", "min", "max", "count", 'timeSrc: "_start"', "createEmpty: false"):
        assert fn in q


def test_flux_aggregate_rejects_non_positive_window() -> None:
    with pytest.raises(StoreError):
        flux_aggregate("b", "E", "S", 0, 1, 0)


def test_result_rows_from_flux_records() -> None:
    t = datetime(2026, 11, 23, 18, 44, 48, 123000, tzinfo=UTC)
    assert rows_from_raw([{"_time": t, "value": 1.5, "ts_source": 2}]) == [ReadingRow(T0 + 123, 1.5, 2)]
    # a window clipped by the range start is labelled with the range start: re-aligned to the grid
    recs: list[dict[str, Any]] = [{"_time": t, "mean": 2.0, "min": 1.0, "max": 3.0, "count": 3.0},
            {"_time": t + timedelta(minutes=1), "mean": None, "min": None, "max": None, "count": None}]
    base = (T0 + 123) // 60_000 * 60_000
    assert rows_from_aggregate(recs, 60_000) == [AggRow(base, 2.0, 1.0, 3.0, 3)]


# -- write path with an in-memory sink --------------------------------------------------


class FakeSink:
    """Records delivered bodies; ``fail`` makes writes raise the given error."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.fail: StoreError | None = None
        self.calls = 0

    def write(self, body_gz: bytes, timeout_ms: int | None = None) -> None:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        self.bodies.append(gzip.decompress(body_gz))

    def close(self) -> None:
        pass


def _ts(sink: FakeSink) -> list[int]:
    return [int(ln.rsplit(b" ", 1)[1]) for body in sink.bodies for ln in body.splitlines()]


def test_down_server_spools_in_order_and_drain_delivers_in_order(tmp_path: Path) -> None:
    sink = FakeSink()
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 20), background=False)
    store.write_readings(grid_batch(2, 1, T0))
    assert store.direct_writes == 1
    sink.fail = StoreUnavailable("influx", "write", "down")
    for k in range(1, 4):
        store.write_readings(grid_batch(2, 1, T0 + k * 1000))
    assert store.spooled_writes == 3
    assert store.buffer_bytes > 0
    sink.fail = None
    store.write_readings(grid_batch(2, 1, T0 + 4000))  # backlog exists: spooled behind it, not sent first
    assert store.spooled_writes == 4
    assert store.drain() == 4
    assert _ts(sink) == [T0 + k * 1000 for k in range(5) for _ in range(2)]
    assert store.buffer_bytes == 0
    store.write_readings(grid_batch(2, 1, T0 + 5000))  # back to direct writes
    assert store.direct_writes == 2
    store.close()


def test_full_spool_refuses_the_batch(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.fail = StoreUnavailable("influx", "write", "down")
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 2000), background=False)
    n_ok = 0
    refused: BufferFull | None = None
    for k in range(100):
        try:
            store.write_readings(grid_batch(5, 1, T0 + k * 1000, seed=k))
        except BufferFull as exc:
            refused = exc
            break
        n_ok += 1
    assert refused is not None
    assert 0 < n_ok < 100
    assert refused.max_bytes == 2000
    assert store.buffer_near_full
    held = store.buffer_bytes
    sink.fail = None
    assert store.drain() == n_ok  # everything accepted before the refusal is delivered, nothing else
    assert len(_ts(sink)) == 5 * n_ok
    assert held > 0.8 * 2000
    store.close()


def test_rejected_record_is_quarantined_not_blocking(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.fail = StoreUnavailable("influx", "write", "down")
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 20), background=False)
    store.write_readings(grid_batch(1, 1, T0))
    store.write_readings(grid_batch(1, 1, T0 + 1000))
    sink.fail = StoreRejected("influx", "write", "bad", status=400)
    store.drain()  # the head record is refused for good: moved aside
    assert store.rejected_records == 2
    assert len(list((tmp_path / "spool" / "rejected").iterdir())) == 2
    assert store.buffer_bytes == 0
    store.close()


def test_drainer_thread_waits_retry_after_then_delivers(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.fail = StoreUnavailable("influx", "write", "busy", status=429, retry_after_s=3.5)
    waits: list[float] = []

    def fake_wait(seconds: float) -> bool:  # injected clock: record the delay, recover the server
        waits.append(seconds)
        if len(waits) == 2:
            sink.fail = None
        return False

    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 20), background=True, wait=fake_wait,
                               backoff=Backoff(base_s=0.1), idle_poll_s=0.05)
    store.write_readings(grid_batch(3, 1, T0))
    assert store.flush(timeout_s=10)
    assert waits == [3.5, 3.5]
    assert _ts(sink) == [T0] * 3
    store.close()


def test_unregistered_readings_are_listed(tmp_path: Path) -> None:
    from ingest.store.sqlite import SQLiteReadingStore
    sink = FakeSink()
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 20), background=False,
                               unregistered=SQLiteReadingStore(tmp_path / "u.sqlite3"))
    b = make_batch(["E", "E"], ["D", "D"], ["known", "stray"], [T0, T0], [1.0, 2.0], rows=[0, -1],
                   received_ms=[T0 + 3, T0 + 3])
    store.write_readings(b)
    store.write_readings(b)
    [u] = store.unregistered_sensors()
    assert (u.enterprise_id, u.device_id, u.sensor_id, u.count) == ("E", "D", "stray", 1)
    assert len(_ts(sink)) == 4  # both readings go to InfluxDB every time (it overwrites duplicates)
    store.close()


def test_slow_server_batch_is_spooled_then_drained(http_server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    url, h = http_server
    http = InfluxHttp(url, "tok", "org", "bkt", timeout_ms=5000)
    store = InfluxReadingStore(http, Spool(tmp_path / "spool", 1 << 20), background=False, direct_timeout_ms=200)
    h.delay_s = 1.0
    t = time.monotonic()
    store.write_readings(grid_batch(3, 2, T0))
    assert time.monotonic() - t < 0.9  # gave up after the direct timeout instead of waiting for the server
    assert store.spooled_writes == 1
    h.delay_s = 0.0
    assert store.drain() == 1
    assert store.buffer_bytes == 0
    assert len(h.bodies[-1].splitlines()) == 6
    store.close()


def test_metrics_follow_the_spool(tmp_path: Path) -> None:
    from plantwatch.metrics import Metrics

    m = Metrics()
    sink = FakeSink()
    sink.fail = StoreUnavailable("influx", "write", "down")
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 20), background=False, metrics=m)
    store.write_readings(grid_batch(4, 2, T0))
    text = m.render().decode()
    assert f"plantwatch_store_buffer_bytes {float(store.buffer_bytes)}" in text
    assert 'plantwatch_store_errors_total{store="influx"} 1.0' in text
    assert "plantwatch_store_readings_written_total 8.0" in text
    sink.fail = None
    store.drain()
    assert "plantwatch_store_buffer_bytes 0.0" in m.render().decode()
    store.close()


def test_flaky_server_concurrent_writer_and_drainer_keep_order_exactly_once(tmp_path: Path) -> None:
    """A server failing 40 % of requests at random: direct writes, spooling and the drainer
    thread interleave, and the server still receives every batch once, in write order."""
    import random as _random

    rng = _random.Random(7)
    lock = threading.Lock()

    class Flaky(FakeSink):
        def write(self, body_gz: bytes, timeout_ms: int | None = None) -> None:
            with lock:
                fail = rng.random() < 0.4
            if fail:
                raise StoreUnavailable("influx", "write", "flaky", status=503)
            self.bodies.append(gzip.decompress(body_gz))

    sink = Flaky()
    store = InfluxReadingStore(sink, Spool(tmp_path / "spool", 1 << 24, segment_bytes=4096, fsync=False),
                               background=True,
                               wait=lambda s: None, idle_poll_s=0.01)
    for k in range(200):
        store.write_readings(grid_batch(2, 1, T0 + k * 1000, seed=k))
        if k % 20 == 19:  # let the spool empty now and then, so direct writes resume
            assert store.flush(timeout_s=30)
    assert store.flush(timeout_s=30)
    assert _ts(sink) == [T0 + k * 1000 for k in range(200) for _ in range(2)]
    assert store.direct_writes > 0
    assert store.spooled_writes > 0
    store.close()


def test_a_replay_journal_that_cannot_be_opened_leaves_the_store_running_without_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The journal is a restart aid: a path SQLite cannot open (here a directory) is logged
    and the InfluxDB store runs without replay marks."""
    from ingest.store.influx import _open_journal

    (tmp_path / "influx-replay.sqlite3").mkdir()
    assert _open_journal(tmp_path / "influx-replay.sqlite3") is None
    assert "replay journal" in caplog.text
