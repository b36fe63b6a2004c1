"""How each fault kind changes one channel's readings over its span.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline. Sizes
are multiples of the channel's sensor-noise standard deviation: a few times the noise, so
that a good model can find them and a poor one cannot, never gross outliers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aewatch.sim.signals import first_order_lag

__all__ = ["FaultSite", "inject"]

# Sizes, in units of the channel's noise standard deviation.
_DRIFT_END = (6.0, 10.0)
_STEP = (4.0, 7.0)
_SPIKE = (8.0, 15.0)
_NOISE_BURST_SD = (3.0, 5.0)
_OSCILLATION_AMPLITUDE = (3.0, 5.0)
_DECOUPLE_PEAK = (5.0, 8.0)
# Oscillation periods: loose-mounting and control-loop hunting, 20 s to 4 min, and never
# fewer than six samples per cycle so the sine is visible on a coarse grid.
_OSCILLATION_PERIOD_S = (20.0, 240.0)
_MIN_SAMPLES_PER_CYCLE = 6
_SPIKES_PER_ROW = 1 / 40
_SPIKE_COUNT = (3, 12)
_DECOUPLE_SMOOTHING_S = 30.0


@dataclass(frozen=True, slots=True)
class FaultSite:
    """One channel over one fault's span, the material a fault is made from.

    ``values``, ``clean`` and ``noise`` have shape ``(m,)`` in the channel's units:
    the readings so far (earlier faults included), the noise-free process and the sensor
    noise. ``before`` is the reading just before the span (the first one's, at row 0),
    ``scale`` the channel's noise standard deviation, ``period_s`` the sample period.
    """

    values: npt.NDArray[np.float64]
    clean: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    before: float
    scale: float
    period_s: float


def inject(kind: str, rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """Return the span's readings with a fault of ``kind`` in them, shape ``(m,)``.

    ``kind`` is one of ``FAULT_KINDS``; ``site`` is left unchanged.
    """
    return _KINDS[kind](rng, site)


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _size(rng: np.random.Generator, site: FaultSite, multiples: tuple[float, float]) -> float:
    return float(rng.uniform(*multiples)) * site.scale


def _drift(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """The sensor walks away linearly, from nothing to several noise sd at the end."""
    m = site.values.size
    ramp = np.arange(1, m + 1, dtype=np.float64) / m
    return site.values + _sign(rng) * _size(rng, site, _DRIFT_END) * ramp


def _step(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """A constant offset, as after a knock or a bad recalibration."""
    return site.values + _sign(rng) * _size(rng, site, _STEP)


def _spikes(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """A handful of isolated one-sample spikes (loose connector, EMI)."""
    m = site.values.size
    low, high = _SPIKE_COUNT
    slots = np.arange(0, m, 2)  # every other row, so that no two spikes touch
    count = min(slots.size, int(np.clip(m * _SPIKES_PER_ROW, low, high)))
    rows = rng.choice(slots, size=count, replace=False)
    heights = rng.uniform(*_SPIKE, size=count) * site.scale
    signs = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    out = site.values.copy()
    out[rows] += signs * heights
    return out


def _stuck(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """The transmitter freezes at its last good reading."""
    return np.full(site.values.size, site.before)


def _noise(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """A burst of extra white noise (failing transmitter, bad earth)."""
    sd = _size(rng, site, _NOISE_BURST_SD)
    return site.values + rng.normal(0.0, sd, site.values.size)


def _oscillation(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """An added sinusoid, starting from zero so the span opens without a jump."""
    amplitude = _size(rng, site, _OSCILLATION_AMPLITUDE)
    period_s = max(
        float(rng.uniform(*_OSCILLATION_PERIOD_S)), _MIN_SAMPLES_PER_CYCLE * site.period_s
    )
    t_s = np.arange(site.values.size, dtype=np.float64) * site.period_s
    return site.values + _sign(rng) * amplitude * np.sin(2.0 * np.pi * t_s / period_s)


def _decouple(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """The channel stops following the plant and wanders on its own from where it was.

    The process part is replaced by its value at the span's start plus a smoothed random
    walk; the sensor noise stays, so the channel still looks alive.
    """
    m = site.values.size
    steps = rng.normal(0.0, 1.0, m)
    walk = first_order_lag(np.cumsum(steps), tau_s=_DECOUPLE_SMOOTHING_S, period_s=site.period_s)
    peak = float(np.max(np.abs(walk)))
    if peak > 0.0:
        walk *= _size(rng, site, _DECOUPLE_PEAK) / peak
    return np.asarray(site.clean[0] + walk + site.noise, dtype=np.float64)


_KINDS: dict[str, Callable[[np.random.Generator, FaultSite], npt.NDArray[np.float64]]] = {
    "drift": _drift,
    "step": _step,
    "spikes": _spikes,
    "stuck": _stuck,
    "noise": _noise,
    "oscillation": _oscillation,
    "decouple": _decouple,
}
