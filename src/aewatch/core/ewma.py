"""Exponentially weighted moving averages over a whole sequence at once (pure numpy).

The detectors smooth statistics sample by sample (``y = alpha * x + (1 - alpha) * y``);
a batch of samples is smoothed here in a few array operations instead of a Python loop,
with the same result up to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["ewma_from"]

_MAX_GROWTH_BITS = 600  # 1 / decay**i stays below 2**600 inside a block


def ewma_from(
    x: npt.NDArray[np.float64],
    alpha: float,
    previous: float | npt.NDArray[np.float64] | None,
) -> npt.NDArray[np.float64]:
    """EWMA of ``x`` ``(n, ...)`` along its first axis, continuing from ``previous``.

    ``previous`` is the average before ``x[0]`` (a number, or shaped like ``x[0]``);
    None starts at ``x[0]``. With ``d = 1 - alpha``, step ``j`` is
    ``d**(j+1) * (previous + alpha * sum(x[i] / d**(i+1) for i <= j))``: a cumulative sum,
    taken in blocks short enough that ``1 / d**(i+1)`` stays below ``2**600``.

    >>> ewma_from(np.array([1.0, 3.0]), 0.5, 1.0).tolist()
    [1.0, 2.0]
    """
    if alpha >= 1.0 or not len(x):
        return x.copy()
    if previous is None:
        head = x[:1]
        return np.concatenate((head, ewma_from(x[1:], alpha, x[0].copy())))
    decay = 1.0 - alpha
    block = min(len(x), max(1, int(_MAX_GROWTH_BITS / -math.log2(decay))))
    growth = decay ** -np.arange(1.0, block + 1.0)  # 1 / d**(i+1)
    growth = growth.reshape(-1, *([1] * (x.ndim - 1)))
    out = np.empty_like(x)
    last: float | npt.NDArray[np.float64] = previous
    for start in range(0, len(x), block):
        part = x[start : start + block]
        scale = growth[: len(part)]
        out[start : start + len(part)] = (last + alpha * np.cumsum(part * scale, axis=0)) / scale
        last = out[start + len(part) - 1].copy()
    return out
