"""Settings: environment beats the config file, invalid values are named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from plantwatch.settings import Settings


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pw.toml"
    cfg.write_text('[plantwatch]\ntopic_prefix = "site"\nhttp_port = 9000\n')
    monkeypatch.setenv("PLANTWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("PLANTWATCH_HTTP_PORT", "9100")
    s = Settings()
    assert s.topic_prefix == "site"
    assert s.http_port == 9100
    assert s.config == cfg


def test_mqtt_url_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_MQTT_URL", "mqtt://10.1.2.3:1884")
    s = Settings()
    assert (s.mqtt_host, s.mqtt_port) == ("10.1.2.3", 1884)


@pytest.mark.parametrize(("var", "value", "field"), [
    ("PLANTWATCH_MQTT_URL", "http://x", "mqtt_url"),
    ("PLANTWATCH_TOPIC_PREFIX", "a/#", "topic_prefix"),
    ("PLANTWATCH_HTTP_PORT", "70000", "http_port"),
])
def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=field):
        Settings()
