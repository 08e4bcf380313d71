"""Decoder: every rejection reason, batch partial acceptance, ts sources, and fuzzing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import BatchBuilder
from ingest.decode import Decoder, GatewayStatus, Reason, parse_ts
from plantwatch.domain import TsSource
from plantwatch.settings import Settings

NOW = 1_795_459_488_000  # receive time, epoch ms
T = "plants/e1/gw1/telemetry"
S = "plants/e1/gw1/status"
DEC = Decoder(Settings(max_message_bytes=1024, max_future_skew_s=300, max_past_age_s=86400))


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def decode(payload: bytes, topic: str = T) -> tuple[Any, Any]:
    b = BatchBuilder()
    out = DEC.decode(topic, payload, NOW, b)
    return out, b.build()


# (case name, topic, payload, reason) — each message is rejected whole with exactly one reason.
REJECT_CASES: list[tuple[str, str, bytes, Reason]] = [
    ("unknown topic shape", "plants/e1/telemetry", j({"sensor": "a", "value": 1}), Reason.BAD_TOPIC),
    ("unknown channel", "plants/e1/gw1/readings", j({"sensor": "a", "value": 1}), Reason.BAD_TOPIC),
    ("oversize", T, j({"sensor": "a", "value": 1, "pad": "x" * 2000}), Reason.OVERSIZE),
    ("bad json", T, b'{"sensor": "a", "value": ', Reason.BAD_JSON),
    ("not utf-8", T, b"\xff\xfe", Reason.BAD_JSON),
    ("bare NaN token", T, b'{"sensor": "a", "value": NaN}', Reason.BAD_JSON),
    ("number overflows to inf", T, b'{"sensor": "a", "value": 1e400}', Reason.BAD_JSON),
    ("not an object", T, j([1, 2]), Reason.BAD_PAYLOAD),
    ("readings not a list", T, j({"readings": {"sensor": "a"}}), Reason.BAD_PAYLOAD),
    ("readings empty", T, j({"readings": []}), Reason.BAD_PAYLOAD),
    ("sensor missing", T, j({"value": 1}), Reason.MISSING_SENSOR),
    ("sensor empty", T, j({"sensor": "", "value": 1}), Reason.MISSING_SENSOR),
    ("sensor not a string", T, j({"sensor": 101, "value": 1}), Reason.MISSING_SENSOR),
    ("value missing", T, j({"sensor": "a"}), Reason.MISSING_VALUE),
    ("value null", T, j({"sensor": "a", "value": None}), Reason.MISSING_VALUE),
    ("value string", T, j({"sensor": "a", "value": "18.5"}), Reason.NON_NUMERIC),
    ("value bool", T, j({"sensor": "a", "value": True}), Reason.NON_NUMERIC),
    ("value list", T, j({"sensor": "a", "value": [1]}), Reason.NON_NUMERIC),
    ("value NaN string", T, j({"sensor": "a", "value": "NaN"}), Reason.NON_FINITE),
    ("value Infinity string", T, j({"sensor": "a", "value": "-Infinity"}), Reason.NON_FINITE),
    ("value inf string", T, j({"sensor": "a", "value": " inf "}), Reason.NON_FINITE),
    ("ts garbage string", T, j({"sensor": "a", "value": 1, "ts": "yesterday"}), Reason.BAD_TS),
    ("ts without offset", T, j({"sensor": "a", "value": 1, "ts": "2026-11-23T19:31:55"}), Reason.BAD_TS),
    ("ts bool", T, j({"sensor": "a", "value": 1, "ts": True}), Reason.BAD_TS),
    ("ts far future", T, j({"sensor": "a", "value": 1, "ts": NOW + 301_000}), Reason.TS_FUTURE),
    ("ts far past", T, j({"sensor": "a", "value": 1, "ts": NOW - 86_401_000}), Reason.TS_PAST),
    ("ts in seconds", T, j({"sensor": "a", "value": 1, "ts": NOW // 1000}), Reason.TS_PAST),
    ("status garbage", S, b"maybe", Reason.BAD_STATUS),
    ("status empty", S, b"", Reason.BAD_STATUS),
]


@pytest.mark.parametrize(("name", "topic", "payload", "reason"), REJECT_CASES, ids=[c[0] for c in REJECT_CASES])
def test_rejected_with_reason(name: str, topic: str, payload: bytes, reason: Reason) -> None:
    out, batch = decode(payload, topic)
    assert out.accepted == 0
    assert len(batch) == 0
    assert [(r.reason, r.count, r.topic) for r in out.rejections] == [(reason, 1, topic)]
    assert out.rejections[0].detail  # says what was wrong


def test_reason_values_are_the_architecture_labels() -> None:
    assert [r.value for r in Reason] == [
        "bad_topic", "oversize", "bad_json", "bad_payload", "missing_sensor", "missing_value",
        "non_numeric", "non_finite", "bad_ts", "ts_future", "ts_past", "bad_status", "overload"]


ACCEPT_CASES: list[tuple[str, dict[str, Any], int, float, TsSource]] = [
    ("own epoch ms", {"sensor": "GT-101", "ts": NOW - 5, "value": 18.5}, NOW - 5, 18.5, TsSource.READING),
    ("integer value", {"sensor": "GT-101", "ts": NOW, "value": 18}, NOW, 18.0, TsSource.READING),
    ("float ms ts", {"sensor": "GT-101", "ts": float(NOW - 7), "value": 1.0}, NOW - 7, 1.0, TsSource.READING),
    ("rfc3339 Z", {"sensor": "GT-101", "ts": "2026-11-23T16:04:48.000Z", "value": 1.0},
     1_795_449_888_000, 1.0, TsSource.READING),
    ("rfc3339 offset", {"sensor": "GT-101", "ts": "2026-11-24T00:04:48+08:00", "value": 1.0},
     1_795_449_888_000, 1.0, TsSource.READING),
    ("no ts", {"sensor": "GT-101", "value": -3.25}, NOW, -3.25, TsSource.RECEIVED),
    ("edge of future skew", {"sensor": "GT-101", "ts": NOW + 300_000, "value": 0}, NOW + 300_000, 0.0,
     TsSource.READING),
    ("extra keys ignored", {"sensor": "GT-101", "value": 2.5, "unit": "%LEL"}, NOW, 2.5, TsSource.RECEIVED),
]


@pytest.mark.parametrize(("name", "msg", "ts", "value", "src"), ACCEPT_CASES, ids=[c[0] for c in ACCEPT_CASES])
def test_single_reading_accepted(name: str, msg: dict[str, Any], ts: int, value: float, src: TsSource) -> None:
    out, b = decode(j(msg))
    assert (out.accepted, list(out.rejections), out.status) == (1, [], None)
    assert b.enterprise_id.tolist() == ["e1"]
    assert b.device_id.tolist() == ["gw1"]
    assert b.sensor_id.tolist() == [msg["sensor"]]
    assert b.ts_ms.tolist() == [ts]
    assert b.value.tolist() == [value]
    assert b.ts_source.tolist() == [int(src)]
    assert b.received_ms.tolist() == [NOW]


def test_batch_inherits_envelope_ts_and_marks_sources() -> None:
    out, b = decode(j({"ts": NOW - 1000, "readings": [
        {"sensor": "GT-101", "value": 18.5},
        {"sensor": "TT-201", "value": 61.2, "ts": NOW - 2000}]}))
    assert out.accepted == 2
    assert not out.rejections
    assert b.sensor_id.tolist() == ["GT-101", "TT-201"]
    assert b.ts_ms.tolist() == [NOW - 1000, NOW - 2000]
    assert b.ts_source.tolist() == [TsSource.BATCH, TsSource.READING]


def test_batch_without_any_ts_takes_receive_time() -> None:
    out, b = decode(j({"readings": [{"sensor": "a", "value": 1}]}))
    assert out.accepted == 1
    assert (b.ts_ms.tolist(), b.ts_source.tolist()) == ([NOW], [TsSource.RECEIVED])


def test_huge_finite_values_whose_sum_overflows_are_accepted() -> None:
    out, b = decode(j({"ts": NOW, "readings": [{"sensor": "a", "value": 1e308}, {"sensor": "b", "value": 1e308}]}))
    assert out.accepted == 2  # the whole-batch finite check overflows; the per-reading path takes them
    assert b.value.tolist() == [1e308, 1e308]


def test_malformed_readings_in_a_batch_are_rejected_alone() -> None:
    out, b = decode(j({"readings": [
        {"sensor": "ok1", "value": 1},
        {"sensor": "bad1", "value": "NaN"},
        "not an object",
        {"value": 3},
        {"sensor": "bad2", "value": None},
        {"sensor": "bad3", "value": "abc"},
        {"sensor": "bad4", "value": 4, "ts": NOW + 10**9},
        {"sensor": "bad5", "value": 4, "ts": 5},
        {"sensor": "bad6", "value": 4, "ts": "soon"},
        {"sensor": "bad7", "value": "inf"},
        {"sensor": "ok2", "value": 2},
    ]}))
    assert out.accepted == 2
    assert b.sensor_id.tolist() == ["ok1", "ok2"]
    counts = {r.reason: r.count for r in out.rejections}
    assert counts == {Reason.NON_FINITE: 2, Reason.BAD_PAYLOAD: 1, Reason.MISSING_SENSOR: 1,
                      Reason.MISSING_VALUE: 1, Reason.NON_NUMERIC: 1, Reason.TS_FUTURE: 1,
                      Reason.TS_PAST: 1, Reason.BAD_TS: 1}
    assert out.rejected == 9


def test_bad_envelope_ts_rejects_only_readings_that_inherit_it() -> None:
    out, b = decode(j({"ts": "garbage", "readings": [
        {"sensor": "a", "value": 1}, {"sensor": "b", "value": 2, "ts": NOW}]}))
    assert b.sensor_id.tolist() == ["b"]
    assert [(r.reason, r.count) for r in out.rejections] == [(Reason.BAD_TS, 1)]


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline", False), (b" OFFLINE\n", False)])
def test_gateway_status(payload: bytes, online: bool) -> None:
    out, b = decode(payload, S)
    assert out.status == GatewayStatus("e1", "gw1", online, NOW)
    assert out.accepted == 0
    assert not out.rejections
    assert len(b) == 0


@pytest.mark.parametrize(("raw", "ms"), [
    (0, 0), (NOW, NOW), (1.9, 1), ("1970-01-01T00:00:00Z", 0), ("1970-01-01t00:00:00.5z", 500),
    ("1970-01-01 08:00:00+08:00", 0), (float("nan"), None), ("2026-11-23", None), (None, None), ([1], None),
])
def test_parse_ts(raw: object, ms: int | None) -> None:
    assert parse_ts(raw) == ms


# -- fuzz: decode never raises, and what it accepts is always valid ----------------------
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=12)
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.sampled_from(["sensor", "value", "ts", "readings", "x"]) | st.text(max_size=4), c, max_size=5), max_leaves=20)


def _check_invariants(topic: str, payload: bytes) -> None:
    b = BatchBuilder()
    out = DEC.decode(topic, payload, NOW, b)
    batch = b.build()
    assert out.accepted == len(batch)
    assert all(r.count >= 1 and isinstance(r.reason, Reason) for r in out.rejections)
    if len(batch):
        assert (batch.value == batch.value).all()
        assert abs(batch.value).max() < float("inf")
        assert (batch.ts_ms <= NOW + 300_000).all()
        assert (batch.ts_ms >= NOW - 86_400_000).all()
        assert all(isinstance(s, str) and s for s in batch.sensor_id.tolist())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_and_topics(topic: str, payload: bytes) -> None:
    _check_invariants(topic, payload)


@settings(max_examples=300, deadline=None)
@given(json_value)
def test_fuzz_arbitrary_json_shapes(obj: Any) -> None:
    try:
        payload = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return
    _check_invariants(T, payload)
    _check_invariants(T, orjson.dumps({"readings": [obj, {"sensor": "s", "value": 1}]}))
    _check_invariants(S, payload)


def test_batch_with_own_ts_everywhere() -> None:
    out, b = decode(j({"readings": [{"sensor": "a", "value": 1, "ts": NOW - 1},
                                    {"sensor": "b", "value": 2.5, "ts": NOW - 2}]}))
    assert out.accepted == 2
    assert b.ts_ms.tolist() == [NOW - 1, NOW - 2]
    assert b.ts_source.tolist() == [TsSource.READING, TsSource.READING]
    assert b.value.tolist() == [1.0, 2.5]


class _PerReadingOnly(Decoder):
    """The decoder with both whole-batch shortcuts (typed msgspec, orjson columns) switched off."""

    @staticmethod
    def _batch_fast(*_: Any) -> int:
        return 0

    def _batch_typed(self, *_: Any) -> int:
        return 0


class _OrjsonOnly(Decoder):
    """The decoder without the typed (msgspec) shortcut: orjson's whole-batch path, then per reading."""

    def _batch_typed(self, *_: Any) -> int:
        return 0


SLOW = _PerReadingOnly(Settings(max_message_bytes=1024, max_future_skew_s=300, max_past_age_s=86400))
ORJSON = _OrjsonOnly(Settings(max_message_bytes=1024, max_future_skew_s=300, max_past_age_s=86400))
reading = st.fixed_dictionaries(
    {"sensor": st.sampled_from(["a", "b", "", 7]),
     "value": st.sampled_from([1, 2.5, -0.0, True, None, "x", "NaN", 10**18, 1e300, -(2**63), [1]])},
    optional={"ts": st.sampled_from([NOW, NOW - 5, NOW + 10**9, 3, "2026-11-23T16:04:48Z", False, None,
                                     float(NOW), 2**63 - 1]),
              "unit": st.just("%LEL")})


@settings(max_examples=300, deadline=None)
@given(st.lists(reading, min_size=1, max_size=6), st.sampled_from([None, NOW - 9, "bad"]))
def test_whole_batch_path_equals_per_reading_path(readings: list[dict[str, Any]], bts: object,
                                                   ) -> None:
    payload = j({"readings": readings} if bts is None else {"ts": bts, "readings": readings})
    for fast in (DEC, ORJSON):  # the service's decoder, and the orjson shortcut alone
        b1, b2 = BatchBuilder(), BatchBuilder()
        out1 = fast.decode(T, payload, NOW, b1)
        out2 = SLOW.decode(T, payload, NOW, b2)
        x, y = b1.build(), b2.build()
        assert out1.accepted == out2.accepted
        assert {(r.reason, r.count) for r in out1.rejections} == {(r.reason, r.count) for r in out2.rejections}
        for col in ("sensor_id", "ts_ms", "value", "ts_source", "received_ms"):
            assert getattr(x, col).tolist() == getattr(y, col).tolist(), col
            assert getattr(x, col).dtype == getattr(y, col).dtype, col


@pytest.mark.parametrize("payload", [
    b'{"readings": [{"sensor": "a", "value": 1}, {"sensor": "a", "value": 2}], "x": {"deep": [1, 2]}}',
    b'{"readings": [{"sensor": "a", "value": 1, "value": 3}]}',  # duplicate key: the last one wins in both
    b'{"ts": "2026-11-23T16:04:48+08:00", "readings": [{"sensor": "a", "value": 1}]}',
    b'{"readings": [{"sensor": "a", "value": 1e400}]}',
    b'{"readings": [{"sensor": "a", "value": 1}], "readings": []}',
    b'{"readings": []}',
    b'{"sensor": "a[1]", "value": 1}',  # the pre-check ("[" in payload) matches a single reading: decoded as one
])
def test_typed_path_agrees_on_edge_payloads(payload: bytes) -> None:
    b1, b2 = BatchBuilder(), BatchBuilder()
    out1 = DEC.decode(T, payload, NOW, b1)
    out2 = SLOW.decode(T, payload, NOW, b2)
    x, y = b1.build(), b2.build()
    assert out1.accepted == out2.accepted
    assert [(r.reason, r.count) for r in out1.rejections] == [(r.reason, r.count) for r in out2.rejections]
    assert x.value.tolist() == y.value.tolist()
    assert x.ts_ms.tolist() == y.ts_ms.tolist()


def test_typed_path_takes_a_well_formed_batch() -> None:
    """The msgspec shortcut really handles the common case (the equality tests above would
    also pass if it never did)."""
    from ingest.decode import _decode_batch

    payload = j({"ts": NOW - 9, "readings": [{"sensor": "a", "value": 1}, {"sensor": "b", "value": 2.5}]})
    b = BatchBuilder()
    assert DEC._batch_typed("e1", "gw1", _decode_batch(payload), NOW, b) == 2
    assert b.build().ts_source.tolist() == [TsSource.BATCH, TsSource.BATCH]
