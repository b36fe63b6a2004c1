"""Per-channel robust scaling fitted on training data (pipeline stage: inside Scorer).

Median and interquartile range resist the outliers every real export contains; the
scale falls back to the standard deviation, then to 1, for channels that barely move
(a set-point channel, a sensor stuck for the whole history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = ["RobustScaler"]

# IQR of a standard normal: dividing by it makes the scale comparable to a std.
_IQR_NORMAL = 1.3489795
_MIN_RELATIVE_SCALE = 1e-6


@dataclass(frozen=True, slots=True)
class RobustScaler:
    """``(x - center) / scale`` per channel; both arrays are ``(channels,)`` float64.

    >>> rows = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [100.0, 10.0]])
    >>> s = RobustScaler.fit(rows)
    >>> s.center.tolist(), np.round(s.scale, 3).tolist()
    ([2.0, 10.0], [1.483, 1.0])
    """

    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, rows: npt.NDArray[np.floating]) -> Self:
        """Fit on training rows ``(n, channels)``."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"scaler needs rows shaped (n, channels) with n > 0, got {x.shape}")
        center = np.median(x, axis=0)
        q25, q75 = np.percentile(x, [25, 75], axis=0)
        scale = (q75 - q25) / _IQR_NORMAL
        floor = _MIN_RELATIVE_SCALE * np.maximum(1.0, np.abs(center))
        std = x.std(axis=0)
        scale = np.where(scale > floor, scale, std)
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
        return (
            np.asarray(z, dtype=np.float64) * self.scale.reshape(shape) + self.center.reshape(shape)
        ).astype(np.float32)

    def to_json(self) -> dict[str, list[float]]:
        """Plain lists for the bundle's metadata."""
        return {"center": self.center.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, list[float]]) -> Self:
        """Inverse of ``to_json``."""
        return cls(
            np.asarray(obj["center"], dtype=np.float64), np.asarray(obj["scale"], dtype=np.float64)
        )
