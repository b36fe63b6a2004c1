"""How each fault kind changes the readings over its span.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline. Sizes
are multiples of a channel's sensor-noise standard deviation: a few times the noise, so
that a good model can find them and a poor one cannot, never gross outliers. Sensor faults
(drift, step, spikes, stuck, noise, oscillation, decouple, gain) change only the fault's
own channel. Process faults change the plant, so they move every channel the scenario
couples to the fault's channel (its lead), each by its own few noise sd: a ``leak`` (a
leak, scale, a failing feed) ramps the lead by 4-7 sd over the span, and ``hunting`` (a
control loop hunting) swings it by 2-4 sd with a period of 1-10 minutes. On a channel the
scenario has no coupling for, a process fault stays on that channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aewatch.sim.signals import first_order_lag

__all__ = ["SIZED_KINDS", "FaultSite", "inject", "inject_sized"]

# The sensor kinds ``inject_sized`` takes a size for; ``stuck`` has none (it holds a value).
SIZED_KINDS: tuple[str, ...] = ("step", "drift", "spikes", "noise", "oscillation", "gain", "stuck")

# Sizes, in units of the channel's noise standard deviation.
_DRIFT_END = (6.0, 10.0)
_STEP = (4.0, 7.0)
_SPIKE = (8.0, 15.0)
_NOISE_BURST_SD = (3.0, 5.0)
_OSCILLATION_AMPLITUDE = (3.0, 5.0)
_DECOUPLE_PEAK = (5.0, 8.0)
# The gain error's size where the span starts; it then grows and shrinks with the level.
_GAIN_AT_START = (3.0, 6.0)
# The lead channel's; coupled channels move by their coupling times these.
_LEAK_END = (4.0, 7.0)
_HUNTING_AMPLITUDE = (2.0, 4.0)
# Oscillation periods: a loose mounting or a structural resonance, 20 s to 4 min, and
# never fewer than six samples per cycle so the sine is visible on a coarse grid.
_OSCILLATION_PERIOD_S = (20.0, 240.0)
_MIN_SAMPLES_PER_CYCLE = 6
# Hunting is slower: a control loop with too much gain or a sticking valve swings over
# minutes. The period is shortened, not below the range, so that two cycles fit the span
# where they can; the swing builds up over its first cycle (at most half the span), and
# its tops are flattened where the actuator reaches a limit (a limit cycle, not a sine).
_HUNTING_PERIOD_S = (60.0, 600.0)
_HUNTING_MIN_CYCLES = 2.0
_HUNTING_FLAT_TOP = 1.5  # the sine is scaled by this and clipped to +-1
_SPIKES_PER_ROW = 1 / 40
_SPIKE_COUNT = (3, 12)
_DECOUPLE_SMOOTHING_S = 30.0


@dataclass(frozen=True, slots=True)
class FaultSite:
    """An asset's channels over one fault's span, the material a fault is made from.

    ``values``, ``clean`` and ``noise`` have shape ``(m, channels)`` in the channels' units:
    the readings so far (earlier faults included), the noise-free process and the sensor
    noise. ``before``, shape ``(channels,)``, is the readings just before the span (the
    first ones, at row 0), ``scale``, shape ``(channels,)``, each channel's noise standard
    deviation and ``period_s`` the sample period. ``column`` is the fault's own channel.
    ``coupling``, shape ``(channels,)``, is how a process fault led by that channel moves
    each channel, per noise sd of the lead's move and in the channel's own noise sd (see
    ``Scenario.coupling``); ``None`` where the scenario has none.
    """

    values: npt.NDArray[np.float64]
    clean: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    before: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    column: int
    period_s: float
    coupling: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class _Channel:
    """A ``FaultSite`` cut down to its own channel: the arrays have shape ``(m,)``."""

    values: npt.NDArray[np.float64]
    clean: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    before: float
    scale: float
    period_s: float


def inject(kind: str, rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """Return the span's readings with a fault of ``kind`` in them, shape ``(m, channels)``.

    ``kind`` is one of ``FAULT_KINDS``; a sensor fault changes only ``site.column``, a
    process fault also the channels ``site.coupling`` moves. ``site`` is left unchanged.
    """
    process_fault = _PROCESS_KINDS.get(kind)
    if process_fault is not None:
        return process_fault(rng, site)
    out = site.values.copy()
    out[:, site.column] = _SENSOR_KINDS[kind](rng, _own_channel(site))
    return out


def inject_sized(
    kind: str, rng: np.random.Generator, site: FaultSite, *, size: float
) -> npt.NDArray[np.float64]:
    """Return the span's readings with a fault of ``kind`` exactly ``size`` noise sd large.

    Like :func:`inject`, with the same shapes, but the size is given instead of drawn:
    ``size`` times ``site.scale[site.column]`` is a step's offset, a drift's offset at the
    span's end, each spike's height, the extra noise's sd, an oscillation's amplitude and a
    gain error's offset where the span starts. The sign, the spikes' rows and the
    oscillation's period still come from ``rng``; ``stuck`` ignores ``size``. ``kind`` is
    one of ``SIZED_KINDS``; only ``site.column`` changes.

    Raises:
        ValueError: a kind outside ``SIZED_KINDS`` or a negative size.
    """
    if kind not in SIZED_KINDS:
        raise ValueError(f"kind must be one of {SIZED_KINDS}, got {kind!r}")
    if size < 0.0:
        raise ValueError(f"size must be >= 0 noise sd, got {size}")
    if kind == "stuck":
        return inject(kind, rng, site)
    channel = _own_channel(site)
    out = site.values.copy()
    out[:, site.column] = _SIZED[kind](rng, channel, size * channel.scale)
    return out


def _own_channel(site: FaultSite) -> _Channel:
    col = site.column
    return _Channel(
        values=site.values[:, col],
        clean=site.clean[:, col],
        noise=site.noise[:, col],
        before=float(site.before[col]),
        scale=float(site.scale[col]),
        period_s=site.period_s,
    )


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _size(rng: np.random.Generator, site: _Channel, multiples: tuple[float, float]) -> float:
    return float(rng.uniform(*multiples)) * site.scale


def _drift(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """The sensor walks away linearly, from nothing to several noise sd at the end."""
    return _ramp(site, _sign(rng) * _size(rng, site, _DRIFT_END))


def _ramp(site: _Channel, end: float) -> npt.NDArray[np.float64]:
    """The readings plus a line from nothing to ``end`` (channel units) at the last row."""
    m = site.values.size
    return site.values + end * (np.arange(1, m + 1, dtype=np.float64) / m)


def _step(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """A constant offset, as after a knock or a bad recalibration."""
    return site.values + _sign(rng) * _size(rng, site, _STEP)


def _spikes(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """A handful of isolated one-sample spikes (loose connector, EMI)."""
    rows = _spike_rows(rng, site.values.size)
    heights = rng.uniform(*_SPIKE, size=rows.size) * site.scale
    signs = np.where(rng.random(rows.size) < 0.5, -1.0, 1.0)
    out = site.values.copy()
    out[rows] += signs * heights
    return out


def _spike_rows(rng: np.random.Generator, m: int) -> npt.NDArray[np.int64]:
    """The rows a handful of spikes land on, among ``m``: never two side by side."""
    low, high = _SPIKE_COUNT
    slots = np.arange(0, m, 2)  # every other row, so that no two spikes touch
    count = min(slots.size, int(np.clip(m * _SPIKES_PER_ROW, low, high)))
    return np.asarray(rng.choice(slots, size=count, replace=False), dtype=np.int64)


def _sized_spikes(rng: np.random.Generator, site: _Channel, size: float) -> npt.NDArray[np.float64]:
    """``_spikes`` with every spike ``size`` high (channel units), each up or down."""
    rows = _spike_rows(rng, site.values.size)
    out = site.values.copy()
    out[rows] += np.where(rng.random(rows.size) < 0.5, -1.0, 1.0) * size
    return out


def _stuck(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """The transmitter freezes at its last good reading."""
    return np.full(site.values.size, site.before)


def _noise(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """A burst of extra white noise (failing transmitter, bad earth)."""
    sd = _size(rng, site, _NOISE_BURST_SD)
    return site.values + rng.normal(0.0, sd, site.values.size)


def _oscillation(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """An added sinusoid, starting from zero so the span opens without a jump."""
    amplitude = _size(rng, site, _OSCILLATION_AMPLITUDE)
    period_s = _oscillation_period(rng, site)
    return _sine(site, _sign(rng) * amplitude, period_s)


def _oscillation_period(rng: np.random.Generator, site: _Channel) -> float:
    return max(float(rng.uniform(*_OSCILLATION_PERIOD_S)), _MIN_SAMPLES_PER_CYCLE * site.period_s)


def _sine(site: _Channel, amplitude: float, period_s: float) -> npt.NDArray[np.float64]:
    """The readings plus a sine of ``amplitude`` (channel units, signed) from phase 0."""
    t_s = np.arange(site.values.size, dtype=np.float64) * site.period_s
    return site.values + amplitude * np.sin(2.0 * np.pi * t_s / period_s)


def _decouple(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
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


def _gain(rng: np.random.Generator, site: _Channel) -> npt.NDArray[np.float64]:
    """The transmitter's gain is off: readings are scaled by ``1 + e`` about its zero.

    The zero is the unit's (0 bar, 0 °C, ...). ``e`` makes the error a few noise sd at the
    process level where the span starts, so the error then grows and shrinks with the
    process, which a step does not.
    """
    return _gain_error(site, _sign(rng) * _size(rng, site, _GAIN_AT_START))


def _gain_error(site: _Channel, offset: float) -> npt.NDArray[np.float64]:
    """The readings scaled about the unit's zero so that they are ``offset`` off at the
    process level where the span starts (at least one noise sd from zero)."""
    level = max(abs(float(site.clean[0])), site.scale)
    return site.values * (1.0 + offset / level)


def _leak(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """The process loses ground slowly: every coupled channel ramps linearly from nothing.

    The lead ends the span several noise sd off, in the direction its coupling gives (a
    random one where it has none), and each coupled channel ends ``coupling`` times that
    many of its own noise sd off.
    """
    moves = _moves(rng, site)
    m = site.values.shape[0]
    ramp = np.arange(1, m + 1, dtype=np.float64) / m * float(rng.uniform(*_LEAK_END))
    return site.values + np.outer(ramp, moves * site.scale)


def _hunting(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """A control loop hunts: a slow, flat-topped swing that builds up and then holds.

    The coupled channels swing with the lead (in anti-phase where their coupling is
    negative), ``coupling`` times as many of their own noise sd.
    """
    moves = _sign(rng) * _moves(rng, site)
    m = site.values.shape[0]
    span_s = m * site.period_s
    low, high = _HUNTING_PERIOD_S
    period_s = float(rng.uniform(low, np.clip(span_s / _HUNTING_MIN_CYCLES, low, high)))
    period_s = max(period_s, _MIN_SAMPLES_PER_CYCLE * site.period_s)
    t_s = np.arange(m, dtype=np.float64) * site.period_s
    growth = np.minimum((t_s + site.period_s) / min(period_s, span_s / 2.0), 1.0)
    shape = np.clip(_HUNTING_FLAT_TOP * np.sin(2.0 * np.pi * t_s / period_s), -1.0, 1.0)
    swing = float(rng.uniform(*_HUNTING_AMPLITUDE)) * growth * shape
    return site.values + np.outer(swing, moves * site.scale)


def _moves(rng: np.random.Generator, site: FaultSite) -> npt.NDArray[np.float64]:
    """Return the site's coupling, or the lead alone in a random direction, ``(channels,)``."""
    if site.coupling is not None:
        return site.coupling
    alone = np.zeros(site.scale.size)
    alone[site.column] = _sign(rng)
    return alone


_SENSOR_KINDS: dict[str, Callable[[np.random.Generator, _Channel], npt.NDArray[np.float64]]] = {
    "drift": _drift,
    "step": _step,
    "spikes": _spikes,
    "stuck": _stuck,
    "noise": _noise,
    "oscillation": _oscillation,
    "decouple": _decouple,
    "gain": _gain,
}
# inject_sized's kinds: a sign from the generator, the size (channel units) as given.
_SIZED: dict[str, Callable[[np.random.Generator, _Channel, float], npt.NDArray[np.float64]]] = {
    "step": lambda rng, site, size: site.values + _sign(rng) * size,
    "drift": lambda rng, site, size: _ramp(site, _sign(rng) * size),
    "spikes": _sized_spikes,
    "noise": lambda rng, site, size: site.values + rng.normal(0.0, size, site.values.size),
    "oscillation": lambda rng, site, size: _sine(
        site, _sign(rng) * size, _oscillation_period(rng, site)
    ),
    "gain": lambda rng, site, size: _gain_error(site, _sign(rng) * size),
}
_PROCESS_KINDS: dict[str, Callable[[np.random.Generator, FaultSite], npt.NDArray[np.float64]]] = {
    "leak": _leak,
    "hunting": _hunting,
}
