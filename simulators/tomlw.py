"""A minimal TOML writer for the flat tables this package emits (registries, scenarios)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def value(v: Any) -> str:
    """One TOML value: bool, int, float, string, inline table or array."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def tables(name: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``[[name]]`` array-of-tables lines; ``None`` values and empty tables are left out."""
    out: list[str] = []
    for row in rows:
        out.append(f"[[{name}]]")
        out += [f"{k} = {value(v)}" for k, v in row.items() if v is not None and v != {} and v != ()]
        out.append("")
    return out


def registry_toml(reg: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Render ``Scenario.registry()`` as ``[[enterprise]]``/``[[sensor]]`` TOML tables."""
    return "\n".join(tables("enterprise", reg["enterprise"]) + tables("sensor", reg["sensor"]))
