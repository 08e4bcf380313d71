"""Enterprise risk colour from its alarms (DOMAIN.md "Enterprise colour", a proposal).

red    if any open red alarm, or ≥ ``orange_count`` alarms reached orange (or above)
       within the last ``window_ms``;
orange if any open orange alarm; yellow if any open yellow alarm; else blue.

"Open" means the condition is present or held: status active (including a latched
red alarm) or acknowledged. A cleared alarm waiting to be closed no longer shows a
risk unless ``include_cleared`` is set. The 24 h count includes closed alarms, so
pass the enterprise's open alarms plus those raised in the window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from alerts.model import Alarm
from plantwatch.domain import AlarmStatus, Level

DAY_MS = 24 * 3_600_000


def _is_open(a: Alarm, include_cleared: bool) -> bool:
    if a.status in (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED):
        return True
    return include_cleared and a.status is AlarmStatus.CLEARED


def _orange_at(a: Alarm) -> int | None:
    """When the alarm first reached orange or above (ms), or None if it never did."""
    if a.peak_level < Level.ORANGE:
        return None
    at = a.extra.get("orange_at")
    return int(at) if at is not None else a.raised_at


def enterprise_colour(alarms: Iterable[Alarm], now_ms: int, *, window_ms: int = DAY_MS,
                      orange_count: int = 3, include_cleared: bool = False) -> Level:
    """Risk colour of one enterprise from its alarms at ``now_ms`` (epoch ms); never NONE."""
    worst = Level.BLUE
    recent_orange = 0
    since = now_ms - window_ms
    for a in alarms:
        if _is_open(a, include_cleared) and a.level > worst:
            worst = a.level
        at = _orange_at(a)
        if at is not None and since < at <= now_ms:
            recent_orange += 1
    if recent_orange >= orange_count:
        return Level.RED
    return worst


def enterprise_colours(alarms: Iterable[Alarm], now_ms: int, *, window_ms: int = DAY_MS,
                       orange_count: int = 3, include_cleared: bool = False) -> dict[str, Level]:
    """Colour per enterprise id present in ``alarms``; enterprises without alarms are blue."""
    by_ent: defaultdict[str, list[Alarm]] = defaultdict(list)
    for a in alarms:
        by_ent[a.enterprise_id].append(a)
    return {e: enterprise_colour(v, now_ms, window_ms=window_ms, orange_count=orange_count,
                                 include_cleared=include_cleared) for e, v in by_ent.items()}


__all__ = ["DAY_MS", "enterprise_colour", "enterprise_colours"]
