"""Fan-out of alarm events to WebSocket subscribers with a bounded queue per subscriber.

Overflow policy: a subscriber whose queue is full is disconnected (it is told so and
can reconnect and re-read ``GET /api/v1/alarms``); events are never silently skipped
for a subscriber that stays connected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from plantwatch.domain import Level


@dataclass(eq=False)
class Subscriber:
    """One WebSocket client; ``enterprise_id``/``min_level`` filter what it receives, and
    ``include_shelved=False`` drops changes of shelved alarms (``notify`` false)."""

    queue: asyncio.Queue[dict[str, Any] | None]
    enterprise_id: str | None = None
    min_level: Level = Level.NONE
    include_shelved: bool = True
    overflowed: bool = field(default=False)


class EventHub:
    """Publishes JSON-ready event dicts to every matching subscriber (event-loop thread only)."""

    def __init__(self, queue_size: int = 10_000) -> None:
        self._subs: set[Subscriber] = set()
        self._queue_size = queue_size

    def subscribe(self, enterprise_id: str | None = None, min_level: Level = Level.NONE,
                  include_shelved: bool = True) -> Subscriber:
        sub = Subscriber(asyncio.Queue(self._queue_size), enterprise_id, min_level, include_shelved)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def __len__(self) -> int:
        return len(self._subs)

    @staticmethod
    def _takes(sub: Subscriber, enterprise_id: str, level: Level, notify: bool) -> bool:
        return ((sub.enterprise_id is None or sub.enterprise_id == enterprise_id) and level >= sub.min_level
                and (notify or sub.include_shelved))

    def wanted(self, enterprise_id: str, level: Level, notify: bool = True) -> bool:
        """Whether any subscriber takes such a message (the caller may skip building it)."""
        return any(self._takes(sub, enterprise_id, level, notify) for sub in self._subs)

    def publish(self, message: dict[str, Any], enterprise_id: str, level: Level, notify: bool = True) -> None:
        for sub in list(self._subs):
            if not self._takes(sub, enterprise_id, level, notify):
                continue
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.overflowed = True
                self._subs.discard(sub)
                # make room for the end-of-stream marker so the reader wakes and closes
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    def close(self) -> None:
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        self._subs.clear()
