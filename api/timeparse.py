"""Parsing of time query parameters: epoch milliseconds or RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time_ms(value: str, field: str) -> int:
    """Epoch ms from ``"1795459488123"`` or ``"2026-11-23T10:00:00Z"``; ValueError names ``field``."""
    v = value.strip()
    if v.lstrip("-").isdigit():
        return int(v)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: expected epoch milliseconds or an RFC 3339 time, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
