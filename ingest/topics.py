"""MQTT topic contract v1 (docs/mqtt.md): parse ``{prefix}/{enterprise}/{device}/{channel}``.

The parser is compiled once from the configured prefix (Telegraf's ``topic_parser``
habit), so the hot path is one ``startswith`` and one ``split``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Channel(StrEnum):
    """Last topic level: what the message carries."""

    TELEMETRY = "telemetry"
    STATUS = "status"


class TopicParts(NamedTuple):
    """The variable levels of a contract topic."""

    enterprise_id: str
    device_id: str
    channel: Channel


_CHANNELS: dict[str, Channel] = {c.value: c for c in Channel}


class TopicParser:
    """Parses contract topics under one prefix (``plants`` by default).

    ``parse`` returns ``None`` for any topic that does not have exactly the shape
    ``{prefix}/{enterprise_id}/{device_id}/telemetry|status`` with non-empty ids.
    """

    __slots__ = ("_head", "_head_len", "prefix")

    def __init__(self, prefix: str = "plants") -> None:
        prefix = prefix.strip("/")
        if not prefix or "+" in prefix or "#" in prefix:
            raise ValueError(f"topic prefix must be non-empty and without wildcards, got {prefix!r}")
        self.prefix = prefix
        self._head = prefix + "/"
        self._head_len = len(self._head)

    def parse(self, topic: str) -> TopicParts | None:
        """Split a topic into its parts, or ``None`` when it is not a contract topic."""
        if not topic.startswith(self._head):
            return None
        parts = topic[self._head_len:].split("/")
        if len(parts) != 3:
            return None
        ent, dev, chan = parts
        channel = _CHANNELS.get(chan)
        if channel is None or not ent or not dev:
            return None
        return TopicParts(ent, dev, channel)

    def filters(self, enterprises: list[str] | None = None) -> list[str]:
        """Subscription filters: everything under the prefix, or under each listed enterprise.

        Wider than the two contract shapes on purpose: a gateway publishing to a wrong
        shape (``plants/e1/gw1/data``) is then counted as ``bad_topic`` instead of being
        ignored by the broker without a trace.
        """
        if not enterprises:
            return [f"{self.prefix}/#"]
        return [f"{self.prefix}/{e}/#" for e in enterprises]

    def telemetry(self, enterprise_id: str, device_id: str) -> str:
        """Topic on which a gateway publishes readings."""
        return f"{self.prefix}/{enterprise_id}/{device_id}/{Channel.TELEMETRY.value}"

    def status(self, enterprise_id: str, device_id: str) -> str:
        """Topic of a gateway's retained online/offline status (its last will)."""
        return f"{self.prefix}/{enterprise_id}/{device_id}/{Channel.STATUS.value}"


__all__ = ["Channel", "TopicParser", "TopicParts"]
