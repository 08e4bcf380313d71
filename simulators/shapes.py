"""Time shapes of incidents and the overlay records that apply them to sensor columns.

A shape maps seconds since the event start (numpy array) to a factor in [0, 1]. Shapes
are pure functions of time, so a value is the same whether computed in a stream block
or when deriving ground-truth labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Shape = Callable[[F64], F64]
Mode = Literal["add", "scale", "set"]


def rise(duration_s: float, tau_s: float, decay_s: float) -> Shape:
    """First-order rise ``1 - exp(-t/tau)`` during the event, exponential decay after it."""

    def f(t: F64) -> F64:
        tt = np.clip(t, 0.0, duration_s)
        up = -np.expm1(-tt / tau_s)
        after = np.exp(-np.maximum(t - duration_s, 0.0) / decay_s)
        return np.where(t < 0.0, 0.0, up * after)

    return f


def ramp(duration_s: float, ramp_s: float, decay_s: float) -> Shape:
    """Linear climb to 1 over ``ramp_s``, held to the end, exponential decay after it."""

    def f(t: F64) -> F64:
        up = np.clip(t / max(ramp_s, 1e-9), 0.0, 1.0)
        end_val = min(duration_s / max(ramp_s, 1e-9), 1.0)
        up = np.minimum(up, end_val)
        after = np.exp(-np.maximum(t - duration_s, 0.0) / decay_s)
        return np.where(t < 0.0, 0.0, up * after)

    return f


def step(duration_s: float, edge_s: float) -> Shape:
    """Trapezoid: linear edge of ``edge_s`` up, exactly 1 while held, linear edge down.

    With ``edge_s == 0`` it is a rectangle on ``[0, duration)``.
    """

    def f(t: F64) -> F64:
        if edge_s <= 0.0:
            return ((t >= 0.0) & (t < duration_s)).astype(np.float64)
        up = np.clip(t / edge_s, 0.0, 1.0)
        down = np.clip((duration_s + edge_s - t) / edge_s, 0.0, 1.0)
        return np.minimum(up, down)

    return f


@dataclass(slots=True)
class Overlay:
    """Applies ``amount * shape(t - start)`` to sensor columns ``cols``.

    ``add``: value += amount·s; ``scale``: value *= 1 + (amount - 1)·s (amount is the
    factor reached); ``set``: value = amount where s > 0. ``lo_ms``/``hi_ms`` bound the
    window where the overlay can be non-neutral (blocks outside are skipped).
    ``pattern`` multiplies ``amount`` per reading index (spark counts).
    """

    cols: npt.NDArray[np.intp]
    mode: Mode
    amount: float
    shape: Shape
    start_ms: int
    lo_ms: int
    hi_ms: int
    pattern: tuple[float, ...] = field(default=())


@dataclass(slots=True)
class ProdOverlay:
    """Raises an enterprise's production factor to at least ``target·shape(t - start)``."""

    ent: int
    target: float
    shape: Shape
    start_ms: int
    lo_ms: int
    hi_ms: int


@dataclass(frozen=True, slots=True)
class SensorModel:
    """Normal behaviour of one sensor.

    value = level + coupling·production(t) + drift_amp·sin(2πt/drift_period_s + φ)
    + N(0, noise_sd² + (noise_rel·value)²), clipped to the kind's physical range and
    rounded to ``decimals``. Units are the kind's unit.
    """

    level: float
    noise_sd: float = 0.0
    noise_rel: float = 0.0
    drift_amp: float = 0.0
    drift_period_s: float = 6 * 3600.0
    coupling: float = 0.0
    decimals: int = 2

    def sigma(self, value: float) -> float:
        """Noise standard deviation at ``value`` (unit of the kind)."""
        return float(np.hypot(self.noise_sd, self.noise_rel * value))


@dataclass(slots=True)
class Effect:
    """What an event does to the stream; ``tail_s`` is the recovery time after its end (s)."""

    overlays: list[Overlay] = field(default_factory=list)
    prod: list[ProdOverlay] = field(default_factory=list)
    tail_s: float = 0.0
    #: fault overlays applied to the noisy value: ``add`` before clipping to the
    #: physical range, ``set`` after it (so out-of-range values survive)
    post: list[Overlay] = field(default_factory=list)
    #: (cols, lo_ms, hi_ms): readings withheld on [lo, hi)
    mask: list[tuple[npt.NDArray[np.intp], int, int]] = field(default_factory=list)
    #: (t_ms, (enterprise_id, device_id), online): gateway status changes
    status: list[tuple[int, tuple[str, str], bool]] = field(default_factory=list)
