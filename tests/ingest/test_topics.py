"""Topic parser: contract v1 shapes, compiled from the prefix."""

from __future__ import annotations

import pytest

from ingest.topics import Channel, TopicParser, TopicParts

CASES = [
    ("plants/e1/gw1/telemetry", TopicParts("e1", "gw1", Channel.TELEMETRY)),
    ("plants/e1/gw1/status", TopicParts("e1", "gw1", Channel.STATUS)),
    ("plants/ent-α/gw 1/telemetry", TopicParts("ent-α", "gw 1", Channel.TELEMETRY)),
    ("plants/e1/gw1", None),  # too short
    ("plants/e1/gw1/telemetry/x", None),  # too long
    ("plants//gw1/telemetry", None),  # empty enterprise
    ("plants/e1//telemetry", None),  # empty device
    ("plants/e1/gw1/data", None),  # unknown channel
    ("plants/e1/gw1/Telemetry", None),  # channels are case-sensitive
    ("other/e1/gw1/telemetry", None),  # wrong prefix
    ("plantsX/e1/gw1/telemetry", None),  # prefix must be a whole level
    ("/plants/e1/gw1/telemetry", None),
    ("", None),
]


@pytest.mark.parametrize(("topic", "expected"), CASES)
def test_parse_default_prefix(topic: str, expected: TopicParts | None) -> None:
    assert TopicParser("plants").parse(topic) == expected


def test_multi_level_prefix_is_compiled_once() -> None:
    p = TopicParser("/site/a/")
    assert p.parse("site/a/e1/gw1/status") == TopicParts("e1", "gw1", Channel.STATUS)
    assert p.parse("site/e1/gw1/status") is None


def test_filters_cover_all_enterprises_or_a_partition() -> None:
    p = TopicParser("plants")
    assert p.filters() == ["plants/#"]
    assert p.filters(["e1", "e2"]) == ["plants/e1/#", "plants/e2/#"]
    assert p.telemetry("e1", "gw1") == "plants/e1/gw1/telemetry"
    assert p.status("e1", "gw1") == "plants/e1/gw1/status"


@pytest.mark.parametrize("prefix", ["", "/", "a/+", "#"])
def test_invalid_prefix_fails_at_start(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        TopicParser(prefix)
