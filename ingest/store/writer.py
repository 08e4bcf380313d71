"""SQLite reading writes in a child process, so the event loop never waits for the database.

Why a process: the ingest loop (decode, registry rows, alarm engine) and the SQLite
writer together need more than one core at 500 k readings/s, and a writer *thread*
convoys with the decoder on the GIL (``sqlite3`` re-takes it per row). The child owns
the only reading-write connection to ``readings.sqlite3``; the parent keeps its own
read connections (WAL lets them read while the child writes).

Protocol (parent → child on the child's stdin, one frame per job)::

    u32 frame length | u64 job id | u32 n | u32 keys length
    i64 ts[n] | f64 value[n] | i64 received[n] | i32 row[n] | u8 ts_source[n] | keys (JSON)

``keys`` names what the child cannot know from the row numbers: ``rows`` lists
``[row, enterprise, sensor, device]`` for registry rows it has not been told about yet
(each row once per child; registry rows never move), ``unreg`` lists ``[index,
enterprise, sensor, device]`` for readings of unregistered sensors (row -1).

Child → parent on its stdout: ``ready`` once the database is open, then one line per
transaction: ``ok FIRST LAST SECONDS`` or ``err FIRST LAST MESSAGE``. The child merges
every job already waiting in the pipe into one transaction (up to ``MERGE_MAX_READINGS``):
under load transactions grow and each sensor's readings become one chunk row per
transaction instead of one per job, so the writer speeds up exactly when it has to. A job
is reported only after its transaction committed (durable against a process kill: WAL,
``synchronous=NORMAL``), so the pipeline acks the job's MQTT messages only then.

If the child dies, every job it had not reported fails (its messages stay unacked and the
broker redelivers them); the next job starts a new child. If the parent dies, the child
reads to the end of its stdin, commits what arrived and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ingest.batch import ReadingBatch
from ingest.store.base import StoreError

log = logging.getLogger("plantwatch.store.writer")

MERGE_MAX_READINGS = 400_000
"""Most readings the child commits in one transaction (several jobs merged)."""
LINGER_BELOW_READINGS = 100_000
LINGER_S = 0.010
"""A transaction of fewer readings waits up to this long (s) for more jobs to merge: each
sensor costs one chunk row per transaction, so fewer, fuller transactions write faster
(acks wait as long; alarms do not)."""
PIPE_BYTES = 1 << 20
"""Requested capacity of the pipe to the child (Linux ``F_SETPIPE_SZ``; best effort)."""
_LEN = struct.Struct("<I")
_HEAD = struct.Struct("<QII")

Done = Callable[[BaseException | None, float], None]
"""Job completion callback: ``(error or None, seconds of the transaction that stored it)``."""


# -- wire format (pure) --------------------------------------------------------------------
def encode_job(job_id: int, batch: ReadingBatch, told: npt.NDArray[np.bool_] | None = None) -> bytes:
    """One frame for ``batch``; marks the rows it introduces in ``told`` (grown by the caller)."""
    n = len(batch)
    row = batch.row.astype(np.int32, copy=False)
    keys: dict[str, list[list[Any]]] = {}
    reg = np.flatnonzero(row >= 0)
    if len(reg):
        rr = row[reg]
        new = reg if told is None else reg[~told[rr]]
        if len(new):
            _, first = np.unique(row[new], return_index=True)
            pick = new[first]
            ent, sen, dev = batch.enterprise_id, batch.sensor_id, batch.device_id
            keys["rows"] = [[int(row[i]), ent[i], sen[i], dev[i]] for i in pick.tolist()]
            if told is not None:
                told[row[pick]] = True
    unreg = np.flatnonzero(row < 0)
    if len(unreg):
        ent, sen, dev = batch.enterprise_id, batch.sensor_id, batch.device_id
        keys["unreg"] = [[i, ent[i], sen[i], dev[i]] for i in unreg.tolist()]
    kb = orjson.dumps(keys) if keys else b""
    body = b"".join((
        _HEAD.pack(job_id, n, len(kb)),
        batch.ts_ms.astype("<i8", copy=False).tobytes(),
        batch.value.astype("<f8", copy=False).tobytes(),
        batch.received_ms.astype("<i8", copy=False).tobytes(),
        row.astype("<i4", copy=False).tobytes(),
        batch.ts_source.astype(np.uint8, copy=False).tobytes(),
        kb,
    ))
    return _LEN.pack(len(body)) + body


@dataclass(slots=True)
class Job:
    """A decoded frame: columns plus the string keys it carried."""

    job_id: int
    ts_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    received_ms: npt.NDArray[np.int64]
    row: npt.NDArray[np.int32]
    ts_source: npt.NDArray[np.uint8]
    rows: list[list[Any]]
    unreg: list[list[Any]]


def decode_job(body: bytes | memoryview) -> Job:
    """Inverse of :func:`encode_job` (without the length prefix)."""
    job_id, n, klen = _HEAD.unpack_from(body, 0)
    o = _HEAD.size

    def col(dtype: str, size: int) -> Any:
        nonlocal o
        a = np.frombuffer(body, dtype=dtype, count=n, offset=o)  # read-only views of the frame
        o += size * n
        return a

    ts = col("<i8", 8)
    value = col("<f8", 8)
    recv = col("<i8", 8)
    row = col("<i4", 4)
    src = col("u1", 1)
    keys = orjson.loads(bytes(body[o:o + klen])) if klen else {}
    return Job(job_id, ts, value, recv, row, src, keys.get("rows", []), keys.get("unreg", []))


class KeyTable:
    """Child side: registry row → (enterprise, sensor, device), as the parent told it."""

    def __init__(self) -> None:
        self.ent = np.full(1024, "", dtype=object)
        self.sen = np.full(1024, "", dtype=object)
        self.dev = np.full(1024, "", dtype=object)

    def batch(self, job: Job) -> ReadingBatch:
        """The job as a :class:`ReadingBatch` with its strings filled in."""
        for r, e, s, d in job.rows:
            if r >= len(self.ent):
                size = max(r + 1, 2 * len(self.ent))
                for name in ("ent", "sen", "dev"):
                    grown = np.full(size, "", dtype=object)
                    old = getattr(self, name)
                    grown[: len(old)] = old
                    setattr(self, name, grown)
            self.ent[r], self.sen[r], self.dev[r] = e, s, d
        idx = np.maximum(job.row, 0)
        ent, sen, dev = self.ent[idx], self.sen[idx], self.dev[idx]
        for i, e, s, d in job.unreg:
            ent[i], sen[i], dev[i] = e, s, d
        return ReadingBatch(ent, dev, sen, job.ts_ms, job.value, job.ts_source, job.received_ms, job.row)


class FrameReader:
    """Length-prefixed frames from a file descriptor (blocking or not)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def frames(self, *, block: bool, max_bytes: int = 1 << 62, wait_s: float = 0.0) -> list[bytes]:
        """Complete frames available now (waiting for at least one when ``block``, or up to
        ``wait_s`` for more data otherwise); [] at EOF."""
        out: list[bytes] = []
        taken = 0
        while True:
            while len(self.buf) >= 4 and taken < max_bytes:
                (size,) = _LEN.unpack_from(self.buf, 0)
                if len(self.buf) < 4 + size:
                    break
                out.append(bytes(self.buf[4:4 + size]))
                del self.buf[:4 + size]
                taken += size
            if self.eof or taken >= max_bytes:
                return out
            if not (block and not out):
                ready, _, _ = select.select([self.fd], [], [], wait_s)
                wait_s = 0.0
                if not ready:
                    return out
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.eof = True
            self.buf += chunk


# -- child ---------------------------------------------------------------------------------
def serve(path: Path, synchronous: str, fd_in: int, fd_out: int) -> None:
    """Child main loop: read jobs, commit them (merged), report; returns at EOF on ``fd_in``."""
    from ingest.store.sqlite import SQLiteReadingStore

    store = SQLiteReadingStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    reader = FrameReader(fd_in)
    table = KeyTable()
    os.write(fd_out, b"ready\n")
    try:
        while True:
            budget = MERGE_MAX_READINGS * 29  # 29 B per reading
            frames = reader.frames(block=True, max_bytes=budget)
            if not frames:
                return
            size = sum(map(len, frames))
            if size < LINGER_BELOW_READINGS * 29:  # a thin transaction: give the next jobs a moment
                frames += reader.frames(block=False, max_bytes=budget - size, wait_s=LINGER_S)
            jobs = [decode_job(f) for f in frames]
            batches = [table.batch(j) for j in jobs if len(j.ts_ms)]
            t0 = time.perf_counter()
            try:
                if batches:
                    store.write_readings(ReadingBatch.concat(batches))
            except Exception as exc:
                log.error("writer: transaction of jobs %d..%d failed: %s", jobs[0].job_id, jobs[-1].job_id, exc)
                msg = " ".join(str(exc).split())[:500] or type(exc).__name__
                line = f"err {jobs[0].job_id} {jobs[-1].job_id} {msg}\n"
            else:
                line = f"ok {jobs[0].job_id} {jobs[-1].job_id} {time.perf_counter() - t0:.6f}\n"
            data = line.encode()
            while data:
                data = data[os.write(fd_out, data):]
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m ingest.store.writer PATH [SYNCHRONOUS]``: the child's entry point."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    fd_out = os.dup(1)  # the protocol channel; nothing else may write to it
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(Path(args[0]), args[1] if len(args) > 1 else "NORMAL", 0, fd_out)


# -- parent --------------------------------------------------------------------------------
class WriterDied(StoreError):
    """The writer process ended before reporting a job."""


@dataclass(slots=True)
class _Pending:
    job_id: int
    n: int
    done: Done


class WriterProcess:
    """Parent side: hands batches to the writer child without blocking the event loop.

    :meth:`submit` frames a batch and queues it (written to the pipe as the child reads;
    the event loop is never blocked); completions come back through the loop's reader on
    the child's stdout and run each job's ``done`` callback, in submission order.
    ``inflight`` is the number of readings submitted and not yet reported (the pipeline's
    back-pressure measure). :meth:`close` waits (blocking) until everything submitted is
    committed and the child has exited.
    """

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.inflight = 0
        self.restarts = 0
        self.ready = False
        """The current child has opened the database."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[_Pending] = deque()
        self._out = bytearray()
        self._in = bytearray()
        self._told = np.zeros(1024, dtype=bool)
        self._next_id = 1
        self._writing = False

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first job or after it died)."""
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "ingest.store.writer", str(self.path), self.synchronous],  # -P: not cwd
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env, close_fds=True)
        assert proc.stdin is not None
        assert proc.stdout is not None
        with contextlib.suppress(AttributeError, OSError):
            import fcntl

            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(proc.stdout.fileno(), self._on_readable)
        self._told[:] = False
        self.ready = False
        self._out.clear()
        self._in.clear()
        self._writing = False
        log.info("store writer process %d started for %s", proc.pid, self.path)
        return proc

    def start(self, *, wait_s: float = 0.0) -> None:
        """Start the child now (otherwise the first job does); call on the event-loop thread.
        With ``wait_s``, block up to that long until the child has opened the database."""
        if self._proc is None:
            self._proc = self._spawn()
        proc = self._proc
        deadline = time.monotonic() + wait_s
        while not self.ready and proc.stdout is not None and time.monotonic() < deadline:
            select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            self._on_readable()
            if self._proc is not proc:
                break

    def submit(self, batch: ReadingBatch | None, done: Done) -> None:
        """Queue ``batch`` (None or empty: a marker that completes in order) for the child.
        Must be called on the event-loop thread."""
        proc = self._proc
        if proc is None:
            proc = self._proc = self._spawn()
        b = batch if batch is not None else ReadingBatch.empty()
        if len(b) and int(b.row.max()) >= len(self._told):
            grown = np.zeros(max(int(b.row.max()) + 1, 2 * len(self._told)), dtype=bool)
            grown[: len(self._told)] = self._told
            self._told = grown
        job_id = self._next_id
        self._next_id += 1
        self._out += encode_job(job_id, b, self._told)
        self._pending.append(_Pending(job_id, len(b), done))
        self.inflight += len(b)
        self._flush()

    def _flush(self) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        fd = proc.stdin.fileno()
        try:
            while self._out:
                k = os.write(fd, self._out)
                del self._out[:k]
        except BlockingIOError:
            pass
        except OSError:  # broken pipe: the child is gone; its stdout EOF reports it
            self._out.clear()
        if self._out and not self._writing and self._loop is not None:
            self._loop.add_writer(fd, self._flush)
            self._writing = True
        elif not self._out and self._writing and self._loop is not None:
            self._loop.remove_writer(fd)
            self._writing = False

    def _on_readable(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            data = os.read(proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._died()
            return
        self._in += data
        self._parse()

    def _parse(self) -> None:
        while True:
            end = self._in.find(b"\n")
            if end < 0:
                return
            line = bytes(self._in[:end]).decode("utf-8", "replace")
            del self._in[:end + 1]
            self._report(line)

    def _report(self, line: str) -> None:
        if line == "ready":
            self.ready = True
            return
        kind, first, last, rest = [*line.split(" ", 3), "", "", ""][:4]
        lo, hi = int(first), int(last)
        err: BaseException | None = None
        seconds = 0.0
        if kind == "ok":
            seconds = float(rest)
        else:
            err = StoreError("sqlite", "write_readings", rest)
        while self._pending and self._pending[0].job_id <= hi:
            p = self._pending.popleft()
            self.inflight -= p.n
            if p.job_id >= lo:
                self._call(p, err, seconds if p.job_id == hi else 0.0)

    def _call(self, p: _Pending, err: BaseException | None, seconds: float) -> None:
        try:
            p.done(err, seconds)
        except Exception:
            log.exception("store writer: completion callback of job %d failed", p.job_id)

    def _died(self, *, closing: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._loop is not None:
            if proc.stdout is not None:
                self._loop.remove_reader(proc.stdout.fileno())
            if self._writing and proc.stdin is not None:
                self._loop.remove_writer(proc.stdin.fileno())
        self._writing = False
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        rc = proc.wait()
        if not closing:
            self.restarts += 1
        pending, self._pending = self._pending, deque()
        self.inflight = 0
        if pending:
            log.error("store writer process %d exited (code %s) with %d jobs unreported; they count as failed",
                      proc.pid, rc, len(pending))
        err = WriterDied("sqlite", "write_readings", f"writer process exited with code {rc}")
        for p in pending:
            self._call(p, err, 0.0)

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what is queued, let the child commit it and exit; run the remaining callbacks.
        Blocking; safe to call twice."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(proc.stdout.fileno())
            if self._writing:
                self._loop.remove_writer(proc.stdin.fileno())
        self._writing = False
        os.set_blocking(proc.stdin.fileno(), True)
        with contextlib.suppress(OSError):  # a raw pipe may take a write in parts
            view = memoryview(bytes(self._out))
            while view:
                view = view[os.write(proc.stdin.fileno(), view):]
        self._out.clear()
        with contextlib.suppress(OSError):
            proc.stdin.close()
        os.set_blocking(proc.stdout.fileno(), True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            self._in += data
            self._parse()
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("store writer process %d did not exit in %.0f s; killed", proc.pid, timeout_s)
            proc.kill()
            proc.wait()
        self._loop = None
        self._died(closing=True)  # fails whatever the child never reported


if __name__ == "__main__":
    main()


class ThreadWriter:
    """The :class:`WriterProcess` contract for a store whose writes block on the network
    (InfluxDB): one worker thread takes the submitted jobs in order, merges what is queued
    (up to ``merge_readings``) into one ``store.write_readings`` call, and reports each job
    back on the event loop, in submission order. The event loop never waits for an HTTP
    request; ``inflight`` gives the pipeline its back-pressure measure as for the process.
    A failed write fails every job merged into it (the session then reconnects and the
    broker redelivers). :meth:`close` waits until everything submitted has been written."""

    pid = None
    ready = True
    restarts = 0

    def __init__(self, store: Any, *, merge_readings: int = 50_000) -> None:
        self.store = store
        self.merge_readings = merge_readings
        self.inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[tuple[ReadingBatch | None, Done] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, *, wait_s: float = 0.0) -> None:
        """Start the worker (on the event-loop thread, whose loop receives the reports)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def submit(self, batch: ReadingBatch | None, done: Done) -> None:
        self.start()
        self.inflight += len(batch) if batch is not None else 0
        self._jobs.put((batch, done))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs = [job]
            n = len(job[0]) if job[0] is not None else 0
            while n < self.merge_readings:  # merge what is already queued into one request
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._jobs.put(None)  # stop after this write
                    break
                jobs.append(nxt)
                n += len(nxt[0]) if nxt[0] is not None else 0
            batches = [b for b, _ in jobs if b is not None and len(b)]
            err: BaseException | None = None
            t0 = time.perf_counter()
            try:
                if batches:
                    self.store.write_readings(ReadingBatch.concat(batches))
            except Exception as exc:  # reported to every merged job; the pipeline decides
                err = exc
            seconds = time.perf_counter() - t0
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for the report
                self._loop.call_soon_threadsafe(self._report, jobs, err, seconds)

    def _report(self, jobs: list[tuple[ReadingBatch | None, Done]], err: BaseException | None,
                seconds: float) -> None:
        for batch, done in jobs:
            self.inflight -= len(batch) if batch is not None else 0
            done(err, seconds / len(jobs))

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what was submitted, then stop the worker (blocking, up to ``timeout_s``)."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # keep it: a second worker on the same queue could reorder writes
            log.error("store writer thread still writing after %.0f s; %d readings not confirmed",
                      timeout_s, self.inflight)
            return
        self._thread = None
