"""Durable outage buffer: an append-only on-disk FIFO of byte records (the "spool").

Layout in ``directory``: segment files ``seg-000000000001.log`` ... and a ``cursor``
file naming the first unconsumed record. A record is a header ``<u32 length, u32
crc32>`` followed by ``length`` payload bytes; the CRC covers the length field and the
payload.

Policies:
- **fsync**: :meth:`Spool.append` writes the record and ``fsync``s the segment before
  returning (and the directory when a segment is created), so an appended record
  survives a process kill *and* a power loss. The cursor is replaced atomically
  (write, fsync, rename) after each :meth:`Spool.ack`; if the process dies between a
  successful send and the cursor update the record is sent again (InfluxDB overwrites
  a point with the same series and timestamp, so the resend is harmless).
- **bounds**: the bytes of unconsumed records (headers included) never exceed
  ``max_bytes``; :meth:`append` raises :class:`BufferFull` instead (nothing written).
  ``near_full`` turns true at ``near_full_ratio`` of ``max_bytes``.
- **recovery**: on open, segments are scanned from the cursor. A torn or corrupt
  record at the tail of the newest segment (a write that never returned) is cut off;
  corruption inside an older segment skips the rest of that segment and is counted in
  ``corrupt_bytes`` (logged), never silently re-read.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import deque
from pathlib import Path
from typing import NamedTuple

from ingest.store.base import BufferFull, StoreError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
HEADER_BYTES = _HEADER.size
_CURSOR = struct.Struct("<QQI")  # segment number, offset, crc32 of the first 16 bytes


class _Rec(NamedTuple):
    seg: int
    offset: int
    length: int  # payload bytes


def _crc(length: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little")))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Bounded, crash-safe FIFO of byte records on disk (one producer, one consumer; thread-safe)."""

    def __init__(self, directory: Path, max_bytes: int, *, segment_bytes: int = 64 << 20,
                 near_full_ratio: float = 0.8, fsync: bool = True) -> None:
        if max_bytes <= HEADER_BYTES:
            raise ValueError(f"max_bytes must exceed {HEADER_BYTES}, got {max_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.near_full_ratio = near_full_ratio
        self._fsync = fsync
        self._lock = threading.Lock()
        self._recs: deque[_Rec] = deque()
        self._bytes = 0
        self.corrupt_bytes = 0
        self._wfd: int | None = None  # active segment for appends
        self._wseg = 0
        self._wsize = 0
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- paths ---------------------------------------------------------------------------
    def _seg_path(self, seg: int) -> Path:
        return self.directory / f"seg-{seg:012d}.log"

    def _segments(self) -> list[int]:
        out = []
        for p in self.directory.glob("seg-*.log"):
            try:
                out.append(int(p.stem[4:]))
            except ValueError:
                continue
        return sorted(out)

    # -- recovery ------------------------------------------------------------------------
    def _read_cursor(self) -> tuple[int, int]:
        try:
            raw = (self.directory / "cursor").read_bytes()
        except FileNotFoundError:
            return (0, 0)
        if len(raw) != _CURSOR.size:
            log.error("spool %s: cursor file has %d bytes; starting from the oldest segment", self.directory, len(raw))
            return (0, 0)
        seg, off, crc = _CURSOR.unpack(raw)
        if zlib.crc32(raw[:16]) != crc:
            log.error("spool %s: cursor checksum mismatch; starting from the oldest segment", self.directory)
            return (0, 0)
        return (seg, off)

    def _recover(self) -> None:
        cseg, coff = self._read_cursor()
        segs = self._segments()
        for i, seg in enumerate(segs):
            path = self._seg_path(seg)
            if seg < cseg:
                path.unlink()  # fully consumed before the last shutdown
                continue
            start = coff if seg == cseg else 0
            data = path.read_bytes()
            off = start
            last = i == len(segs) - 1
            while off < len(data):
                if off + HEADER_BYTES > len(data):
                    bad = True
                else:
                    length, crc = _HEADER.unpack_from(data, off)
                    end = off + HEADER_BYTES + length
                    bad = end > len(data) or _crc(length, data[off + HEADER_BYTES:end]) != crc
                if bad:
                    if last:
                        log.warning("spool %s: cutting a torn record at %s:%d (%d bytes)",
                                    self.directory, path.name, off, len(data) - off)
                        with open(path, "r+b") as f:
                            f.truncate(off)
                            os.fsync(f.fileno())
                    else:
                        self.corrupt_bytes += len(data) - off
                        log.error("spool %s: corrupt record at %s:%d; skipping %d bytes of that segment",
                                  self.directory, path.name, off, len(data) - off)
                    break
                self._recs.append(_Rec(seg, off, length))
                self._bytes += HEADER_BYTES + length
                off = end
        self._wseg = max(segs[-1] if segs else 0, cseg) + 1  # appends always go to a fresh segment
        self._drop_consumed_segments()

    # -- producer ------------------------------------------------------------------------
    def append(self, payload: bytes) -> None:
        """Append one record durably; raises :class:`BufferFull` (nothing written) when it does not fit."""
        need = HEADER_BYTES + len(payload)
        with self._lock:
            if self._closed:
                raise StoreError("spool", "append", "spool is closed")
            if self._bytes + need > self.max_bytes:
                raise BufferFull("spool", self._bytes, self.max_bytes, need)
            if self._wfd is None or self._wsize >= self.segment_bytes:
                self._open_segment()
            assert self._wfd is not None
            off = self._wsize
            try:
                os.write(self._wfd, _HEADER.pack(len(payload), _crc(len(payload), payload)) + payload)
                if self._fsync:
                    os.fsync(self._wfd)
            except OSError as exc:
                os.ftruncate(self._wfd, off)  # leave no half record behind
                raise StoreError("spool", "append", f"{self._seg_path(self._wseg)}: {exc}") from None
            self._wsize += need
            self._recs.append(_Rec(self._wseg, off, len(payload)))
            self._bytes += need

    def _open_segment(self) -> None:
        if self._wfd is not None:
            os.close(self._wfd)
            self._wseg += 1
        path = self._seg_path(self._wseg)
        self._wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._wsize = os.fstat(self._wfd).st_size
        if self._fsync:
            _fsync_dir(self.directory)

    # -- consumer ------------------------------------------------------------------------
    def peek(self) -> bytes | None:
        """The oldest unconsumed record's payload, or None when empty."""
        with self._lock:
            if not self._recs:
                return None
            rec = self._recs[0]
            fd = os.open(self._seg_path(rec.seg), os.O_RDONLY)
            try:
                data = os.pread(fd, rec.length, rec.offset + HEADER_BYTES)
            finally:
                os.close(fd)
            if len(data) != rec.length:
                raise StoreError("spool", "peek", f"{self._seg_path(rec.seg)}: short read at {rec.offset}")
            return data

    def ack(self) -> None:
        """Consume the oldest record (after it was delivered); persists the cursor."""
        with self._lock:
            if not self._recs:
                return
            rec = self._recs.popleft()
            self._bytes -= HEADER_BYTES + rec.length
            nxt = self._recs[0] if self._recs else None
            cur = (nxt.seg, nxt.offset) if nxt is not None else (rec.seg, rec.offset + HEADER_BYTES + rec.length)
            self._write_cursor(*cur)
            self._drop_consumed_segments()

    def _write_cursor(self, seg: int, off: int) -> None:
        head = struct.pack("<QQ", seg, off)
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "wb") as f:
            f.write(head + struct.pack("<I", zlib.crc32(head)))
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")

    def _drop_consumed_segments(self) -> None:
        oldest = self._recs[0].seg if self._recs else None
        for seg in self._segments():
            if (oldest is None or seg < oldest) and not (self._wfd is not None and seg == self._wseg):
                self._seg_path(seg).unlink(missing_ok=True)
        if oldest is None and self._wfd is not None and self._wsize > 0:
            # everything consumed: start the next append in a fresh segment, drop this one
            os.close(self._wfd)
            self._wfd = None
            self._seg_path(self._wseg).unlink(missing_ok=True)
            self._wseg += 1
            self._wsize = 0

    # -- state ---------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        """Bytes of unconsumed records, headers included."""
        return self._bytes

    @property
    def records(self) -> int:
        return len(self._recs)

    @property
    def empty(self) -> bool:
        return not self._recs

    @property
    def near_full(self) -> bool:
        return self._bytes >= self.near_full_ratio * self.max_bytes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None


__all__ = ["HEADER_BYTES", "Spool"]
