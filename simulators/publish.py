"""Publish a scenario (or a recorded CSV) over MQTT per docs/mqtt.md, paced by a virtual clock.

One MQTT connection per gateway, each with its last will ``offline`` (retained, QoS 1)
on ``{prefix}/{enterprise_id}/{device_id}/status`` and a retained ``online`` once
connected. A gateway death drops that connection without DISCONNECT, so the broker
itself publishes the will; when the gateway comes back it reconnects and publishes
``online``. At the end each gateway publishes ``offline`` (retained) and disconnects
cleanly (``announce_offline=False`` leaves the last status as it is).

Pacing: message at virtual time t goes out at wall time ``wall0 + (t − start)/speed``;
``speed = math.inf`` (or ≤ 0) publishes as fast as the broker takes it. Publishes are
pipelined in windows of up to ``window`` messages: a window is confirmed (written for
QoS 0, PUBACKed for QoS 1) before the next virtual-time sleep or the next window, so
memory stays bounded and a slow broker slows the simulator down instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from simulators.stream import Message, plant_messages, read_csv, replay_messages, status_topic

if TYPE_CHECKING:
    from simulators.scenario import Scenario


@dataclass(slots=True)
class PublishStats:
    """What a run published. ``start_ms`` is the virtual start used (labels need it)."""

    start_ms: int = 0
    end_ms: int = 0
    messages: int = 0
    readings: int = 0
    status: int = 0
    wills: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    max_lag_s: float = 0.0
    stopped: bool = False

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0


def is_fast(speed: float) -> bool:
    return speed <= 0 or math.isinf(speed)


def default_start_ms(duration_s: float, speed: float, now_ms: int | None = None) -> int:
    """A start such that virtual time reaches ``now`` when the run ends: ``now`` at speed 1,
    ``now − duration`` as fast as possible (timestamps never run ahead of the wall clock)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if is_fast(speed):
        return now - round(duration_s * 1000)
    if speed <= 1.0:
        return now
    return now - round(duration_s * 1000 * (1.0 - 1.0 / speed))


def _broker(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"MQTT URL must look like mqtt://host:port, got {url!r}")
    user = unquote(parts.username) if parts.username else None
    pw = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or 1883, user, pw


class _Gateways:
    """One aiomqtt client per gateway, each with its last will on the status topic."""

    def __init__(self, url: str, prefix: str, qos: int, stats: PublishStats) -> None:
        self.host, self.port, self.user, self.pw = _broker(url)
        self.prefix = prefix
        self.qos = qos
        self.stats = stats
        self.clients: dict[tuple[str, str], aiomqtt.Client] = {}
        self._tag = f"{os.getpid()}-{id(self) & 0xFFFF:x}"

    async def connect(self, dev: tuple[str, str]) -> aiomqtt.Client:
        topic = status_topic(self.prefix, *dev)
        client = aiomqtt.Client(self.host, self.port, username=self.user, password=self.pw,
                                identifier=f"plantsim-{dev[0]}-{dev[1]}-{self._tag}",
                                will=aiomqtt.Will(topic, b"offline", qos=1, retain=True),
                                keepalive=30, max_inflight_messages=1000, timeout=30.0)
        await client.__aenter__()
        client.pending_calls_threshold = 1 << 30  # we pipeline on purpose
        self.clients[dev] = client
        return client

    async def die(self, dev: tuple[str, str]) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the last will."""
        client = self.clients.pop(dev, None)
        if client is None:
            return
        # aiomqtt has no public "die" call; shutting the socket down is what a power
        # cut looks like to the broker.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(client._disconnected), 10.0)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
        self.stats.wills += 1

    async def close(self, announce_offline: bool) -> None:
        for dev, client in list(self.clients.items()):
            with contextlib.suppress(aiomqtt.MqttError):
                if announce_offline:
                    await client.publish(status_topic(self.prefix, *dev), b"offline", qos=1, retain=True)
                    self.stats.status += 1
                await client.__aexit__(None, None, None)
        self.clients.clear()


async def _drain(infos: list[Any], disconnected: list[asyncio.Future[None]]) -> None:
    """Wait until paho has written (QoS 0) or got PUBACKs for (QoS 1) every message.

    Polls the MessageInfo objects (cheap; each poll lets the event loop run the
    client's socket callbacks) instead of one awaited future per message.
    """
    for info in infos:
        while not info.is_published():
            for d in disconnected:
                if d.done():
                    raise aiomqtt.MqttError("connection lost while publishing")
            await asyncio.sleep(0.0005)


async def run_messages(messages: Iterable[Message], mqtt_url: str, *, start_ms: int, speed: float = 1.0,
                       qos: int = 1, prefix: str = "plants", stop: asyncio.Event | None = None,
                       window: int = 2048, announce_offline: bool = True) -> PublishStats:
    """Publish a time-ordered message stream, pacing by virtual time from ``start_ms``."""
    if qos not in (0, 1):
        raise ValueError(f"qos must be 0 or 1, got {qos}")
    loop = asyncio.get_running_loop()
    stats = PublishStats(start_ms=start_ms, end_ms=start_ms)
    gws = _Gateways(mqtt_url, prefix, qos, stats)
    fast = is_fast(speed)
    pending: list[Any] = []  # paho MessageInfo of data messages not yet confirmed

    async def flush() -> None:
        if pending:
            await _drain(pending, [c._disconnected for c in gws.clients.values()])
            pending.clear()

    wall0 = loop.time()
    try:
        for msg in messages:
            if stop is not None and stop.is_set():
                stats.stopped = True
                break
            if not fast:
                due = wall0 + (msg.t_ms - start_ms) / 1000.0 / speed
                wait = due - loop.time()
                if wait > 0.002:
                    await flush()
                    wait = due - loop.time()
                    if wait > 0:
                        if stop is None:
                            await asyncio.sleep(wait)
                        else:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), wait)
                            if stop.is_set():
                                stats.stopped = True
                                break
                stats.max_lag_s = max(stats.max_lag_s, loop.time() - due)
            stats.end_ms = msg.t_ms
            client = gws.clients.get(msg.device)
            if msg.kind == "will":
                await flush()
                await gws.die(msg.device)
                continue
            if client is None:
                await flush()
                client = await gws.connect(msg.device)
            if msg.kind == "online":
                await flush()
                await client.publish(msg.topic, msg.payload, qos=1, retain=True)
                stats.status += 1
                continue
            # paho directly: aiomqtt would create and await one future per message
            info = client._client.publish(msg.topic, msg.payload, qos, msg.retain)
            if info.rc != 0:
                raise aiomqtt.MqttCodeError(info.rc, f"could not publish to {msg.topic}")
            pending.append(info)
            stats.messages += 1
            stats.readings += msg.readings
            stats.bytes += len(msg.payload)
            if len(pending) >= window:
                await flush()
        await flush()
    finally:
        pending.clear()
        await gws.close(announce_offline)
        stats.wall_s = loop.time() - wall0
    return stats


async def run(scenario: Scenario, mqtt_url: str, *, speed: float = 1.0, qos: int = 1, batch: bool = True,
              prefix: str = "plants", stop: asyncio.Event | None = None, start_ms: int | None = None,
              seed: int | None = None, duration_s: float | None = None, announce_offline: bool = True
              ) -> PublishStats:
    """Publish ``scenario`` to the broker at ``mqtt_url`` and return what was sent.

    ``speed`` is the virtual-clock factor (N× real time; ``math.inf`` = as fast as
    possible). ``start_ms`` defaults to the scenario's start, else to
    :func:`default_start_ms`. ``seed``/``duration_s`` override the scenario's. Stops
    early when ``stop`` is set. Usable inside any running event loop.
    """
    if seed is not None:
        scenario = scenario.with_seed(seed)
    if duration_s is not None:
        scenario = scenario.with_duration(duration_s)
    start = start_ms if start_ms is not None else scenario.start_ms
    if start is None:
        start = default_start_ms(scenario.duration_s, speed)
    plant = scenario.plant(start)
    return await run_messages(plant_messages(plant, batch=batch, prefix=prefix), mqtt_url, start_ms=start,
                              speed=speed, qos=qos, prefix=prefix, stop=stop, announce_offline=announce_offline)


async def replay(path: Path, mqtt_url: str, *, speed: float = 1.0, qos: int = 1, batch: bool = True,
                 prefix: str = "plants", stop: asyncio.Event | None = None, start_ms: int | None = None,
                 keep_ts: bool = False, announce_offline: bool = True) -> PublishStats:
    """Replay a recorded CSV (``ts_ms,enterprise_id,device_id,sensor,value``).

    Timestamps are shifted so the first row lands at ``start_ms`` (default: as for
    :func:`run`), unless ``keep_ts``.
    """
    rec = read_csv(path)
    if not rec.rows:
        return PublishStats()
    first = rec.rows[0][0]
    if keep_ts:
        start = first
    elif start_ms is not None:
        start = start_ms
    else:
        start = default_start_ms(rec.span_ms / 1000.0, speed)
    msgs = replay_messages(rec, batch=batch, prefix=prefix, shift_ms=start - first)
    return await run_messages(msgs, mqtt_url, start_ms=start, speed=speed, qos=qos, prefix=prefix, stop=stop,
                              announce_offline=announce_offline)
