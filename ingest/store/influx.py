"""InfluxDB 2 reading store: vectorised line protocol, gzip writes, outage spool, Flux history.

Schema (precision: milliseconds):

- measurement ``reading``; tags ``area``, ``device``, ``enterprise``, ``kind``, ``sensor``
  (sorted; a tag whose value is empty is omitted, so unregistered sensors carry only
  enterprise/device/sensor); fields ``value`` (float, the reading in its kind's unit)
  and ``ts_source`` (integer, :class:`plantwatch.domain.TsSource`); timestamp = the
  reading's ``ts_ms``. A point is identified by (measurement, tag set, time), so a
  redelivered reading overwrites itself: duplicates are harmless.
- measurement ``alarm_event``; tags ``alarm_id``, ``area``, ``enterprise``, ``kind``,
  ``level`` (colour), ``rule``, ``sensor``, ``type``; fields ``level_code``,
  ``prev_level_code`` (integers, :class:`Level`), ``status``, ``by``, ``comment``
  (strings), ``value`` (float, when known); timestamp = the event's ``ts_ms``.

Write path: :meth:`InfluxReadingStore.write_readings` builds the lines for the whole
batch with one ``%``-format over flattened columns (tag prefixes cached per registry
row), gzips them (level 1) and makes one attempt to POST them. If InfluxDB is slow,
down or refuses, or if older data is still waiting, the gzipped body is appended to the
durable :class:`Spool` instead; a drainer thread sends spooled records in order with
exponential backoff that honours ``Retry-After``. The call returns only when the batch is
in InfluxDB or fsynced in the spool, and raises :class:`BufferFull` when the spool is
full, so the MQTT ingest does not acknowledge and the broker keeps the messages.

Replay journal: before that, the registered readings of the batch are committed to a small
local SQLite file (:class:`ingest.store.sqlite.ReplayJournal`, one row per batch), which gives this backend the same
replay marks as the SQLite backend: after a kill -9 the service feeds the alarm engine
what came after its last snapshot (``plantwatch.service``). The journal only holds the
readings since the last snapshot: :meth:`InfluxReadingStore.forget_replayed` deletes the
older ones once a snapshot holds them. A journal write that fails is logged and counted
(``store_errors{store="journal"}``) and the batch still goes to InfluxDB: the journal is
a restart aid, not the record.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from alerts.model import Change
from ingest.batch import ReadingBatch
from ingest.store.base import (
    AggRow,
    BufferFull,
    ReadingRow,
    StoredSince,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    UnregisteredSensor,
)
from ingest.store.buffer import Spool
from ingest.store.sqlite import ReplayJournal, SQLiteReadingStore
from plantwatch.metrics import Metrics
from plantwatch.registry import Registry

log = logging.getLogger(__name__)

TagsOfRow = Callable[[int], tuple[str, str]]  # registry row -> (kind, area)

_ESCAPE_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_STR = str.maketrans({'"': r"\"", "\\": "\\\\"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PERMANENT = frozenset({400, 413, 422})  # the request itself is bad: retrying cannot help


def escape_tag(value: str) -> str:
    """Escape a tag key or value for line protocol (comma, equals, space; control chars as text)."""
    return value.translate(_ESCAPE_TAG)


def _tag(key: str, value: str) -> str:
    return f",{key}={escape_tag(value)}" if value else ""


def reading_prefix(enterprise_id: str, device_id: str, sensor_id: str, kind: str = "", area: str = "") -> str:
    """``reading,<sorted tags>`` for one series (empty tag values omitted)."""
    return ("reading" + _tag("area", area) + _tag("device", device_id) + _tag("enterprise", enterprise_id)
            + _tag("kind", kind) + _tag("sensor", sensor_id))


class LineBuilder:
    """Builds the ``reading`` lines of a batch without per-point objects.

    The tag prefix of a registered sensor is built once per (row, device) and cached in an
    object array indexed by row; ``invalidate()`` drops the cache (done automatically when
    the registry's ``version`` changes).
    """

    def __init__(self, tags_of_row: TagsOfRow | None = None, registry: Registry | None = None) -> None:
        if tags_of_row is None and registry is not None:
            reg = registry

            def tags_of_row(row: int) -> tuple[str, str]:
                s = reg.sensors[row] if 0 <= row < len(reg.sensors) else None
                return (s.kind, s.area) if s is not None else ("", "")

        self._tags_of_row = tags_of_row
        self._registry = registry
        self._version = registry.version if registry is not None else 0
        self._prefix = np.full(0, "", dtype=object)
        self._dev = np.full(0, "", dtype=object)
        self._unreg: dict[tuple[str, str, str], str] = {}

    def invalidate(self) -> None:
        self._prefix = np.full(0, "", dtype=object)
        self._dev = np.full(0, "", dtype=object)

    def prefixes(self, batch: ReadingBatch) -> npt.NDArray[np.object_]:
        """Tag prefix of every reading (object array)."""
        if self._registry is not None and self._registry.version != self._version:
            self._version = self._registry.version
            self.invalidate()
        n = len(batch)
        rows = batch.row
        out = np.empty(n, dtype=object)
        known = rows >= 0
        ent, dev, sen = batch.enterprise_id, batch.device_id, batch.sensor_id
        if known.any():
            top = int(rows.max()) + 1
            if top > len(self._prefix):
                size = max(top, 2 * len(self._prefix), 1024)
                p = np.full(size, "", dtype=object)
                d = np.full(size, "", dtype=object)
                p[: len(self._prefix)] = self._prefix
                d[: len(self._dev)] = self._dev
                self._prefix, self._dev = p, d
            r = rows[known]
            out[known] = self._prefix[r]
            stale = (self._prefix[r] == "") | (self._dev[r] != dev[known])
            for i in np.flatnonzero(known)[stale].tolist():
                row = int(rows[i])
                kind, area = self._tags_of_row(row) if self._tags_of_row is not None else ("", "")
                pre = reading_prefix(ent[i], dev[i], sen[i], kind, area)
                self._prefix[row] = pre
                self._dev[row] = dev[i]
                out[i] = pre
        if not known.all():
            cache = self._unreg
            for i in np.flatnonzero(~known).tolist():
                key = (ent[i], dev[i], sen[i])
                hit = cache.get(key)
                if hit is None:
                    hit = cache[key] = reading_prefix(*key)
                out[i] = hit
        return out

    def build(self, batch: ReadingBatch) -> bytes:
        """Line protocol (ms timestamps) for every reading of the batch."""
        n = len(batch)
        if n == 0:
            return b""
        cols = np.empty((n, 4), dtype=object)
        cols[:, 0] = self.prefixes(batch)
        cols[:, 1] = batch.value.tolist()  # %r of a Python float: shortest exact round-trip text
        cols[:, 2] = batch.ts_source.tolist()
        cols[:, 3] = batch.ts_ms.tolist()
        return (("%s value=%r,ts_source=%di %d\n" * n) % tuple(cols.ravel().tolist())).encode()


def _str_field(v: str) -> str:
    return '"' + v.translate(_ESCAPE_STR) + '"'


def alarm_event_lines(changes: Iterable[Change]) -> bytes:
    """Line protocol of the ``alarm_event`` measurement for saved alarm changes."""
    out = []
    for alarm, ev in changes:
        tags = ("alarm_event" + _tag("alarm_id", str(ev.alarm_id)) + _tag("area", alarm.area)
                + _tag("enterprise", alarm.enterprise_id) + _tag("kind", alarm.kind) + _tag("level", ev.level.label)
                + _tag("rule", alarm.rule) + _tag("sensor", alarm.sensor_id) + _tag("type", ev.type))
        fields = [f"level_code={int(ev.level)}i", f"prev_level_code={int(ev.prev_level)}i",
                  f"status={_str_field(str(ev.status))}"]
        if ev.value is not None and np.isfinite(ev.value):
            fields.append(f"value={float(ev.value)!r}")
        if ev.by:
            fields.append(f"by={_str_field(ev.by)}")
        if ev.comment:
            fields.append(f"comment={_str_field(ev.comment)}")
        out.append(f"{tags} {','.join(fields)} {int(ev.ts_ms)}\n")
    return "".join(out).encode()


# -- retries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base_s * factor**attempt`` capped at ``cap_s``, ± ``jitter`` (fraction).

    A server's ``Retry-After`` (seconds) replaces the computed delay, bounded by
    ``max_retry_after_s`` so a bogus header cannot stall the drain for hours.
    """

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.2
    max_retry_after_s: float = 600.0

    def delay(self, attempt: int, retry_after_s: float | None = None, rand: float = 0.5) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.max_retry_after_s)
        d = min(self.cap_s, self.base_s * self.factor ** min(attempt, 64))
        return max(0.0, d * (1.0 + self.jitter * (2.0 * rand - 1.0)))


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now)


# -- transport --------------------------------------------------------------------------


class LineSink(Protocol):
    """Sends one gzipped line-protocol body (ms precision) to the database."""

    def write(self, body_gz: bytes, timeout_ms: int | None = None) -> None:
        """Raises StoreUnavailable (retry later, also on timeout) or StoreRejected (the body is bad)."""

    def close(self) -> None: ...


FluxRunner = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


class InfluxHttp:
    """influxdb-client transport: ``/api/v2/write`` with a pre-gzipped body, Flux queries.

    The client's own gzip (level 9) is bypassed: bodies are gzipped once at level 1 when
    built and stored in the spool in that form. The client's retries are off; retries
    belong to :class:`InfluxReadingStore` so they can fall back to the spool.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, *, timeout_ms: int = 10_000) -> None:
        from influxdb_client.client import influxdb_client as ic
        from influxdb_client.service import write_service as ws

        client_cls: Any = ic.InfluxDBClient
        service_cls: Any = ws.WriteService
        self.org = org
        self.bucket = bucket
        self._client: Any = client_cls(url=url, token=token, org=org, timeout=timeout_ms, enable_gzip=False)
        self._writes: Any = service_cls(self._client.api_client)
        self._query: Any = self._client.query_api()

    def write(self, body_gz: bytes, timeout_ms: int | None = None) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._writes.post_write(org=self.org, bucket=self.bucket, body=body_gz, precision="ms",
                                    content_encoding="gzip", content_type="text/plain; charset=utf-8",
                                    _request_timeout=timeout_ms)
        except ApiException as exc:
            status = int(exc.status or 0)
            msg = f"HTTP {status} {exc.reason}: {(exc.body or b'')[:300]!r}"
            if status in _PERMANENT:
                raise StoreRejected("influx", "write", msg, status=status) from None
            ra = exc.headers.get("Retry-After") if exc.headers else None
            raise StoreUnavailable("influx", "write", msg, status=status,
                                   retry_after_s=parse_retry_after(ra)) from None
        except (HTTPError, OSError) as exc:
            raise StoreUnavailable("influx", "write", f"{type(exc).__name__}: {exc}") from None

    def query(self, flux: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            tables = self._query.query(flux, org=self.org, params=params)
        except Exception as exc:
            raise StoreError("influx", "query", f"{type(exc).__name__}: {exc}") from None
        return [dict(rec.values) for table in tables for rec in table.records]

    def close(self) -> None:
        self._client.close()


# -- Flux -------------------------------------------------------------------------------
# User input never enters the query text: it travels as typed parameters (the client turns
# them into ``option name = <literal>`` statements in the request's ``extern`` AST).

FLUX_RAW = """from(bucket: pw_bucket)
  |> range(start: pw_start, stop: pw_stop)
  |> filter(fn: (r) => r._measurement == "reading" and r.enterprise == pw_enterprise and r.sensor == pw_sensor)
  |> filter(fn: (r) => r._field == "value" or r._field == "ts_source")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time"])
  |> limit(n: pw_limit)
  |> keep(columns: ["_time", "value", "ts_source"])"""

FLUX_AGG = """data = from(bucket: pw_bucket)
  |> range(start: pw_start, stop: pw_stop)
  |> filter(fn: (r) => r._measurement == "reading" and r._field == "value"
      and r.enterprise == pw_enterprise and r.sensor == pw_sensor)
  |> group(columns: ["_measurement", "_field"])
  |> toFloat()
agg = (f, name) => data
  |> aggregateWindow(every: pw_every, fn: f, createEmpty: false, timeSrc: "_start")
  |> toFloat()
  |> set(key: "agg", value: name)
union(tables: [agg(f: mean, name: "mean"), agg(f: min, name: "min"), agg(f: max, name: "max"),
               agg(f: count, name: "count")])
  |> group()
  |> pivot(rowKey: ["_time"], columnKey: ["agg"], valueColumn: "_value")
  |> sort(columns: ["_time"])"""


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def flux_raw(bucket: str, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
             limit: int) -> tuple[str, dict[str, Any]]:
    """Raw readings ``[start_ms, end_ms)`` oldest first: (query text, parameters)."""
    return FLUX_RAW, {"pw_bucket": str(bucket), "pw_enterprise": str(enterprise_id), "pw_sensor": str(sensor_id),
                      "pw_start": _dt(start_ms), "pw_stop": _dt(end_ms), "pw_limit": int(limit)}


def flux_aggregate(bucket: str, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                   window_ms: int) -> tuple[str, dict[str, Any]]:
    """Mean/min/max/count per epoch-aligned ``window_ms``: (query text, parameters)."""
    if window_ms <= 0:
        raise StoreError("influx", "query_aggregate", f"window_ms must be positive, got {window_ms}")
    return FLUX_AGG, {"pw_bucket": str(bucket), "pw_enterprise": str(enterprise_id), "pw_sensor": str(sensor_id),
                      "pw_start": _dt(start_ms), "pw_stop": _dt(end_ms),
                      "pw_every": timedelta(milliseconds=int(window_ms))}


def rows_from_raw(records: list[dict[str, Any]]) -> list[ReadingRow]:
    return [ReadingRow(_ms(r["_time"]), float(r["value"]), int(r.get("ts_source") or 0))
            for r in records if r.get("value") is not None]


def rows_from_aggregate(records: list[dict[str, Any]], window_ms: int) -> list[AggRow]:
    """Flux labels a window clipped by the range with the range start: re-align to the epoch grid."""
    out = []
    for r in records:
        if r.get("count") is None:
            continue
        t = _ms(r["_time"])
        out.append(AggRow(t - t % window_ms, float(r["mean"]), float(r["min"]), float(r["max"]), int(r["count"])))
    return out


# -- the store --------------------------------------------------------------------------


class InfluxReadingStore:
    """:class:`ReadingStore` on InfluxDB with a durable outage spool (see the module docstring).

    ``write_slice_readings``: the ingest pipeline writes this many readings per call (one HTTP
    request each; SQLite's default is 2,048, which here would cost a round trip per 2,048).

    ``background=False`` runs no drainer thread: call :meth:`drain` yourself (tests,
    benchmarks). A direct write that takes longer than ``direct_timeout_ms`` counts as failed
    and the batch is spooled, so a slow server cannot stall the ingest for long; spooled
    records are sent with the transport's own (longer) timeout. ``unregistered`` keeps the
    unregistered sensors' readings (and their exact counts) in a small SQLite file, since
    InfluxDB cannot list them cheaply.
    """

    write_slice_readings = 10_000

    def __init__(self, sink: LineSink, spool: Spool, *, bucket: str = "", query: FluxRunner | None = None,
                 builder: LineBuilder | None = None, unregistered: SQLiteReadingStore | None = None,
                 backoff: Backoff = Backoff(), background: bool = True, metrics: Metrics | None = None,
                 gzip_level: int = 1, idle_poll_s: float = 1.0, direct_timeout_ms: int = 2000,
                 wait: Callable[[float], object] | None = None, journal: ReplayJournal | None = None) -> None:
        self._sink = sink
        self._spool = spool
        self._bucket = bucket
        self._query = query
        self._builder = builder or LineBuilder()
        self._unreg = unregistered
        self._journal = journal
        self._backoff = backoff
        self._metrics = metrics
        self._gzip_level = gzip_level
        self._idle_poll_s = idle_poll_s
        self._direct_timeout_ms = direct_timeout_ms
        self._wait = wait  # backoff sleep (default: interruptible by close()); injectable for tests
        self._write_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.rejected_records = 0
        self.direct_writes = 0
        self.spooled_writes = 0
        self._thread: threading.Thread | None = None
        self._gauge()
        if background:
            self._thread = threading.Thread(target=self._run, name="influx-drain", daemon=True)
            self._thread.start()

    # -- writing ----------------------------------------------------------------------
    def _gzip(self, lines: bytes) -> bytes:
        c = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31)  # wbits 31: gzip container
        return c.compress(lines) + c.flush()

    def write_readings(self, batch: ReadingBatch) -> None:
        """Write to InfluxDB or, failing that, to the spool; raises BufferFull when neither can take it."""
        if not len(batch):
            return
        unreg = batch.row < 0
        any_unreg = bool(unreg.any())
        if self._unreg is not None and any_unreg:
            self._unreg.write_readings(batch.take(unreg))
        if self._journal is not None and not unreg.all():
            try:
                self._journal.write_readings(batch.take(~unreg) if any_unreg else batch)
            except Exception as exc:  # a restart aid only (any failure): the readings still go to InfluxDB
                if self._metrics is not None:
                    self._metrics.store_errors.labels("journal").inc()
                log.error("replay journal write failed (%d readings; a crash now would replay less): %s",
                          len(batch), exc)
        self._submit(self._builder.build(batch))
        if self._metrics is not None:
            self._metrics.store_written.inc(len(batch))

    def write_alarm_events(self, changes: list[Change]) -> None:
        """Append alarm events as the ``alarm_event`` measurement (same path and guarantees as readings)."""
        if changes:
            self._submit(alarm_event_lines(changes))

    def _submit(self, lines: bytes) -> None:
        body = self._gzip(lines)
        with self._write_lock:
            if self._spool.empty:
                try:
                    self._sink.write(body, self._direct_timeout_ms)
                    self.direct_writes += 1
                    return
                except StoreError as exc:
                    self._count_error()
                    log.warning("influx write failed, spooling %d bytes: %s", len(body), exc)
            try:
                self._spool.append(body)
            except BufferFull:
                self._count_error()
                raise
            finally:
                self._gauge()
            self.spooled_writes += 1
        self._wake.set()

    # -- draining ---------------------------------------------------------------------
    def _drain_one(self) -> tuple[bool, float | None]:
        """Send the oldest spooled record: (progress made, Retry-After seconds if given)."""
        body = self._spool.peek()
        if body is None:
            return (False, None)
        try:
            self._sink.write(body)
        except StoreRejected as exc:
            self.rejected_records += 1
            self._count_error()
            self._quarantine(body, exc)
        except StoreError as exc:
            self._count_error()
            return (False, exc.retry_after_s if isinstance(exc, StoreUnavailable) else None)
        with self._cond:
            self._spool.ack()
            self._gauge()
            self._cond.notify_all()
        return (True, None)

    def _quarantine(self, body: bytes, exc: StoreRejected) -> None:
        """Move a record the server refuses out of the way (kept on disk for inspection)."""
        qdir = self._spool.directory / "rejected"
        qdir.mkdir(exist_ok=True)
        path = qdir / f"{time.time_ns()}.lp.gz"
        path.write_bytes(body)
        log.error("influx refused a spooled record (%s); moved to %s", exc, path)

    def drain(self) -> int:
        """Send spooled records in order until empty or one fails; returns how many were sent."""
        sent = 0
        with self._drain_lock:
            while True:
                ok, _ = self._drain_one()
                if not ok:
                    return sent
                sent += 1

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if self._spool.empty:
                self._wake.wait(self._idle_poll_s)
                self._wake.clear()
                continue
            with self._drain_lock:
                ok, retry_after = self._drain_one()
            if ok:
                attempt = 0
                continue
            delay = self._backoff.delay(attempt, retry_after, random.random())
            attempt += 1
            log.info("influx unavailable; %d spooled bytes; retry %d in %.2f s", self._spool.bytes, attempt, delay)
            (self._wait or self._stop.wait)(delay)

    def flush(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (drainer thread running); False on timeout."""
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._spool.empty, timeout_s)

    # -- state ------------------------------------------------------------------------
    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.buffer_bytes.set(self._spool.bytes)

    def _count_error(self) -> None:
        if self._metrics is not None:
            self._metrics.store_errors.labels("influx").inc()

    @property
    def buffer_bytes(self) -> int:
        return self._spool.bytes

    @property
    def buffer_near_full(self) -> bool:
        return self._spool.near_full

    # -- queries ----------------------------------------------------------------------
    def _run_query(self, flux: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._query is None:
            raise StoreError("influx", "query", "no query transport configured")
        return self._query(flux, params)

    def query_readings(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                       limit: int = 10_000) -> list[ReadingRow]:
        if end_ms <= start_ms:
            return []
        return rows_from_raw(self._run_query(*flux_raw(self._bucket, enterprise_id, sensor_id, start_ms, end_ms,
                                                       limit)))

    def query_aggregate(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                        window_ms: int) -> list[AggRow]:
        q = flux_aggregate(self._bucket, enterprise_id, sensor_id, start_ms, end_ms, window_ms)
        if end_ms <= start_ms:
            return []
        return rows_from_aggregate(self._run_query(*q), window_ms)

    def unregistered_sensors(self) -> list[UnregisteredSensor]:
        return self._unreg.unregistered_sensors() if self._unreg is not None else []

    # -- replay after a restart (the journal) --------------------------------------------
    def replay_mark(self) -> int:
        """The journal's highest batch id (-1: no journal, or it cannot be read: nothing to replay)."""
        if self._journal is None:
            return -1
        try:
            return self._journal.replay_mark()
        except Exception:  # a restart aid only: a snapshot without a mark restores without a replay
            log.exception("replay journal unreadable; this engine snapshot carries no replay mark")
            return -1

    @property
    def replay_source(self) -> str:
        return self._journal.replay_source if self._journal is not None else ""

    def readings_after(self, mark: int, max_readings: int = 100_000) -> Iterator[StoredSince]:
        """The journal's readings committed after ``mark`` (see SQLiteReadingStore.readings_after)."""
        if self._journal is not None:
            yield from self._journal.readings_after(mark, max_readings)

    def forget_replayed(self, mark: int) -> None:
        """A snapshot taken at ``mark`` is durable: the journal drops what it holds."""
        if self._journal is not None and mark > 0:
            self._journal.forget_below(mark)

    def close(self) -> None:
        """Stop the drainer (what is still spooled stays on disk for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._spool.close()
        self._sink.close()
        if self._unreg is not None:
            self._unreg.close()
        if self._journal is not None:
            self._journal.close()


def _open_journal(path: Path) -> ReplayJournal | None:
    """The replay journal, or None (logged) when the file cannot be opened: the store still
    runs, a crash then falls back to the last engine snapshot."""
    try:
        return ReplayJournal(path)
    except Exception:
        log.exception("replay journal %s cannot be opened; running without it", path)
        return None


def open_influx(url: str, token: str, org: str, bucket: str, data_dir: Path, *, registry: Registry | None = None,
                tags_of_row: TagsOfRow | None = None, buffer_max_bytes: int = 1 << 30, timeout_ms: int = 10_000,
                backoff: Backoff = Backoff(), background: bool = True,
                metrics: Metrics | None = None) -> InfluxReadingStore:
    """The InfluxDB reading store with its spool in ``data_dir/influx-spool``, the
    unregistered-sensor table in ``data_dir/influx-unregistered.sqlite3`` and the replay
    journal in ``data_dir/influx-replay.sqlite3``."""
    http = InfluxHttp(url, token, org, bucket, timeout_ms=timeout_ms)
    return InfluxReadingStore(
        http, Spool(data_dir / "influx-spool", buffer_max_bytes), bucket=bucket, query=http.query,
        builder=LineBuilder(tags_of_row, registry),
        unregistered=SQLiteReadingStore(data_dir / "influx-unregistered.sqlite3"),
        journal=_open_journal(data_dir / "influx-replay.sqlite3"),
        backoff=backoff, background=background, metrics=metrics,
    )


__all__ = [
    "FLUX_AGG",
    "FLUX_RAW",
    "Backoff",
    "InfluxHttp",
    "InfluxReadingStore",
    "LineBuilder",
    "LineSink",
    "alarm_event_lines",
    "escape_tag",
    "flux_aggregate",
    "flux_raw",
    "open_influx",
    "parse_retry_after",
    "reading_prefix",
]
