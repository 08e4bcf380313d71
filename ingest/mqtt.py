"""MQTT source: an aiomqtt connection with a persistent session, manual acks and a bounded intake.

Why aiomqtt plus two private calls rather than paho in a thread: aiomqtt 2.5 drives
paho's socket from the event loop (no thread, no GIL hand-off per message, sink calls
stay on the loop thread as the contract requires) and handles connect/subscribe/
disconnect. It has no public manual-ack switch yet (empicano/aiomqtt#345, PR #346), so
we use the workaround documented there: ``client._client.manual_ack_set(True)`` before
connecting and ``client._client.ack(mid, qos)`` after the store has the readings.
paho 2.x (pinned) implements both. For speed (measured: ingest is bounded by per-message
Python work) the socket reader is ours on plain TCP (``MqttSource._install_reader``): it
splits QoS 0/1 PUBLISH packets itself and appends ``(topic, payload, received_ms)`` to
the intake, and hands every other packet to paho through :class:`FrontSocket`, a third
private hook (paho's ``_sock``). Elsewhere (TLS, QoS 2) paho parses and calls
:meth:`Intake.on_paho_message`. Either way: no aiomqtt ``Message``/``Topic`` objects and no
task per message in ``client.messages``, which is still awaited, only to learn about a
lost connection. The connection lifecycle (connect in an executor, socket callbacks,
subscribe, disconnect) stays aiomqtt's public API.

Overload policy (docs/mqtt.md): the socket reader stops reading while the intake is
full, so unread messages wait in TCP and in the broker; with QoS 1 nothing is acked
before it is stored, so the broker's in-flight window bounds what it sends us and the
rest waits in our persistent session. Over TLS (aiomqtt's own reader, no pause) a
message arriving at a full intake is dropped and counted as ``overload``; a dropped
QoS 1 message is left unacked and the pipeline reconnects so the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as mqtt_client

from plantwatch.settings import Settings

RECV_BYTES = 256 * 1024
"""Bytes asked of the socket per ``recv`` by the fast reader."""
RECVS_PER_WAKE = 4
"""Most ``recv`` calls per readable event before yielding to the event loop (fairness)."""


class FrontSocket:
    """What paho sees as its socket once the fast reader owns the real one: ``recv`` serves
    only the packets the reader hands over (``feed``); everything else (send, close,
    fileno, ...) is the real socket's."""

    __slots__ = ("_sock", "buf", "eof")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.buf = bytearray()
        self.eof = False

    def recv(self, n: int) -> bytes:
        if not self.buf:
            if self.eof:
                return b""
            raise BlockingIOError
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ProtocolError(Exception):
    """The byte stream from the broker is not MQTT 3.1.1."""


def split_packets(buf: bytearray, intake: Intake, to_paho: Callable[[bytes], bool]) -> tuple[int, bool]:
    """Take complete MQTT 3.1.1 packets off the front of ``buf``: QoS 0/1 PUBLISH packets go to
    ``intake`` (``put(topic, payload, packet id or 0)``), any other packet whole to ``to_paho``
    (which returns False when the session ended). Stops before a PUBLISH when the intake is
    full. Returns ``(bytes consumed, stopped for a full intake)``; the caller deletes them.
    """
    pos = 0
    n = len(buf)
    put = intake.put
    msgs = intake.msgs
    limit = intake.limit
    while n - pos >= 2:
        h = buf[pos]
        k = pos + 1
        mult = 1
        rl = 0
        while True:  # remaining length: 1-4 bytes, 7 bits each, little end first
            if k >= n:
                return pos, False
            d = buf[k]
            k += 1
            rl += (d & 127) * mult
            if d < 128:
                break
            mult <<= 7
            if k - pos > 4:
                raise ProtocolError("remaining length longer than 4 bytes")
        end = k + rl
        if end > n:
            return pos, False
        if h >> 4 == 3 and h & 6 != 6 and h & 6 != 4:  # PUBLISH at QoS 0 or 1
            if len(msgs) >= limit:
                return pos, True
            if rl < 2:
                raise ProtocolError("PUBLISH without a topic")
            o = k + 2 + ((buf[k] << 8) | buf[k + 1])
            p0 = o + 2 if h & 2 else o
            if p0 > end:
                raise ProtocolError("PUBLISH topic or packet id beyond the packet")
            mid = (buf[o] << 8) | buf[o + 1] if h & 2 else 0
            raw = bytes(buf[k + 2:o])
            try:
                topic = raw.decode()
            except UnicodeDecodeError:  # brokers enforce UTF-8 topics; keep it countable anyway
                topic = raw.decode("utf-8", "replace")
            put(topic, bytes(buf[p0:end]), mid)
        elif not to_paho(bytes(buf[pos:end])):
            return end, False
        pos = end
    return pos, False


class Intake:
    """Bounded buffer between the MQTT reader and the pipeline (both on the event-loop thread).

    Holds ``(topic, payload, received_ms)`` per message and the message's packet id
    (0 for QoS 0, nothing to ack). ``limit`` is the bound in messages.
    """

    __slots__ = ("_clock", "arrived", "dropped", "dropped_qos1", "first_mono", "limit", "mids", "msgs",
                 "resume")

    def __init__(self, limit: int, clock: Callable[[], int]) -> None:
        self.limit = limit
        self._clock = clock
        self.msgs: list[tuple[str, bytes, int]] = []
        self.mids: list[int] = []
        self.dropped = 0  # since the last take(): messages dropped for overload
        self.dropped_qos1 = 0  # of which unacked QoS 1 (the broker redelivers them after a reconnect)
        self.first_mono = 0.0  # time.monotonic() of the first message since the last take()
        self.arrived = asyncio.Event()
        self.resume: Callable[[], None] | None = None  # set by a paused socket reader

    def __len__(self) -> int:
        return len(self.msgs)

    def put(self, topic: str, payload: bytes, mid: int) -> None:
        """Add one message, or drop and count it when the intake is full."""
        if len(self.msgs) >= self.limit:
            self.dropped += 1
            if mid:
                self.dropped_qos1 += 1
            return
        if not self.msgs:
            self.first_mono = time.monotonic()
            self.arrived.set()
        self.msgs.append((topic, payload, self._clock()))
        self.mids.append(mid)

    def take(self) -> tuple[list[tuple[str, bytes, int]], list[int], int, int]:
        """Everything buffered: ``(msgs, mids, dropped, dropped_qos1)``; the intake is left empty."""
        out = (self.msgs, self.mids, self.dropped, self.dropped_qos1)
        self.msgs, self.mids = [], []
        self.dropped = self.dropped_qos1 = 0
        self.arrived.clear()
        if self.resume is not None:
            resume, self.resume = self.resume, None
            resume()
        return out

    def on_paho_message(self, _client: object, _userdata: object, message: Any) -> None:
        """paho ``on_message`` callback (runs on the event-loop thread, inside aiomqtt's reader)."""
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers enforce UTF-8 topics; keep it countable anyway
            topic = message._topic.decode("utf-8", "replace")
        self.put(topic, message.payload, message.mid if message.qos else 0)


class _LevelGate:
    """A ``log(level, fmt, *args)`` front for paho that drops records below the level the
    wrapped logger had enabled when the connection was made (one comparison per call)."""

    __slots__ = ("_logger", "_min")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._min = logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.INFO

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if level >= self._min:
            self._logger.log(level, fmt, *args)


class MqttSource:
    """One broker connection: ``async with MqttSource(settings, intake, filters) as src``.

    Connects to ``settings.mqtt_url`` as ``settings.mqtt_client_id``; with QoS 1 the
    session is persistent (clean_session=False) and acks are manual (:meth:`ack`).
    Subscribes ``filters`` at ``settings.mqtt_qos`` on entry.
    """

    def __init__(self, settings: Settings, intake: Intake, filters: list[str], *, keepalive_s: int = 30) -> None:
        url = urlsplit(settings.mqtt_url)
        self.qos = settings.mqtt_qos
        self.filters = filters
        tls = aiomqtt.TLSParameters() if url.scheme == "mqtts" else None
        self.client = aiomqtt.Client(
            settings.mqtt_host,
            settings.mqtt_port,
            username=url.username,
            password=url.password,
            identifier=settings.mqtt_client_id,
            clean_session=self.qos == 0,
            keepalive=keepalive_s,
            tls_params=tls,
        )
        self._intake = intake
        self._paho: Any = self.client._client  # private: see module docstring
        self._paho.on_message = intake.on_paho_message
        # aiomqtt hands paho a logger, and paho calls Logger.log twice per message (packet in,
        # PUBACK out) at DEBUG: ~1.5 us per message, 8 % of the single-reading path. Forward
        # only what the logger would emit (warnings and errors unless "mqtt" is at DEBUG).
        self._paho.enable_logger(cast(logging.Logger, _LevelGate(self.client._logger)))  # duck-typed: .log()
        if self.qos:
            self._paho.manual_ack_set(True)

    async def __aenter__(self) -> MqttSource:
        await self.client.__aenter__()
        try:
            self._install_reader()
            for f in self.filters:
                await self.client.subscribe(f, qos=self.qos)
        except BaseException:
            await self.client.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    def _install_reader(self) -> None:
        """Replace aiomqtt's socket reader by one that reads in bulk and splits PUBLISH
        packets itself.

        aiomqtt's reader calls ``paho.loop_read()`` once per readable event, which reads one
        packet in three or more ``recv`` calls and builds an ``MQTTMessage``: about 60 us per
        message here, a quarter of the pipeline's time on 100-reading batches. Ours (plain
        TCP, MQTT 3.1.1; TLS and v5 keep aiomqtt's reader) reads up to ``RECV_BYTES`` per
        ``recv``, hands QoS 0/1 PUBLISH packets straight to the intake (``split_packets``,
        ~10 us per message) and feeds every other packet (SUBACK, PINGRESP, ...) to paho
        through :class:`FrontSocket`, so paho's session state, keepalive and acks work as
        before. It stops reading while the intake is full (back-pressure: unread data waits
        in TCP and the broker) and resumes from its own buffer first. Errors end the session
        exactly as aiomqtt's reader does.
        """
        paho = self._paho
        sock = paho.socket()
        if sock is None or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
            return
        if getattr(paho, "_protocol", mqtt_client.MQTTv311) not in (mqtt_client.MQTTv31, mqtt_client.MQTTv311):
            return
        loop = asyncio.get_running_loop()
        fd = sock.fileno()
        intake = self._intake
        disconnected: asyncio.Future[None] = self.client._disconnected  # private, as aiomqtt's reader uses it
        front = FrontSocket(sock)
        paho._sock = front  # private: paho reads only what we feed it from now on
        buf = bytearray()
        time_func = mqtt_client.time_func

        def to_paho(packet: bytes) -> bool:
            front.buf += packet
            paho.loop_read()
            return paho.socket() is front

        def drain() -> bool:
            """Split what is buffered; False when the reader paused or the session ended."""
            used, full = split_packets(buf, intake, to_paho)
            del buf[:used]
            if paho.socket() is not front:
                return False
            if full:
                loop.remove_reader(fd)
                intake.resume = resume
                return False
            return True

        def resume() -> None:
            try:
                if paho.socket() is front and drain():
                    loop.add_reader(fd, on_readable)
            except Exception as exc:
                if not disconnected.done():
                    disconnected.set_exception(exc)

        def on_readable() -> None:
            try:
                for _ in range(RECVS_PER_WAKE):
                    try:
                        data = sock.recv(RECV_BYTES)
                    except BlockingIOError:
                        return
                    if not data:  # EOF: let paho see it and end the session its way
                        front.eof = True
                        paho.loop_read()
                        return
                    buf.extend(data)
                    paho._last_bytes_received = time_func()  # keepalive bookkeeping paho would do
                    if not drain():
                        return
                    if len(data) < RECV_BYTES:
                        return
            except Exception as exc:
                if not disconnected.done():
                    disconnected.set_exception(exc)

        loop.remove_reader(fd)
        loop.add_reader(fd, on_readable)

    def ack(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages by packet id (0 = QoS 0, skipped); a no-op when disconnected."""
        if not self.qos:
            return
        ack = self._paho.ack
        for mid in mids:
            if mid:
                ack(mid, 1)

    async def disconnected(self) -> None:
        """Return never; raises :class:`aiomqtt.MqttError` when the connection is lost."""
        async for _ in self.client.messages:  # pragma: no cover - our queue never yields
            pass
        raise aiomqtt.MqttError("message iteration ended")  # pragma: no cover


MQTT_ERRORS: tuple[type[Exception], ...] = (aiomqtt.MqttError, OSError)
"""Exceptions that mean "the connection failed; reconnect with backoff"."""


__all__ = ["MQTT_ERRORS", "Intake", "MqttSource"]
