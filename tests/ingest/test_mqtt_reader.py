"""The fast MQTT reader's packet splitter (``ingest.mqtt.split_packets``), a pure function:
PUBLISH packets at QoS 0/1 to the intake, everything else whole to paho, packets cut at
every byte boundary, a full intake, and malformed streams. The reader itself runs against a
real Mosquitto in every test of tests/ingest/test_mqtt_e2e.py."""

from __future__ import annotations

import struct

import pytest

from ingest.mqtt import Intake, ProtocolError, split_packets


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        d, n = n % 128, n // 128
        out.append(d | (128 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int = 1, mid: int = 7, dup: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | (8 if dup else 0)]) + varint(len(body)) + body


SUBACK = bytes([0x90, 3, 0, 1, 1])
PINGRESP = bytes([0xD0, 0])


def run(stream: bytes, limit: int = 1000, step: int | None = None) -> tuple[Intake, list[bytes], bytearray]:
    """Feed ``stream`` (all at once, or ``step`` bytes at a time) as the reader does."""
    intake = Intake(limit, lambda: 5)
    to_paho: list[bytes] = []

    def hand(p: bytes) -> bool:
        to_paho.append(p)
        return True

    buf = bytearray()
    chunks = [stream] if step is None else [stream[i:i + step] for i in range(0, len(stream), step)]
    for c in chunks:
        buf += c
        used, _full = split_packets(buf, intake, hand)
        del buf[:used]
    return intake, to_paho, buf


def test_publish_to_intake_other_packets_to_paho() -> None:
    big = b"x" * 20_000  # remaining length takes 3 bytes
    stream = (SUBACK + publish(b"plants/e1/gw1/telemetry", b'{"v":1}', qos=1, mid=258)
              + publish(b"plants/e1/gw1/status", b"online", qos=0) + PINGRESP
              + publish(b"plants/e1/gw2/telemetry", big, qos=1, mid=65535, dup=True))
    intake, paho, rest = run(stream)
    assert intake.msgs == [("plants/e1/gw1/telemetry", b'{"v":1}', 5), ("plants/e1/gw1/status", b"online", 5),
                           ("plants/e1/gw2/telemetry", big, 5)]
    assert intake.mids == [258, 0, 65535]
    assert paho == [SUBACK, PINGRESP]
    assert rest == b""


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64])
def test_packets_cut_anywhere_come_out_whole(step: int) -> None:
    stream = b"".join(publish(f"plants/e1/gw1/t{i}".encode(), bytes([i]) * (i * 37), qos=i % 2, mid=i + 1)
                      for i in range(1, 12)) + PINGRESP
    whole, whole_paho, _ = run(stream)
    cut, cut_paho, rest = run(stream, step=step)
    assert cut.msgs == whole.msgs
    assert cut.mids == whole.mids
    assert cut_paho == whole_paho == [PINGRESP]
    assert rest == b""


def test_full_intake_stops_before_the_next_publish_and_keeps_it() -> None:
    stream = b"".join(publish(b"t/a/b/telemetry", str(i).encode(), mid=i + 1) for i in range(5))
    intake = Intake(3, lambda: 0)
    buf = bytearray(stream)
    used, full = split_packets(buf, intake, lambda p: True)
    assert full
    assert len(intake.msgs) == 3
    assert intake.dropped == 0  # nothing dropped: the rest waits in the buffer
    del buf[:used]
    intake.take()
    used, full = split_packets(buf, intake, lambda p: True)
    assert not full
    assert [m[1] for m in intake.msgs] == [b"3", b"4"]
    assert used == len(buf)


def test_qos2_publish_goes_to_paho() -> None:
    p2 = publish(b"t/a/b/telemetry", b"x", qos=2, mid=9)
    intake, paho, _ = run(p2)
    assert intake.msgs == []
    assert paho == [p2]


def test_non_utf8_topic_is_kept_countable() -> None:
    intake, _, _ = run(publish(b"plants/\xff/gw/telemetry", b"{}", qos=0))
    assert intake.msgs[0][0] == "plants/\ufffd/gw/telemetry"


def test_paho_ending_the_session_stops_the_split() -> None:
    stream = PINGRESP + publish(b"t/a/b/telemetry", b"x", qos=0)
    intake = Intake(10, lambda: 0)
    used, full = split_packets(bytearray(stream), intake, lambda p: False)
    assert (used, full) == (len(PINGRESP), False)
    assert intake.msgs == []


@pytest.mark.parametrize("stream", [
    bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),  # remaining length of 5 bytes
    bytes([0x30, 1, 0]),  # PUBLISH too short for its topic length
    bytes([0x32, 4, 0, 9, ord("a"), ord("b")]),  # topic longer than the packet
])
def test_malformed_stream_is_a_protocol_error(stream: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_packets(bytearray(stream), Intake(10, lambda: 0), lambda p: True)
