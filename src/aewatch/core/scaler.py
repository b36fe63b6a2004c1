"""Per-channel scaling fitted on training data (pipeline stage: inside Scorer).

Mean and standard deviation of the training rows after winsorising each channel at its
1st and 99th percentiles: the rare spikes every real export contains do not set the
scale, and, unlike the median and interquartile range, quantised channels (a flow meter
that reads 32.0 nine times in ten, SKAB's pressure) do not get a scale near zero that
turns every flicker into an alarm. A channel that does not move at all gets scale 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = ["RobustScaler"]

WINSOR_PERCENT = 1.0
_MIN_RELATIVE_SCALE = 1e-6


@dataclass(frozen=True, slots=True)
class RobustScaler:
    """``(x - center) / scale`` per channel; both arrays are ``(channels,)`` float64.

    >>> rows = np.array([[float(v), 10.0] for v in range(999)] + [[1e6, 10.0]])
    >>> s = RobustScaler.fit(rows)
    >>> round(float(s.center[0]), 2), round(float(s.scale[0]), 2), float(s.scale[1])
    (499.5, 288.49, 1.0)
    """

    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, rows: npt.NDArray[np.floating]) -> Self:
        """Fit on training rows ``(n, channels)``."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"scaler needs rows shaped (n, channels) with n > 0, got {x.shape}")
        lo, hi = np.percentile(x, [WINSOR_PERCENT, 100.0 - WINSOR_PERCENT], axis=0)
        clipped = np.clip(x, lo, hi)
        center = clipped.mean(axis=0)
        scale = clipped.std(axis=0)
        floor = _MIN_RELATIVE_SCALE * np.maximum(1.0, np.abs(center))
        scale = np.where(scale > floor, scale, 1.0)
        return cls(center, scale)

    def transform(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Scale windows ``(n, channels, length)`` or rows ``(n, channels)``; returns float32."""
        shape = (-1, 1) if np.ndim(x) == 3 else (-1,)
        c = self.center.reshape(shape)
        s = self.scale.reshape(shape)
        return ((np.asarray(x, dtype=np.float64) - c) / s).astype(np.float32)

    def inverse(self, z: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Undo ``transform`` (same shapes)."""
        shape = (-1, 1) if np.ndim(z) == 3 else (-1,)
        c = self.center.reshape(shape)
        s = self.scale.reshape(shape)
        return (np.asarray(z, dtype=np.float64) * s + c).astype(np.float32)

    def to_json(self) -> dict[str, list[float]]:
        """Plain lists for the bundle's metadata."""
        return {"center": self.center.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, list[float]]) -> Self:
        """Inverse of ``to_json``."""
        return cls(
            np.asarray(obj["center"], dtype=np.float64), np.asarray(obj["scale"], dtype=np.float64)
        )
