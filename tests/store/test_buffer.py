"""The durable spool on a real directory: order, bounds, restart, torn and corrupt records."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.store.base import BufferFull
from ingest.store.buffer import HEADER_BYTES, Spool


def _drain(sp: Spool) -> list[bytes]:
    out = []
    while (p := sp.peek()) is not None:
        out.append(p)
        sp.ack()
    return out


def test_fifo_order_and_byte_accounting(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10_000)
    recs = [bytes([i]) * (i + 1) for i in range(20)]
    for r in recs:
        sp.append(r)
    assert sp.records == 20
    assert sp.bytes == sum(len(r) + HEADER_BYTES for r in recs)
    assert sp.peek() == recs[0]
    assert sp.peek() == recs[0]  # peek does not consume
    assert _drain(sp) == recs
    assert sp.empty
    assert sp.bytes == 0
    sp.close()


def test_full_spool_refuses_and_writes_nothing(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 100 + 2 * HEADER_BYTES, near_full_ratio=0.8)
    sp.append(b"a" * 50)
    assert not sp.near_full
    sp.append(b"b" * 40)  # 90 + 16 = 106 of 116 bytes: >= 80 %
    assert sp.near_full
    before = sp.bytes
    with pytest.raises(BufferFull) as ei:
        sp.append(b"c" * 11)
    assert ei.value.used_bytes == before
    assert ei.value.max_bytes == 116
    assert sp.bytes == before
    sp.append(b"d" * 2)  # exactly fills the bound
    assert sp.bytes == sp.max_bytes
    sp.close()
    sp2 = Spool(tmp_path, 116)  # nothing of the refused record reached the disk
    assert _drain(sp2) == [b"a" * 50, b"b" * 40, b"d" * 2]
    sp2.close()


def test_spool_survives_restart_and_resumes_after_cursor(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 20, segment_bytes=200)  # small segments: several files
    recs = [f"record-{i:03d}".encode() * 5 for i in range(30)]
    for r in recs:
        sp.append(r)
    assert len(list(tmp_path.glob("seg-*.log"))) > 3
    for _ in range(12):
        sp.peek()
        sp.ack()
    sp.close()
    sp2 = Spool(tmp_path, 1 << 20, segment_bytes=200)
    assert sp2.records == 18
    sp2.append(b"after-restart")
    assert _drain(sp2) == [*recs[12:], b"after-restart"]
    # consumed segments are deleted
    assert len(list(tmp_path.glob("seg-*.log"))) <= 1
    sp2.close()
    sp3 = Spool(tmp_path, 1 << 20)
    assert sp3.empty
    sp3.close()


def test_torn_tail_is_cut_on_recovery(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 20)
    sp.append(b"complete-1")
    sp.append(b"complete-2")
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    with open(seg, "ab") as f:  # a write cut short by a crash: header says 100 bytes, 5 arrived
        f.write((100).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"short")
    size_with_tail = seg.stat().st_size
    sp2 = Spool(tmp_path, 1 << 20)
    assert seg.stat().st_size == size_with_tail - 13
    assert _drain(sp2) == [b"complete-1", b"complete-2"]
    sp2.close()


def test_corrupt_record_in_older_segment_is_skipped_and_counted(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 20, segment_bytes=1)  # one record per segment
    for r in (b"first", b"second", b"third"):
        sp.append(r)
    sp.close()
    segs = sorted(tmp_path.glob("seg-*.log"))
    assert len(segs) == 3
    data = bytearray(segs[1].read_bytes())
    data[-1] ^= 0xFF  # flip a payload bit: CRC mismatch
    segs[1].write_bytes(bytes(data))
    sp2 = Spool(tmp_path, 1 << 20)
    assert sp2.corrupt_bytes == len(data)
    assert _drain(sp2) == [b"first", b"third"]
    sp2.close()


def test_corrupt_cursor_falls_back_to_oldest_record(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 20)
    for r in (b"x", b"y", b"z"):
        sp.append(r)
    sp.peek()
    sp.ack()
    sp.close()
    (tmp_path / "cursor").write_bytes(b"garbage")
    sp2 = Spool(tmp_path, 1 << 20)
    assert _drain(sp2) == [b"x", b"y", b"z"]  # at-least-once: re-sent rather than lost
    sp2.close()
