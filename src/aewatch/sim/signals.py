"""Signal shapes the simulated plants are built from: lags, coloured noise, set points, days.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline. Every
function is pure: randomness comes in as a ``numpy.random.Generator`` and time as arrays.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "colored_noise",
    "daily_cycle",
    "first_order_lag",
    "setpoint_ramps",
]

# Largest exponent a**-k may reach inside one block of first_order_lag; e**200 ~ 1e87
# leaves ample float64 headroom for the cumulative sum.
_MAX_BLOCK_EXPONENT = 200.0
# Operators make most changes on day shift; night-time candidates are mostly dropped.
_DAY_SHIFT_H = (7.0, 19.0)
_NIGHT_ACCEPT = 0.25
_SECONDS_PER_DAY = 86_400.0


def first_order_lag(
    u: npt.NDArray[np.float64],
    *,
    tau_s: float,
    period_s: float,
    initial: float | None = None,
) -> npt.NDArray[np.float64]:
    """Return ``u`` passed through a first-order lag with time constant ``tau_s``.

    Implements ``y[k] = a*y[k-1] + (1-a)*u[k]`` with ``a = exp(-period_s/tau_s)`` exactly,
    vectorised in blocks short enough that ``a**-k`` cannot overflow.

    Args:
        u: input, shape ``(n,)``.
        tau_s: time constant in seconds; ``<= 0`` returns a copy of ``u``.
        period_s: sample period in seconds.
        initial: ``y[-1]``, the state before the first sample; default ``u[0]``
            (start in steady state).

    Returns:
        ``y``, shape ``(n,)``, float64.

    >>> first_order_lag(np.array([0.0, 1.0, 1.0]), tau_s=1.0, period_s=1e9).round(3)
    array([0., 1., 1.])
    """
    u = np.asarray(u, dtype=np.float64)
    if u.size == 0 or tau_s <= 0.0 or period_s / tau_s > _MAX_BLOCK_EXPONENT:
        return u.copy()
    decay = period_s / tau_s
    a = math.exp(-decay)
    block = max(1, int(_MAX_BLOCK_EXPONENT / decay))
    offsets = np.arange(min(block, u.size), dtype=np.float64)
    grow = np.exp(offsets * decay)  # a**-m
    shrink = np.exp(-offsets * decay)  # a**m
    out = np.empty_like(u)
    prev = float(u[0]) if initial is None else float(initial)
    for start in range(0, u.size, block):
        seg = u[start : start + block]
        m = seg.size
        acc = np.cumsum(grow[:m] * seg) * (1.0 - a)
        out[start : start + m] = shrink[:m] * (a * prev + acc)
        prev = float(out[start + m - 1])
    return out


def colored_noise(
    rng: np.random.Generator,
    n: int,
    *,
    sd: float,
    tau_s: float,
    period_s: float,
) -> npt.NDArray[np.float64]:
    """Return stationary Ornstein-Uhlenbeck noise, shape ``(n,)``, std ``sd``, zero mean.

    ``tau_s`` is the correlation time in seconds; the first sample is already drawn from
    the stationary distribution, so there is no warm-up transient.
    """
    if sd == 0.0:
        return np.zeros(n)
    a = math.exp(-period_s / tau_s) if tau_s > 0.0 else 0.0
    if a < 1e-12:
        return rng.normal(0.0, sd, n)
    # White input of this std gives a lag output of std sd.
    drive_sd = sd * math.sqrt((1.0 + a) / (1.0 - a))
    return first_order_lag(
        rng.normal(0.0, drive_sd, n),
        tau_s=tau_s,
        period_s=period_s,
        initial=float(rng.normal(0.0, sd)),
    )


def daily_cycle(timestamps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return the site's daily rhythm in ``[-1, 1]``, shape ``(n,)``, from epoch seconds.

    Lowest before dawn, highest mid-afternoon (UTC used as site time), with a small second
    harmonic so the day is not a pure sine.
    """
    day_fraction = np.mod(timestamps, _SECONDS_PER_DAY) / _SECONDS_PER_DAY
    phase = 2.0 * np.pi * (day_fraction - 0.375)  # peak near 15:00
    cycle = np.sin(phase) + 0.25 * np.sin(2.0 * phase + 0.8)
    return np.asarray(cycle / 1.25, dtype=np.float64)


def setpoint_ramps(
    rng: np.random.Generator,
    timestamps: npt.NDArray[np.float64],
    *,
    changes_per_day: float,
    low: float,
    high: float,
    step_range: tuple[float, float],
    ramp_per_s: float,
) -> npt.NDArray[np.float64]:
    """Return an operator set point, shape ``(n,)``: constant levels joined by ramps.

    Changes arrive as a Poisson process (``changes_per_day`` on average, mostly on day
    shift), each moving the set point by a size drawn from ``step_range`` towards the
    middle of ``[low, high]`` more often than away from it, at ``ramp_per_s`` units per
    second (valve travel, drive ramp).
    """
    t_rel = timestamps - timestamps[0]
    duration_s = float(t_rel[-1]) if t_rel.size > 1 else 0.0
    min_gap_s = max(1800.0, step_range[1] / ramp_per_s * 2.0)
    level = float(rng.uniform(low + 0.25 * (high - low), high - 0.25 * (high - low)))
    knots_t, knots_v = [0.0], [level]
    for at in _change_times(rng, timestamps[0], duration_s, changes_per_day, min_gap_s):
        up = rng.random() < (high - level) / (high - low)
        size = float(rng.uniform(*step_range))
        new = float(np.clip(level + size if up else level - size, low, high))
        if new == level:
            continue
        knots_t += [at, at + abs(new - level) / ramp_per_s]
        knots_v += [level, new]
        level = new
    return np.asarray(np.interp(t_rel, knots_t, knots_v), dtype=np.float64)


def _change_times(
    rng: np.random.Generator,
    start_epoch_s: float,
    duration_s: float,
    changes_per_day: float,
    min_gap_s: float,
) -> list[float]:
    """Return sorted change times (s from start), at least ``min_gap_s`` apart."""
    if duration_s <= min_gap_s:
        return []
    accept_mean = (_DAY_SHIFT_H[1] - _DAY_SHIFT_H[0]) / 24.0
    accept_mean += (1.0 - accept_mean) * _NIGHT_ACCEPT
    expected = changes_per_day * duration_s / _SECONDS_PER_DAY / accept_mean
    candidates = np.sort(rng.uniform(min_gap_s, duration_s, rng.poisson(expected)))
    hour = np.mod(start_epoch_s + candidates, _SECONDS_PER_DAY) / 3600.0
    on_shift = (hour >= _DAY_SHIFT_H[0]) & (hour < _DAY_SHIFT_H[1])
    keep = rng.random(candidates.size) < np.where(on_shift, 1.0, _NIGHT_ACCEPT)
    times: list[float] = []
    for at in candidates[keep].tolist():
        if not times or at - times[-1] >= min_gap_s:
            times.append(at)
    return times
