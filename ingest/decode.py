"""Decode MQTT contract v1 messages (docs/mqtt.md) into a :class:`BatchBuilder`.

One call per message; the hot path is ``orjson.loads`` plus a few type checks and
list appends per reading (no per-reading objects). Every problem becomes a counted
:class:`Rejection` with a :class:`Reason`; ``decode`` never raises on input, and a
malformed reading inside a batch is rejected alone while the valid rest lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec
import orjson

from ingest.batch import BatchBuilder
from ingest.topics import Channel, TopicParser
from plantwatch.domain import TsSource
from plantwatch.settings import Settings

_READING = int(TsSource.READING)
_BATCH = int(TsSource.BATCH)
_RECEIVED = int(TsSource.RECEIVED)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NON_FINITE_WORDS = frozenset({"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"})
_MISSING = object()
_STR_ONLY = frozenset({str})
_INT_ONLY = frozenset({int})
_NONE_ONLY = frozenset({type(None)})
_NUMBER_TYPES = frozenset({int, float})


class _Reading(msgspec.Struct, gc=False):
    """A batch reading as the typed fast path accepts it (anything else: the orjson path).

    One difference between the paths: an integer literal beyond 64 bits (``"value": 1e30``
    written out as digits) is a float here, while orjson refuses such a number, so a
    message that falls back to the orjson path for another reason is ``bad_json`` whole.
    """

    sensor: str
    value: float  # msgspec: an int is accepted and converted; bool, str, null and 1e400 are not
    ts: int | None = None


class _Batch(msgspec.Struct, gc=False):
    readings: list[_Reading]
    ts: Any = None


_decode_batch = msgspec.json.Decoder(_Batch).decode
_LBRACKET = ord("[")  # int membership is a memchr; ``b"..." in payload`` costs ~0.5 us here
_MS_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)


class Reason(StrEnum):
    """Why a message or reading was rejected; the ``reason`` label of
    ``plantwatch_ingest_rejected_total``."""

    BAD_TOPIC = "bad_topic"  # not {prefix}/{enterprise}/{device}/telemetry|status
    OVERSIZE = "oversize"  # payload larger than max_message_bytes
    BAD_JSON = "bad_json"  # not UTF-8 JSON (NaN/Infinity tokens, 1e400 included)
    BAD_PAYLOAD = "bad_payload"  # JSON of the wrong shape (not an object, empty/invalid readings)
    MISSING_SENSOR = "missing_sensor"  # sensor absent or not a non-empty string
    MISSING_VALUE = "missing_value"  # value absent or null
    NON_NUMERIC = "non_numeric"  # value is a string, bool, list or object
    NON_FINITE = "non_finite"  # value is a NaN/Inf string or an infinite number
    BAD_TS = "bad_ts"  # ts neither epoch ms nor an RFC 3339 string with offset
    TS_FUTURE = "ts_future"  # ts later than receive time + max_future_skew_s
    TS_PAST = "ts_past"  # ts earlier than receive time - max_past_age_s
    BAD_STATUS = "bad_status"  # status payload other than online/offline
    OVERLOAD = "overload"  # dropped because the ingest queue was full (counted by the pipeline)


@dataclass(slots=True)
class Rejection:
    """``count`` messages or readings of one message rejected for one ``reason``.

    ``detail`` describes the first occurrence (reading index and offending value).
    """

    topic: str
    reason: Reason
    detail: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A gateway's ``online``/``offline`` status; ``ts_ms`` is the receive time (epoch ms)."""

    enterprise_id: str
    device_id: str
    online: bool
    ts_ms: int


_NO_REJECTIONS: tuple[Rejection, ...] = ()


@dataclass(slots=True)
class DecodeOutcome:
    """Result of decoding one message: readings appended, rejections, gateway status."""

    accepted: int = 0
    rejections: tuple[Rejection, ...] | list[Rejection] = _NO_REJECTIONS
    status: GatewayStatus | None = None

    @property
    def rejected(self) -> int:
        """Total messages/readings rejected."""
        return sum(r.count for r in self.rejections)


def _short(v: object, limit: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def parse_ts(raw: object) -> int | None:
    """Epoch ms from an integer/float number of ms or an RFC 3339 string; ``None`` if invalid.

    RFC 3339 strings need a date, a time and an offset (``Z`` or ``+08:00``).
    """
    t = type(raw)
    if t is int:
        return raw  # type: ignore[return-value]
    if t is float:
        f: float = raw  # type: ignore[assignment]
        if f - f != 0.0 or abs(f) > 9.0e15:
            return None
        return int(f)
    if t is str:
        s: str = raw  # type: ignore[assignment]
        if not 16 <= len(s) <= 40 or s[10] not in "Tt ":
            return None
        s = s.upper()
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        try:
            return (dt - _EPOCH) // _MS
        except OverflowError:  # pragma: no cover - year 1 with a positive offset
            return None
    return None


class _Rejects:
    """Per-message accumulator of rejections, one entry per reason."""

    __slots__ = ("by_reason", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.by_reason: dict[Reason, Rejection] = {}

    def add(self, reason: Reason, detail: str) -> None:
        r = self.by_reason.get(reason)
        if r is None:
            self.by_reason[reason] = Rejection(self.topic, reason, detail)
        else:
            r.count += 1

    def result(self) -> tuple[Rejection, ...] | list[Rejection]:
        return list(self.by_reason.values()) if self.by_reason else _NO_REJECTIONS


class Decoder:
    """Decodes contract v1 messages with limits from :class:`Settings`.

    Limits: ``max_message_bytes`` (payload size), ``max_future_skew_s`` and
    ``max_past_age_s`` (reading ts relative to the receive time), ``topic_prefix``.
    """

    __slots__ = ("_future_ms", "_max_bytes", "_past_ms", "topics")

    def __init__(self, settings: Settings) -> None:
        self.topics = TopicParser(settings.topic_prefix)
        self._max_bytes = settings.max_message_bytes
        self._future_ms = int(settings.max_future_skew_s * 1000)
        self._past_ms = int(settings.max_past_age_s * 1000)

    # -- public ----------------------------------------------------------------------
    def decode(self, topic: str, payload: bytes, received_ms: int, into: BatchBuilder) -> DecodeOutcome:
        """Decode one message, appending its valid readings to ``into``; never raises on input.

        ``received_ms`` is the ingest receive time (epoch ms): the default ts and the
        reference for the future/past limits.
        """
        parts = self.topics.parse(topic)
        if parts is None:
            return self._one(topic, Reason.BAD_TOPIC, f"expected {self.topics.prefix}/<enterprise>/<device>/"
                                                        "telemetry|status")
        if len(payload) > self._max_bytes:
            return self._one(topic, Reason.OVERSIZE, f"{len(payload)} bytes > {self._max_bytes}")
        ent, dev, channel = parts
        if channel is Channel.STATUS:
            return self._status(topic, ent, dev, payload, received_ms)
        if _LBRACKET in payload:  # a batch has a list; typed decode of a well-formed one: checks run in C
            try:
                typed = _decode_batch(payload)
            except _MS_ERRORS:
                typed = None  # the orjson path below finds (and names) what is wrong
            if typed is not None:
                n = self._batch_typed(ent, dev, typed, received_ms, into)
                if n:
                    return DecodeOutcome(n)
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return self._one(topic, Reason.BAD_JSON, str(exc)[:120])
        if type(obj) is not dict:
            return self._one(topic, Reason.BAD_PAYLOAD, f"expected a JSON object, got {type(obj).__name__}")
        lo = received_ms - self._past_ms
        hi = received_ms + self._future_ms
        readings = obj.get("readings", _MISSING)
        if readings is _MISSING:
            return self._single(topic, ent, dev, obj, received_ms, lo, hi, into)
        return self._batch(topic, ent, dev, obj, readings, received_ms, lo, hi, into)

    # -- message kinds ---------------------------------------------------------------
    @staticmethod
    def _one(topic: str, reason: Reason, detail: str) -> DecodeOutcome:
        return DecodeOutcome(0, [Rejection(topic, reason, detail)])

    def _status(self, topic: str, ent: str, dev: str, payload: bytes, received_ms: int) -> DecodeOutcome:
        word = payload.strip().lower()
        if word == b"online" or word == b"offline":
            return DecodeOutcome(0, _NO_REJECTIONS, GatewayStatus(ent, dev, word == b"online", received_ms))
        return self._one(topic, Reason.BAD_STATUS, f"expected online or offline, got {_short(payload[:40])}")

    def _single(self, topic: str, ent: str, dev: str, obj: dict[str, Any], received_ms: int,
                lo: int, hi: int, into: BatchBuilder) -> DecodeOutcome:
        sensor = obj.get("sensor")
        if type(sensor) is not str or not sensor:
            return self._one(topic, Reason.MISSING_SENSOR, f"sensor must be a non-empty string, got {_short(sensor)}")
        v: Any = obj.get("value")
        tv = type(v)
        if tv is float:
            if v - v != 0.0:
                return self._one(topic, Reason.NON_FINITE, f"{sensor}: value {v!r}")
        elif tv is int:
            v = float(v)
        else:
            reason = self._value_reason(v)
            return self._one(topic, reason, f"{sensor}: value {_short(v)}")
        raw_ts = obj.get("ts")
        if raw_ts is None:
            ts, src = received_ms, _RECEIVED
        else:
            t = raw_ts if type(raw_ts) is int else parse_ts(raw_ts)
            if t is None:
                return self._one(topic, Reason.BAD_TS, f"{sensor}: ts {_short(raw_ts)}")
            if t > hi:
                return self._one(topic, Reason.TS_FUTURE, f"{sensor}: ts {t} > receive time + skew")
            if t < lo:
                return self._one(topic, Reason.TS_PAST, f"{sensor}: ts {t} older than max age")
            ts, src = t, _READING
        into.add(ent, dev, sensor, ts, v, src, received_ms)
        return DecodeOutcome(1)

    def _batch(self, topic: str, ent: str, dev: str, obj: dict[str, Any], readings: object,
               received_ms: int, lo: int, hi: int, into: BatchBuilder) -> DecodeOutcome:
        if type(readings) is not list or not readings:
            return self._one(topic, Reason.BAD_PAYLOAD, f"readings must be a non-empty list, got {_short(readings)}")
        rej = _Rejects(topic)
        # The envelope ts: inherited by readings without their own.
        raw_bts = obj.get("ts")
        bts_reason: Reason | None = None
        if raw_bts is None:
            bts, bsrc = received_ms, _RECEIVED
        else:
            t = parse_ts(raw_bts)
            bts, bsrc = received_ms, _BATCH
            if t is None:
                bts_reason = Reason.BAD_TS
            elif t > hi:
                bts_reason = Reason.TS_FUTURE
            elif t < lo:
                bts_reason = Reason.TS_PAST
            else:
                bts = t
        if bts_reason is None:
            n_fast = self._batch_fast(ent, dev, readings, bts, bsrc, received_ms, lo, hi, into)
            if n_fast:
                return DecodeOutcome(n_fast)
        sensors: list[str] = []
        tss: list[int] = []
        vals: list[float] = []
        srcs: list[int] = []
        r: Any
        for i, r in enumerate(readings):
            if type(r) is not dict:
                rej.add(Reason.BAD_PAYLOAD, f"readings[{i}] is not an object: {_short(r)}")
                continue
            sensor = r.get("sensor")
            if type(sensor) is not str or not sensor:
                rej.add(Reason.MISSING_SENSOR, f"readings[{i}].sensor {_short(sensor)}")
                continue
            v: Any = r.get("value")
            tv = type(v)
            if tv is float:
                if v - v != 0.0:
                    rej.add(Reason.NON_FINITE, f"readings[{i}] {sensor}: value {v!r}")
                    continue
            elif tv is int:
                v = float(v)
            else:
                rej.add(self._value_reason(v), f"readings[{i}] {sensor}: value {_short(v)}")
                continue
            raw_ts = r.get("ts")
            if raw_ts is None:
                if bts_reason is not None:
                    rej.add(bts_reason, f"readings[{i}] {sensor}: inherits batch ts {_short(raw_bts)}")
                    continue
                ts, src = bts, bsrc
            else:
                t = raw_ts if type(raw_ts) is int else parse_ts(raw_ts)
                if t is None:
                    rej.add(Reason.BAD_TS, f"readings[{i}] {sensor}: ts {_short(raw_ts)}")
                    continue
                if t > hi:
                    rej.add(Reason.TS_FUTURE, f"readings[{i}] {sensor}: ts {t} > receive time + skew")
                    continue
                if t < lo:
                    rej.add(Reason.TS_PAST, f"readings[{i}] {sensor}: ts {t} older than max age")
                    continue
                ts, src = t, _READING
            sensors.append(sensor)
            tss.append(ts)
            vals.append(v)
            srcs.append(src)
        n = len(tss)
        if n:
            into.add_many(ent, dev, sensors, tss, vals, srcs, received_ms)
        return DecodeOutcome(n, rej.result())

    def _batch_typed(self, ent: str, dev: str, typed: _Batch, received_ms: int, into: BatchBuilder) -> int:
        """Fast path for a batch msgspec decoded against :class:`_Batch` (types, finiteness and
        shape already checked): the same acceptance as :meth:`_batch_fast`; 0 = use the full path."""
        readings = typed.readings
        if not readings:
            return 0
        lo = received_ms - self._past_ms
        hi = received_ms + self._future_ms
        raw_bts = typed.ts
        if raw_bts is None:
            bts, bsrc = received_ms, _RECEIVED
        else:
            t = parse_ts(raw_bts)
            if t is None or t > hi or t < lo:
                return 0
            bts, bsrc = t, _BATCH
        sensors = [r.sensor for r in readings]
        if "" in sensors:
            return 0
        vals = [r.value for r in readings]
        tss: list[Any] = [r.ts for r in readings]
        n = len(tss)
        if None not in tss:  # every reading has its own (int) ts
            if min(tss) < lo or max(tss) > hi:
                return 0
            into.add_many(ent, dev, sensors, tss, vals, _READING, received_ms)
            return n
        if tss.count(None) == n:
            into.add_many(ent, dev, sensors, [bts] * n, vals, bsrc, received_ms)
            return n
        return 0

    @staticmethod
    def _batch_fast(ent: str, dev: str, readings: list[Any], bts: int, bsrc: int, received_ms: int,
                    lo: int, hi: int, into: BatchBuilder) -> int:
        """Whole-batch path for the common case (every reading valid, ts all own or all inherited).

        Column extraction with comprehensions and set-of-types checks run in C; returns 0
        (nothing appended) whenever any reading needs the per-reading path.
        """
        try:
            sensors = [r["sensor"] for r in readings]
            vals = [r["value"] for r in readings]
        except (KeyError, TypeError):
            return 0
        try:  # subscripts are cheaper than .get; batches either all carry ts or none does
            tss: list[Any] = [r["ts"] for r in readings]
        except KeyError:
            tss = [r.get("ts") for r in readings]
        if set(map(type, sensors)) != _STR_ONLY or "" in sensors:
            return 0
        vtypes = set(map(type, vals))
        if not vtypes <= _NUMBER_TYPES:  # bool, str, None, list, dict → per-reading path
            return 0
        if float in vtypes:
            total = sum(vals)  # C loop; NaN/inf anywhere (or an overflowing sum) -> per-reading path
            if total - total != 0.0:
                return 0
        ttypes = set(map(type, tss))
        n = len(tss)
        if ttypes == _NONE_ONLY:
            into.add_many(ent, dev, sensors, [bts] * n, vals, bsrc, received_ms)
            return n
        if ttypes == _INT_ONLY and min(tss) >= lo and max(tss) <= hi:
            into.add_many(ent, dev, sensors, tss, vals, _READING, received_ms)
            return n
        return 0

    @staticmethod
    def _value_reason(v: object) -> Reason:
        if v is None:
            return Reason.MISSING_VALUE
        if type(v) is str and v.strip().lower() in _NON_FINITE_WORDS:
            return Reason.NON_FINITE
        return Reason.NON_NUMERIC


__all__ = ["DecodeOutcome", "Decoder", "GatewayStatus", "Reason", "Rejection", "parse_ts"]
