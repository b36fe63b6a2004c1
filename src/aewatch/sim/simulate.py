"""Synthetic, labelled sensor streams from a simulated well or pump, for training and tests.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline, and
pure: numpy only, an explicit seed, no clock. The fault-free stream is generated first
from its own random stream and the faults are then written over it, so a stream with
faults equals the fault-free stream of the same seed everywhere outside their spans.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from aewatch.errors import AewatchError
from aewatch.sim.faults import (
    FAULT_KINDS,
    FAULT_SYNTAX,
    FaultSpec,
    InjectedFault,
    Placement,
    parse_faults,
    place_faults,
)
from aewatch.sim.inject import FaultSite, inject
from aewatch.sim.scenarios import SCENARIO_MODELS, NormalStream, Scenario

__all__ = [
    "DEFAULT_START_EPOCH_S",
    "FAULT_KINDS",
    "FAULT_SYNTAX",
    "SCENARIOS",
    "FaultSpec",
    "InjectedFault",
    "SimulatedStream",
    "parse_faults",
    "simulate",
]

SCENARIOS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: model.channels for name, model in SCENARIO_MODELS.items()}
)
DEFAULT_START_EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# About 1.2 GB of float64 for the six pump channels and their intermediates.
_MAX_ROWS = 20_000_000


@dataclass(frozen=True, slots=True)
class SimulatedStream:
    """A simulated stream on a regular grid, with the faults placed in it.

    Attributes:
        timestamps: epoch seconds (UTC), shape ``(n,)``, a regular grid.
        values: readings, shape ``(n, channels)``, in each channel's unit (the suffix
            of its name: ``_bar``, ``_c``, ``_kg_s``, ...).
        channels: channel names, in column order.
        labels: ``int8``, shape ``(n,)``; 1 on rows inside any injected fault.
        faults: the faults as placed, in the order they were asked for.

    The arrays are read-only.

    >>> stream = simulate("well", hours=1.0, faults=[FaultSpec("step")], seed=7)
    >>> stream.values.shape, stream.channels[0], stream.faults[0].kind
    ((3600, 4), 'flow_kg_s', 'step')
    """

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    channels: tuple[str, ...]
    labels: npt.NDArray[np.int8]
    faults: tuple[InjectedFault, ...]


def simulate(
    scenario: str,
    *,
    hours: float,
    period_s: float = 1.0,
    faults: Sequence[FaultSpec] = (),
    seed: int = 0,
    start_epoch_s: float = DEFAULT_START_EPOCH_S,
) -> SimulatedStream:
    """Return ``hours`` of scenario readings every ``period_s`` seconds, with ``faults``.

    Args:
        scenario: a key of ``SCENARIOS`` (``"well"`` or ``"pump"``).
        hours: stream length in hours; the stream has ``round(hours*3600/period_s)`` rows.
        period_s: sample period in seconds.
        faults: faults to inject; fields left ``None`` are drawn from the seed.
        seed: non-negative seed; equal arguments give identical streams.
        start_epoch_s: epoch seconds (UTC) of the first row.

    Raises:
        AewatchError: an unknown scenario or channel, a bad length, period or seed, or a
            fault that does not fit the stream.
    """
    model = _scenario(scenario)
    n = _row_count(hours, period_s)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise AewatchError(f"seed = {seed!r}; use a non-negative integer such as 0")
    if not math.isfinite(start_epoch_s):
        raise AewatchError(f"start = {start_epoch_s} epoch s; give a finite time")
    normal_seed, fault_seed = np.random.SeedSequence(seed).spawn(2)
    timestamps = start_epoch_s + np.arange(n, dtype=np.float64) * period_s
    normal = model.generate(np.random.default_rng(normal_seed), timestamps, period_s=period_s)
    fault_rng = np.random.default_rng(fault_seed)
    placements = place_faults(
        fault_rng,
        faults,
        channels=model.channels,
        n=n,
        period_s=period_s,
        leads={kind: tuple(leads) for kind, leads in model.couplings.items()},
    )
    values, labels = _apply(fault_rng, normal, placements, model=model, period_s=period_s)
    for array in (timestamps, values, labels):
        array.flags.writeable = False
    return SimulatedStream(
        timestamps, values, model.channels, labels, tuple(p.fault for p in placements)
    )


def _scenario(name: str) -> Scenario:
    try:
        return SCENARIO_MODELS[name]
    except KeyError:
        raise AewatchError(
            f"scenario {name!r} is unknown; use one of {', '.join(SCENARIO_MODELS)}"
        ) from None


def _row_count(hours: float, period_s: float) -> int:
    if not (math.isfinite(period_s) and period_s > 0):
        raise AewatchError(f"period = {period_s} s; use a positive period such as 1 or 10")
    if not (math.isfinite(hours) and hours > 0):
        raise AewatchError(f"hours = {hours}; use a positive length such as 24")
    n = round(hours * 3600.0 / period_s)
    if n < 2:
        raise AewatchError(
            f"hours = {hours:g} at period = {period_s:g} s gives {n} rows; "
            "simulate more hours or use a shorter period"
        )
    if n > _MAX_ROWS:
        raise AewatchError(
            f"hours = {hours:g} at period = {period_s:g} s gives {n:,} rows, more than "
            f"{_MAX_ROWS:,}; use a longer period or fewer hours"
        )
    return n


def _apply(
    rng: np.random.Generator,
    normal: NormalStream,
    placements: Sequence[Placement],
    *,
    model: Scenario,
    period_s: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
    """Return readings ``(n, channels)`` and labels ``(n,)`` with each fault written in.

    A fault may change several channels, but only in its own rows, and all of those are 1.
    """
    values = normal.clean + normal.noise
    labels = np.zeros(values.shape[0], dtype=np.int8)
    scale = np.array([noise.sd for noise in model.noise], dtype=np.float64)
    for placement in placements:
        rows, fault = placement.rows, placement.fault
        site = FaultSite(
            values=values[rows].copy(),
            clean=normal.clean[rows],
            noise=normal.noise[rows],
            before=values[max(rows.start - 1, 0)].copy(),
            scale=scale,
            column=model.channels.index(fault.channel),
            period_s=period_s,
            coupling=model.coupling(fault.kind, fault.channel),
        )
        values[rows] = inject(fault.kind, rng, site)
        labels[rows] = 1
    return values, labels
