"""EventHub: filtering, and the stated overflow policy (disconnect, never silently skip)."""

from __future__ import annotations

from plantwatch.domain import Level
from plantwatch.hub import EventHub


async def test_filters_by_enterprise_and_level() -> None:
    hub = EventHub()
    all_ = hub.subscribe()
    e1_orange = hub.subscribe("E1", Level.ORANGE)
    hub.publish({"n": 1}, "E1", Level.YELLOW)
    hub.publish({"n": 2}, "E2", Level.RED)
    hub.publish({"n": 3}, "E1", Level.RED)
    assert [all_.queue.get_nowait() for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert e1_orange.queue.get_nowait() == {"n": 3}
    assert e1_orange.queue.empty()


async def test_slow_subscriber_is_disconnected_not_skipped() -> None:
    hub = EventHub(queue_size=3)
    slow = hub.subscribe()
    for i in range(5):
        hub.publish({"n": i}, "E1", Level.BLUE)
    assert slow.overflowed
    assert len(hub) == 0
    items = []
    while not slow.queue.empty():
        items.append(slow.queue.get_nowait())
    assert items[-1] is None  # end-of-stream marker: the WebSocket closes with 1013


async def test_changes_of_shelved_alarms_reach_only_subscribers_that_include_them() -> None:
    hub = EventHub()
    everything = hub.subscribe()
    paging = hub.subscribe(include_shelved=False)
    hub.publish({"n": 1}, "E1", Level.YELLOW, notify=False)  # a shelved alarm moved
    hub.publish({"n": 2}, "E1", Level.YELLOW)
    assert [everything.queue.get_nowait() for _ in range(2)] == [{"n": 1}, {"n": 2}]
    assert paging.queue.get_nowait() == {"n": 2}
    assert paging.queue.empty()
