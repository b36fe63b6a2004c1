"""Put timestamped readings on a regular time grid, split at long gaps (pure core, before Window).

The autoencoder sees windows of ``window_len`` consecutive samples, so samples must be
evenly spaced. :func:`regularize` turns one asset's readings (sorted by time) into
:class:`Segment` objects, each on its own regular grid, by these rules:

* **Segments.** Two consecutive readings whose step, counted in whole periods
  (``round(step / period_s)``), exceeds ``max_gap_periods`` belong to different segments,
  so no window ever spans an outage. Every reading belongs to exactly one segment.
* **Snapping.** In a segment whose first reading is at ``t0``, a reading at ``t`` goes to
  slot ``k = round((t - t0) / period_s)`` (ties to even), whose grid time is
  ``t0 + k * period_s``. The grid is never shifted to round clock times.
* **Collisions.** When two readings snap to the same slot, the later one (in input order)
  wins and the earlier one is dropped.
* **Filling.** A slot that no reading snapped to takes the values (and source index) of
  the slot before it (forward fill). Inside a segment, such runs come only from gaps of at
  most ``max_gap_periods`` periods (plus at most one slot from snapping).

:func:`infer_period` guesses ``period_s`` when the configuration does not give it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_MAX_GAP_PERIODS", "Segment", "infer_period", "regularize"]

DEFAULT_MAX_GAP_PERIODS = 5
_PERIOD_SIGNIFICANT_DIGITS = 5  # enough for 1/60 s; drops float noise such as 0.999999
_REFINEMENTS = 3  # re-centring the ±50 % window undoes the pull of missed readings on the median


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of readings on one regular grid, with no gap longer than the limit inside.

    ``timestamps`` is ``(m,)`` epoch seconds, exactly ``t0 + k * period_s`` for
    ``k = 0 .. m-1``. ``values`` is ``(m, channels)`` float32. ``source_index`` is
    ``(m,)``: the input row that supplied each grid row; forward-filled rows repeat the
    index of the row before them, so it is non-decreasing.

    >>> seg = regularize(np.array([0.0, 1.0, 3.0]), np.ones((3, 2)), period_s=1.0)[0]
    >>> seg.timestamps.tolist(), seg.source_index.tolist(), seg.values.shape
    ([0.0, 1.0, 2.0, 3.0], [0, 1, 1, 2], (4, 2))
    """

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]
    source_index: npt.NDArray[np.int64]


def infer_period(timestamps_s: npt.ArrayLike) -> float:
    """Return the sampling period in seconds of ``timestamps_s`` ``(n,)`` epoch seconds.

    The estimate starts as the median positive step and is refined, three times, to the
    mean of the steps within ±50 % of the estimate, so jitter averages out while gaps,
    bursts and duplicate timestamps do not count. It is then rounded to 5 significant
    digits, which drops float noise (``0.999999 -> 1.0``).

    >>> infer_period([0.0, 0.999999, 2.0, 3.0, 10.0])
    1.0

    Raises:
        ValueError: fewer than 2 timestamps, or no positive step between them.
    """
    t = np.asarray(timestamps_s, dtype=np.float64).reshape(-1)
    if t.size < 2:
        raise ValueError(
            f"infer_period needs at least 2 timestamps, got {t.size}; "
            "give more readings or set the period explicitly"
        )
    steps = np.diff(t)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        raise ValueError(
            f"the {t.size} timestamps have no positive step (all equal or decreasing); "
            "sort them by time or set the period explicitly"
        )
    estimate = float(np.median(steps))
    for _ in range(_REFINEMENTS):
        near = steps[(steps >= 0.5 * estimate) & (steps <= 1.5 * estimate)]
        if near.size == 0:
            break
        estimate = float(np.mean(near))
    return float(f"{estimate:.{_PERIOD_SIGNIFICANT_DIGITS}g}")


def regularize(
    timestamps_s: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    period_s: float,
    max_gap_periods: float = DEFAULT_MAX_GAP_PERIODS,
) -> list[Segment]:
    """Return the readings on regular grids, one :class:`Segment` per stretch without long gaps.

    ``timestamps_s`` is ``(n,)`` epoch seconds, non-decreasing; ``values`` is
    ``(n, channels)``. The rules (snapping, collisions, forward fill, splitting) are in
    the module docstring. No input rows gives no segments.

    >>> t = np.array([0.0, 1.0, 2.1, 2.4, 4.0, 20.0, 21.0])
    >>> v = np.arange(7.0).reshape(7, 1)
    >>> segments = regularize(t, v, period_s=1.0, max_gap_periods=5)
    >>> [s.timestamps.tolist() for s in segments]
    [[0.0, 1.0, 2.0, 3.0, 4.0], [20.0, 21.0]]
    >>> segments[0].source_index.tolist()  # row 3 overwrote row 2; slot 3 is filled
    [0, 1, 3, 3, 4]

    Raises:
        ValueError: shapes that do not match, non-finite or decreasing timestamps, a
            ``period_s`` that is not positive, or ``max_gap_periods`` below 1.
    """
    t, v = _checked_inputs(timestamps_s, values, period_s=period_s, max_gap_periods=max_gap_periods)
    if t.size == 0:
        return []
    steps_in_periods = np.rint(np.diff(t) / period_s)
    starts = np.concatenate(([0], np.flatnonzero(steps_in_periods > max_gap_periods) + 1))
    stops = np.concatenate((starts[1:], [t.size]))
    return [
        _segment(t, v, rows=slice(int(a), int(b)), period_s=period_s)
        for a, b in zip(starts, stops, strict=True)
    ]


def _segment(
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    *,
    rows: slice,
    period_s: float,
) -> Segment:
    """Snap the readings ``t[rows]`` onto one grid starting at their first timestamp."""
    seg_t = t[rows]
    row_index = np.arange(rows.start, rows.stop, dtype=np.int64)
    slots = np.rint((seg_t - seg_t[0]) / period_s).astype(np.int64)
    # slots is non-decreasing, so the last row of each run of equal slots is the later one.
    is_last_in_slot = np.append(slots[1:] != slots[:-1], True)
    source = np.full(int(slots[-1]) + 1, -1, dtype=np.int64)
    source[slots[is_last_in_slot]] = row_index[is_last_in_slot]
    # Slot 0 always holds a reading, so every empty slot has an earlier filled one.
    filled_from = np.maximum.accumulate(np.where(source >= 0, np.arange(source.size), 0))
    source = source[filled_from]
    grid_t = seg_t[0] + np.arange(source.size, dtype=np.float64) * period_s
    return Segment(grid_t, v[source].astype(np.float32), source)


def _checked_inputs(
    timestamps_s: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    period_s: float,
    max_gap_periods: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return timestamps ``(n,)`` and values ``(n, channels)`` as float64, or raise."""
    t = np.asarray(timestamps_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 2 or v.shape[0] != t.shape[0]:
        raise ValueError(
            f"regularize needs timestamps (n,) and values (n, channels), got shapes "
            f"{t.shape} and {v.shape}; reshape one channel with values.reshape(-1, 1)"
        )
    if not (math.isfinite(period_s) and period_s > 0):
        raise ValueError(f"period_s must be a positive number of seconds, got {period_s}")
    if not max_gap_periods >= 1:
        raise ValueError(f"max_gap_periods must be at least 1, got {max_gap_periods}")
    if not np.isfinite(t).all():
        bad = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ValueError(f"timestamps_s[{bad}] is {t[bad]}; drop readings without a time")
    backwards = np.flatnonzero(np.diff(t) < 0)
    if backwards.size:
        i = int(backwards[0])
        raise ValueError(
            f"timestamps_s[{i + 1}] = {t[i + 1]} is earlier than timestamps_s[{i}] = {t[i]}; "
            "sort the readings by time first"
        )
    return t, v
