"""Service settings from the environment (``PLANTWATCH_*``) and an optional TOML file.

Precedence: explicit keyword arguments > environment > the ``[plantwatch]`` table of
the file named by ``PLANTWATCH_CONFIG`` > defaults. The same file may hold the
registry (``[[enterprise]]`` and ``[[sensor]]`` tables).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class _TomlTableSource(PydanticBaseSettingsSource):
    """Reads the ``[plantwatch]`` table of the PLANTWATCH_CONFIG file, if any."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("PLANTWATCH_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            try:
                raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"PLANTWATCH_CONFIG={path}: cannot read config: {exc}") from None
            table = raw.get("plantwatch", {})
            if not isinstance(table, dict):
                raise ValueError(f"PLANTWATCH_CONFIG={path}: [plantwatch] must be a table")
            self._data = table

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """All runtime settings; units in the field names (``_ms``, ``_s``, ``_bytes``)."""

    model_config = SettingsConfigDict(env_prefix="PLANTWATCH_", extra="ignore")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = "plantwatch-ingest"
    mqtt_qos: Literal[0, 1] = 1
    topic_prefix: str = "plants"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./var")
    config: Path | None = None
    store: Literal["sqlite", "influx"] = "sqlite"
    store_writer: Literal["process", "inline"] = "process"  # off the event loop: SQLite child process, Influx thread
    influx_url: str = "http://127.0.0.1:8086"
    influx_token: str = ""
    influx_org: str = "plantwatch"
    influx_bucket: str = "plantwatch"
    max_message_bytes: int = Field(256 * 1024, gt=0)
    max_future_skew_s: float = Field(300.0, gt=0)
    max_past_age_s: float = Field(7 * 86400.0, gt=0)
    batch_max_readings: int = Field(50_000, gt=0)
    batch_max_delay_ms: int = Field(50, gt=0)
    queue_max_messages: int = Field(100_000, gt=0)
    tick_interval_ms: int = Field(1000, gt=0)
    buffer_max_bytes: int = Field(1 << 30, gt=4096)  # InfluxDB outage spool bound
    compact_interval_s: float = Field(3600.0, gt=0)  # SQLite store: merge closed hours' chunks
    snapshot_interval_s: float = Field(10.0, gt=0)  # alarm engine restore point (a crash replays readings since)
    enterprises: list[str] = Field(default_factory=list)  # partition: empty = all
    log_level: str = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp") or not parts.hostname:
            raise ValueError(f"PLANTWATCH_MQTT_URL must look like mqtt://host:port, got {v!r}")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v or any(c in v for c in "+#"):
            raise ValueError(f"PLANTWATCH_TOPIC_PREFIX must be a non-empty topic level without wildcards, got {v!r}")
        return v

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or (8883 if self.mqtt_url.startswith("mqtts") else 1883)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlTableSource(settings_cls))
