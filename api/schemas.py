"""Request bodies; validation errors name the offending field (FastAPI 422 ``loc``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plantwatch.domain import KIND_NAMES


class EnterpriseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)
    name: str = ""
    region: str = ""
    production_status: Literal["normal", "suspended", "limited"] = "normal"
    capacity_kw: float | None = Field(default=None, gt=0)


class EnterprisePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    region: str | None = None
    production_status: Literal["normal", "suspended", "limited"] | None = None
    capacity_kw: float | None = Field(default=None, gt=0)


class SensorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enterprise_id: str = Field(min_length=1, max_length=128)
    id: str = Field(min_length=1, max_length=128)
    kind: str = Field(description="one of: " + ", ".join(KIND_NAMES))
    device_id: str = ""
    area: str = ""
    unit: str = ""
    interval_s: float | None = Field(default=None, gt=0)
    thresholds: dict[Literal["blue", "yellow", "orange", "red"], float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)

    def as_mapping(self) -> dict[str, Any]:
        d = self.model_dump()
        if d["interval_s"] is None:
            d.pop("interval_s")
        return d


class ActionIn(BaseModel):
    """Acknowledge / close / note: a named person and a comment are both required."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200, description="name of the person acting")
    comment: str = Field(min_length=1, max_length=4000, description="what was seen or done")


class ShelveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=4000)
    duration_s: float = Field(gt=0, le=7 * 86400, description="shelve for this many seconds (max 7 days)")


class OutOfServiceIn(BaseModel):
    """Maintenance: who, why, and for how long the sensor's readings are not evaluated."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=4000)
    duration_s: float = Field(gt=0, le=7 * 86400, description="out of service for this many seconds (max 7 days)")


class RemoveIn(BaseModel):
    """Decommissioning: who removes the sensor and why (kept in the registry and as an alarm note)."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=4000)
