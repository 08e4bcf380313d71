"""Ingest pipeline: MQTT intake → decode → columnar batch → registry rows → alarm sink → store.

``process`` is the synchronous core (used by tests and benchmarks); ``run`` owns the MQTT
connection (see :mod:`ingest.mqtt`): reconnect with backoff, bounded intake, batching.
Each batch is evaluated by the alarm sink first, so alarms never wait for (or depend on)
the database. With a writer process (``writer=``, the service's default for SQLite) the
evaluated readings are handed to it in jobs without blocking the loop
(``Pipeline._consume_offloaded``); otherwise ``store.write_readings`` stores them between
intakes in slices (``Pipeline._consume``). With QoS 1 their messages are acked only after
they are stored (at-least-once). A failed write leaves its messages unacked and reconnects
so the broker redelivers them (the engine ignores a repeated newest reading; the store
keeps one row per (sensor, ts)).
Nothing on input stops the loop: bad messages become counted rejections, and an
exception in one batch is logged and counted while the loop carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ingest.batch import BatchBuilder, ReadingBatch
from ingest.decode import Decoder, GatewayStatus, Reason, Rejection
from ingest.mqtt import MQTT_ERRORS, Intake, MqttSource
from plantwatch.clock import wall_ms
from plantwatch.metrics import Metrics
from plantwatch.registry import Registry
from plantwatch.settings import Settings

log = logging.getLogger("plantwatch.ingest")

IDLE_CLOSE_MS = 1.0
"""A batch also closes when no message arrived during a pause of this long (ms)."""
WRITE_SLICE = 2048
"""Readings per store transaction while the loop interleaves writes with intake (at ~1 M
readings/s into SQLite, about 2 ms: the longest an arriving message waits for a write)."""
OFFLOAD_JOB_READINGS = 10_000
"""Readings per job handed to the writer process: an intake is decoded, evaluated and handed
over in steps this size, so acks return to the broker (whose QoS 1 in-flight window limits
what it sends) while the rest of the intake is still being decoded."""
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0


class ReadingSink(Protocol):
    """The part of a reading store the pipeline needs (``ingest.store.base.ReadingStore``)."""

    def write_readings(self, batch: ReadingBatch) -> None: ...


class OffloadWriter(Protocol):
    """A store writer in another process (``ingest.store.writer.WriterProcess``)."""

    inflight: int
    """Readings submitted and not yet reported stored or failed."""
    restarts: int
    """Times the writer process died and was replaced."""

    def start(self) -> None: ...

    def submit(self, batch: ReadingBatch | None, done: Callable[[BaseException | None, float], None]) -> None: ...

    def close(self, timeout_s: float = 60.0) -> None: ...


class AlarmSink(Protocol):
    """Implemented by ``plantwatch.service``; called on the event-loop thread."""

    def on_readings(self, batch: ReadingBatch, now_ms: int) -> None: ...

    def on_gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> None: ...


@dataclass(slots=True)
class _Chunk:
    """Up to ``batch_max_readings`` decoded readings with the statuses and packet ids of
    the messages they came from (acked together once the batch is stored)."""

    batch: ReadingBatch | None
    statuses: list[GatewayStatus]
    mids: list[int]


@dataclass(slots=True)
class _Job:
    """Evaluated chunks being stored: their readings merged and ordered by sensor row, written
    in slices of about ``WRITE_SLICE`` readings (each its own transaction) between intakes."""

    chunks: list[_Chunk]
    batch: ReadingBatch
    cuts: npt.NDArray[np.intp]
    """Slice ends: indexes into ``batch`` (already in row order), the last one ``len(batch)``."""
    done: int = 0
    """Slices written so far."""
    seconds: float = 0.0
    """Time spent in ``store.write_readings`` for this job (s)."""


@dataclass(slots=True)
class _Writes:
    """The job being written and the evaluated chunks queued after it."""

    job: _Job | None = None
    pending: list[_Chunk] = field(default_factory=list)
    pending_n: int = 0
    failed: bool = False
    inflight_jobs: int = 0
    """Offloaded mode: jobs handed to the writer process and not reported yet."""
    live: bool = False
    """Offloaded mode: the session is up (acks of reported jobs are sent)."""

    def __bool__(self) -> bool:
        return self.job is not None or bool(self.pending)


class _Redeliver(Exception):
    """Unacked QoS 1 messages need the broker to resend them: reconnect."""


class _LogLimiter:
    """At most ``lines`` log lines per ``window_ms``; the rest are summarised, never lost from metrics."""

    __slots__ = ("_clock", "_lines", "_start", "_suppressed", "_used", "_window")

    def __init__(self, clock: Callable[[], int], lines: int = 20, window_ms: int = 10_000) -> None:
        self._clock = clock
        self._lines = lines
        self._window = window_ms
        self._start = -(2**62)
        self._used = 0
        self._suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        if now - self._start >= self._window:
            if self._suppressed:
                log.warning("%d more rejection log lines suppressed in the last %d s (all counted in metrics)",
                            self._suppressed, self._window // 1000)
            self._start, self._used, self._suppressed = now, 0, 0
        if self._used < self._lines:
            self._used += 1
            return True
        self._suppressed += 1
        return False


class Pipeline:
    """Ingest pipeline; one per service. ``connected`` is True while the MQTT session is up."""

    def __init__(self, settings: Settings, registry: Registry, store: ReadingSink, sink: AlarmSink,
                 metrics: Metrics, clock: Callable[[], int] = wall_ms, *, writer: OffloadWriter | None = None) -> None:
        self.settings = settings
        self.writer = writer
        """When set, ``run`` hands the readings to this writer process instead of writing ``store``
        on the event loop (``process`` always writes ``store`` itself)."""
        self.registry = registry
        self.store = store
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.decoder = Decoder(settings)
        self._max_readings = settings.batch_max_readings
        self._rejected = {r: metrics.ingest_rejected.labels(reason=r.value) for r in Reason}
        self._store_errors = metrics.store_errors.labels(store=type(store).__name__)
        self._log_limit = _LogLimiter(clock)
        self._connected = False
        self._store_fail_streak = 0  # consecutive failed store writes (slows reconnects)
        #: evaluated readings queued for the store beyond which slices are written before the next intake
        self._pending_limit = 4 * settings.batch_max_readings
        #: offloaded mode: readings handed to the writer process and unreported beyond which no intake is taken
        self._inflight_limit = 4 * settings.batch_max_readings
        #: offloaded mode: readings per job handed to the writer (acks flow back in steps this small)
        self._job_readings = min(OFFLOAD_JOB_READINGS, settings.batch_max_readings)
        #: readings per write transaction: a store may ask for larger ones (one HTTP request per
        #: slice costs a round trip, one SQLite transaction does not)
        self._slice = int(getattr(store, "write_slice_readings", WRITE_SLICE))
        self.batch_errors = 0
        """Batches whose store write or alarm evaluation raised (also logged)."""

    # -- state -------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while connected and subscribed to the broker."""
        return self._connected

    def _set_connected(self, up: bool) -> None:
        self._connected = up
        self.metrics.mqtt_connected.set(1 if up else 0)

    # -- synchronous core ----------------------------------------------------------------
    def process(self, msgs: list[tuple[str, bytes, int]]) -> None:
        """Decode, evaluate and store ``(topic, payload, received_ms)`` messages; never raises on input."""
        self._process(msgs, None, None)

    def _process(self, msgs: Sequence[tuple[str, bytes, int]], mids: list[int] | None,
                 ack: Callable[[list[int]], None] | None) -> bool:
        """Core of ``process`` (all on the calling thread); acks each chunk's ``mids`` after
        its store write. Returns False when a chunk failed to store (its messages stay unacked)."""
        ok = True
        for ch in self._prepare(msgs, mids):
            self._evaluate(ch)
            t0 = time.perf_counter()
            err = self._write(ch.batch)
            stored = self._stored(len(ch.batch) if ch.batch is not None else 0, err, time.perf_counter() - t0)
            if stored and ack is not None and ch.mids:
                ack(ch.mids)
            ok = stored and ok
        return ok

    def _prepare(self, msgs: Sequence[tuple[str, bytes, int]], mids: list[int] | None) -> list[_Chunk]:
        """Decode messages into chunks of at most ``batch_max_readings`` readings."""
        return list(self._chunks(msgs, mids, self._max_readings))

    def _chunks(self, msgs: Sequence[tuple[str, bytes, int]], mids: list[int] | None,
                max_n: int) -> Iterator[_Chunk]:
        """Decode messages lazily into chunks of about ``max_n`` readings (a chunk closes after
        the message that reaches ``max_n``); at least one chunk, even for no readings."""
        builder = BatchBuilder()
        statuses: list[GatewayStatus] = []
        pending: list[int] = []
        decode = self.decoder.decode
        self.metrics.ingest_messages.inc(len(msgs))
        emitted = False
        for i, (topic, payload, received_ms) in enumerate(msgs):
            try:
                out = decode(topic, payload, received_ms, builder)
            except Exception:  # decode is fuzzed never to raise; this keeps the loop alive regardless
                log.exception("decoder raised on a message from %r; message rejected", topic)
                self._reject([Rejection(topic, Reason.BAD_PAYLOAD, "decoder error")])
                out = None
            if out is not None:
                if out.rejections:
                    self._reject(out.rejections)
                if out.status is not None:
                    statuses.append(out.status)
            if mids is not None:
                pending.append(mids[i])
            if len(builder) >= max_n:
                yield _Chunk(self._build(builder), statuses, pending)
                emitted = True
                builder, statuses, pending = BatchBuilder(), [], []
        if len(builder) or statuses or pending or not emitted:
            yield _Chunk(self._build(builder), statuses, pending)

    def _build(self, builder: BatchBuilder) -> ReadingBatch | None:
        """The columnar batch with registry rows (None when the builder is empty)."""
        n = len(builder)
        if not n:
            return None
        rows = builder.rows(self.registry)
        batch = builder.build()
        batch.row = np.fromiter(rows, dtype=np.int32, count=n)
        self.metrics.ingest_readings.inc(n)
        unregistered = n - int(np.count_nonzero(batch.row >= 0))
        if unregistered:
            self.metrics.ingest_unregistered.inc(unregistered)
        return batch

    def _evaluate(self, ch: _Chunk) -> None:
        """Alarm sink first (alarms never wait for the store), then gateway statuses."""
        if ch.batch is not None:
            try:
                self.sink.on_readings(ch.batch, self.clock())
            except Exception:
                self.batch_errors += 1
                log.exception("alarm evaluation of a batch of %d readings failed; continuing", len(ch.batch))
        for st in ch.statuses:
            try:
                self.sink.on_gateway_status(st.enterprise_id, st.device_id, st.online, st.ts_ms)
            except Exception:
                log.exception("gateway status %s/%s handling failed; continuing", st.enterprise_id, st.device_id)

    def _write(self, batch: ReadingBatch | None) -> BaseException | None:
        """Store one batch; the error instead of raising."""
        if batch is None or not len(batch):
            return None
        try:
            self.store.write_readings(batch)
        except Exception as exc:
            return exc
        return None

    def _stored(self, n: int, err: BaseException | None, seconds: float | None, *, quiet: bool = False) -> bool:
        """Count and log the outcome of storing ``n`` readings in ``seconds`` of writes (None: not
        timed here, e.g. a job merged into another's transaction by the writer process)."""
        if not n:
            return True
        if seconds is not None:
            self.metrics.batch_seconds.observe(seconds)
        if err is None:
            self._store_fail_streak = 0
            self.metrics.store_written.inc(n)
            return True
        self._store_fail_streak += 1
        self.batch_errors += 1
        self._store_errors.inc()
        self.metrics.store_failed.inc(n)
        if not quiet:
            log.error("store write of %d readings failed (%s: %s); messages left unacked",
                      n, type(err).__name__, err)
        return False

    def _reject(self, rejections: Sequence[Rejection]) -> None:
        for r in rejections:
            self._rejected[r.reason].inc(r.count)
            if self._log_limit.allow():
                log.warning("rejected %d from %s: %s (%s)", r.count, r.topic, r.reason.value, r.detail)

    # -- MQTT loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe and ingest until cancelled; reconnects with exponential backoff."""
        s = self.settings
        filters = self.decoder.topics.filters(s.enterprises or None)
        backoff = BACKOFF_MIN_S
        errors: tuple[type[Exception], ...] = (*MQTT_ERRORS, _Redeliver)
        while True:
            intake = Intake(s.queue_max_messages, self.clock)
            try:
                if self.writer is not None:
                    self.writer.start()  # before connecting: a no-op while the child runs
                async with MqttSource(s, intake, filters) as source:
                    self._set_connected(True)
                    backoff = BACKOFF_MIN_S
                    log.info("ingest connected to %s as %s (QoS %d), subscribed %s",
                             s.mqtt_url, s.mqtt_client_id, s.mqtt_qos, ", ".join(filters))
                    if self.writer is not None:
                        await self._consume_offloaded(source, intake, self.writer)
                    else:
                        await self._consume(source, intake)
            except errors as exc:
                log.warning("MQTT session ended (%s: %s); reconnecting in %.1f s", type(exc).__name__, exc, backoff)
            except Exception:  # a bug must not end ingest for good
                log.exception("ingest loop failed; reconnecting in %.1f s", backoff)
            finally:
                self._set_connected(False)
                self._drain(intake)
            # a store that keeps failing must not turn redelivery into a tight reconnect loop
            store_wait = min(BACKOFF_MIN_S * 2 ** min(self._store_fail_streak, 10), BACKOFF_MAX_S)
            await asyncio.sleep(max(backoff, store_wait if self._store_fail_streak else 0.0))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _drain(self, intake: Intake) -> None:
        """Process what is left after a disconnect (unacked: QoS 1 ones come again, duplicates are harmless)."""
        with contextlib.suppress(Exception):
            msgs, _mids, dropped, _dq1 = intake.take()
            self._overload(dropped)
            if not msgs:
                return
            if self.writer is None:
                self._process(msgs, None, None)
                return
            w = _Writes()
            for ch in self._prepare(msgs, None):
                self._evaluate(ch)
                if ch.batch is not None:
                    w.pending.append(ch)
            if w.pending:
                self._submit(w, self.writer, lambda _mids: None, asyncio.Event(), asyncio.Event())

    def _overload(self, dropped: int) -> None:
        if dropped:
            self.metrics.ingest_messages.inc(dropped)
            self._rejected[Reason.OVERLOAD].inc(dropped)
            if self._log_limit.allow():
                log.warning("ingest queue full (%d messages): dropped %d, counted as overload",
                            self.settings.queue_max_messages, dropped)

    async def _consume(self, source: MqttSource, intake: Intake) -> None:
        """Take, decode and evaluate batches; store them between intakes, in slices.

        Everything runs on the event loop (no writer thread: sqlite3 re-takes the GIL per
        row, which made a thread convoy with the decoder). Evaluated chunks queue; when the
        intake is empty, the queue becomes one job — merged, ordered by sensor — written one
        slice of about ``WRITE_SLICE`` readings at a time, yielding to the socket and to newly
        arrived messages (decoded and evaluated first) between slices. A job's messages are
        acked when its last slice is stored. When more than ``_pending_limit`` readings wait,
        slices are written before the next intake (backpressure). Alarms never wait for more
        than one slice write.
        """
        disc = asyncio.ensure_future(source.disconnected())
        w = _Writes()
        try:
            while True:
                if not len(intake):
                    if w:  # idle: store a slice, then look at the socket again
                        self._write_slice(w, source.ack)
                        await asyncio.sleep(0)
                        if disc.done():
                            disc.result()  # raises the MqttError
                            return
                        continue
                    arrived = asyncio.ensure_future(intake.arrived.wait())
                    await asyncio.wait((disc, arrived), return_when=asyncio.FIRST_COMPLETED)
                    if not arrived.done():
                        arrived.cancel()
                    if disc.done():
                        disc.result()  # raises the MqttError
                        return
                await self._linger(intake, disc)
                dropped_qos1 = self._intake(intake, w, source.ack)
                while w.pending_n > self._pending_limit:  # backpressure: the store is behind
                    self._write_slice(w, source.ack)
                if dropped_qos1:
                    while w:
                        self._write_slice(w, source.ack)
                    raise _Redeliver(f"{dropped_qos1} QoS 1 messages dropped on overload; reconnecting for redelivery")
        finally:
            disc.cancel()
            if w and not w.failed:
                # the session ended (disconnect or stop): store what was evaluated so that
                # QoS 0 readings are not lost; acks go out only if the session still allows
                with contextlib.suppress(_Redeliver):
                    while w:
                        self._write_slice(w, source.ack)

    def _intake(self, intake: Intake, w: _Writes, ack: Callable[[list[int]], None]) -> int:
        """Take the intake, decode and evaluate it, queue its chunks in ``w.pending``; returns
        the number of QoS 1 messages the intake dropped."""
        msgs, mids, dropped_qos1 = self._take(intake)
        for ch in self._prepare(msgs, mids):
            self._queue(ch, w, ack)
        return dropped_qos1

    def _take(self, intake: Intake) -> tuple[list[tuple[str, bytes, int]], list[int], int]:
        msgs, mids, dropped, dropped_qos1 = intake.take()
        self.metrics.queue_depth.set(len(msgs))
        self._overload(dropped)
        return msgs, mids, dropped_qos1

    def _queue(self, ch: _Chunk, w: _Writes, ack: Callable[[list[int]], None]) -> None:
        """Evaluate a chunk and queue it for the store (a chunk without readings whose messages
        have nothing queued ahead is acked at once)."""
        self._evaluate(ch)
        if ch.batch is None:
            if w.job is None and not w.pending and not w.inflight_jobs:
                if ch.mids:  # nothing stored ahead of it: ack now
                    ack(ch.mids)
            else:  # acks stay in order behind the readings queued before
                w.pending.append(ch)
            return
        w.pending.append(ch)
        w.pending_n += len(ch.batch)

    async def _consume_offloaded(self, source: MqttSource, intake: Intake, writer: OffloadWriter) -> None:
        """``_consume`` with the store writes in ``writer``'s process.

        An intake is decoded, evaluated and handed to the writer in steps of about
        ``OFFLOAD_JOB_READINGS`` readings, one job each (never waiting for the database), with a
        yield to the event loop between steps; a job's messages are acked when the writer
        reports it committed, in order. While more than ``_inflight_limit`` readings are unreported, no intake is taken:
        the intake fills, the socket reader pauses, and back-pressure reaches TCP and the
        broker. A failed job (or a writer that died) ends the session so the broker
        redelivers every unacked message.
        """
        disc = asyncio.ensure_future(source.disconnected())
        w = _Writes(live=True)
        progress = asyncio.Event()
        failed = asyncio.Event()
        failed_wait = asyncio.ensure_future(failed.wait())

        async def wait_for(*futs: asyncio.Future[Any]) -> None:
            await asyncio.wait((disc, failed_wait, *futs), return_when=asyncio.FIRST_COMPLETED)
            for f in futs:
                if not f.done():
                    f.cancel()

        try:
            while True:
                if not len(intake):
                    await wait_for(asyncio.ensure_future(intake.arrived.wait()))
                if w.failed:
                    raise _Redeliver("a batch failed to store; reconnecting so the broker redelivers it")
                if disc.done():
                    disc.result()  # raises the MqttError
                    return
                await self._linger(intake, disc)
                msgs, mids, dropped_qos1 = self._take(intake)
                for ch in self._chunks(msgs, mids, self._job_readings):
                    self._queue(ch, w, source.ack)
                    if w.pending:
                        self._submit(w, writer, source.ack, progress, failed)
                    # let the pipe, the acks (the broker's in-flight window) and the socket move
                    await asyncio.sleep(0)
                    while writer.inflight > self._inflight_limit and not w.failed and not disc.done():
                        progress.clear()
                        await wait_for(asyncio.ensure_future(progress.wait()))
                if dropped_qos1:
                    raise _Redeliver(f"{dropped_qos1} QoS 1 messages dropped on overload; reconnecting for redelivery")
        finally:
            disc.cancel()
            failed_wait.cancel()
            if w.pending and not w.failed:  # the writer stores them (QoS 0 readings are not lost)
                self._submit(w, writer, source.ack, progress, failed)
            w.live = False  # acks of jobs reported after this are moot: the broker resends them

    def _submit(self, w: _Writes, writer: OffloadWriter, ack: Callable[[list[int]], None],
                progress: asyncio.Event, failed: asyncio.Event) -> None:
        """Hand the pending chunks to ``writer`` as one job; its messages are acked on success."""
        chunks, w.pending, w.pending_n = w.pending, [], 0
        batches = [ch.batch for ch in chunks if ch.batch is not None]
        batch = ReadingBatch.concat(batches) if batches else None
        n = len(batch) if batch is not None else 0
        w.inflight_jobs += 1

        def done(err: BaseException | None, seconds: float) -> None:
            w.inflight_jobs -= 1
            first_failure = err is not None and not w.failed
            if err is not None:
                w.failed = True
                failed.set()
            if err is None or first_failure:
                self._stored(n, err, seconds or None)
            else:  # the session is already failing: count, log once (above)
                self._stored(n, err, None, quiet=True)
            if err is None and w.live and not w.failed:
                with contextlib.suppress(*MQTT_ERRORS):
                    for ch in chunks:
                        if ch.mids:
                            ack(ch.mids)
            self.metrics.store_writer_queued.set(writer.inflight)
            self.metrics.store_writer_restarts.set(writer.restarts)
            progress.set()

        writer.submit(batch, done)
        self.metrics.store_writer_queued.set(writer.inflight)

    def close(self) -> None:
        """Let the writer process (if any) commit what it was handed, then stop it (blocking)."""
        if self.writer is not None:
            self.writer.close()

    def _write_slice(self, w: _Writes, ack: Callable[[list[int]], None]) -> None:
        """Write the next slice of the current job (starting one from the pending chunks);
        ack the job's messages after its last slice. Raises ``_Redeliver`` on a store failure."""
        job = w.job
        if job is None:
            job = w.job = self._start_job(w)
        a = int(job.cuts[job.done - 1]) if job.done else 0
        b = int(job.cuts[job.done])
        part = job.batch if (a == 0 and b == len(job.batch)) else job.batch.take(np.arange(a, b))
        t0 = time.perf_counter()
        err = self._write(part)
        job.seconds += time.perf_counter() - t0
        job.done += 1
        if err is not None:
            # the rest of this job and everything queued behind it stay unstored (and unacked):
            # counted; the broker redelivers the QoS 1 ones after the reconnect
            w.failed = True
            w.job = None
            self._stored(len(job.batch) - a + w.pending_n, err, job.seconds)
            w.pending, w.pending_n = [], 0
            raise _Redeliver("a batch failed to store; reconnecting so the broker redelivers it")
        if job.done < len(job.cuts):
            return
        w.job = None
        self._stored(len(job.batch), None, job.seconds)
        with contextlib.suppress(*MQTT_ERRORS):  # after a disconnect the broker resends instead
            for ch in job.chunks:
                if ch.mids:
                    ack(ch.mids)

    def _start_job(self, w: _Writes) -> _Job:
        """Merge the pending chunks into one batch ordered by (sensor row, ts) and cut it into
        slices of at least ``WRITE_SLICE`` readings that end at a sensor boundary."""
        chunks, w.pending, w.pending_n = w.pending, [], 0
        batch = ReadingBatch.concat([ch.batch for ch in chunks if ch.batch is not None])
        n = len(batch)
        size = self._slice
        if n <= size:
            return _Job(chunks, batch, np.array([n], dtype=np.intp))
        batch = batch.take(np.lexsort((batch.ts_ms, batch.row)))
        bounds = np.flatnonzero(batch.row[1:] != batch.row[:-1]) + 1
        cuts: list[int] = []
        end = 0
        while end < n:
            i = int(np.searchsorted(bounds, end + size))
            end = int(bounds[i]) if i < len(bounds) else n
            cuts.append(end)
        return _Job(chunks, batch, np.asarray(cuts, dtype=np.intp))

    async def _linger(self, intake: Intake, disc: asyncio.Future[None]) -> None:
        """Keep reading until the batch is full, old enough, or nothing came during a pause.

        The pause (``IDLE_CLOSE_MS``) is a timer, not ``sleep(0)``: the event loop then runs
        many socket reads per wake-up of this task instead of one.
        """
        max_age = self.settings.batch_max_delay_ms / 1000.0
        pause = min(IDLE_CLOSE_MS / 1000.0, max_age)
        flush_at = min(self._max_readings, intake.limit)
        n_prev = -1
        while True:
            n = len(intake)
            if n >= flush_at or disc.done() or n == n_prev:
                return
            age = time.monotonic() - intake.first_mono
            if age >= max_age:
                return
            n_prev = n
            await asyncio.sleep(min(pause, max_age - age))

__all__ = ["AlarmSink", "OffloadWriter", "Pipeline", "ReadingSink"]
