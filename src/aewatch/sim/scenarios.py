"""The simulated plants: a geothermal production well and a mine dewatering pump.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline. Each
scenario turns a timestamp grid and a seeded generator into fault-free readings: the
noise-free process (set-point changes, daily cycle, slow trends, coupled through lags)
and the sensor noise on top, kept apart so that faults can act on either. Each also says
how a process fault (a leak, a hunting control loop) that shows first on one channel
moves the channels coupled to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from aewatch.sim.signals import colored_noise, daily_cycle, first_order_lag, setpoint_ramps

__all__ = ["SCENARIO_MODELS", "Couplings", "NormalStream", "Process", "Scenario", "SensorNoise"]

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class NormalStream:
    """Fault-free readings of one scenario.

    ``clean`` is what the plant did and ``noise`` what the sensors added, both shape
    ``(n, channels)`` in the channels' own units; the readings are ``clean + noise``.
    """

    clean: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SensorNoise:
    """Noise of one sensor: white plus coloured (Ornstein-Uhlenbeck), in channel units."""

    white_sd: float
    colored_sd: float
    colored_tau_s: float

    @property
    def sd(self) -> float:
        """Total standard deviation, the yardstick fault sizes are multiples of."""
        return math.hypot(self.white_sd, self.colored_sd)

    def draw(self, rng: np.random.Generator, n: int, period_s: float) -> npt.NDArray[np.float64]:
        """Return ``n`` samples of this noise, shape ``(n,)``."""
        colored = colored_noise(
            rng, n, sd=self.colored_sd, tau_s=self.colored_tau_s, period_s=period_s
        )
        return rng.normal(0.0, self.white_sd, n) + colored


class Process(Protocol):
    """A plant model: noise-free channels, shape ``(n, channels)``, on a timestamp grid."""

    def __call__(
        self, rng: np.random.Generator, timestamps: npt.NDArray[np.float64], *, period_s: float
    ) -> npt.NDArray[np.float64]: ...


# couplings[kind][lead][channel], a move in noise sd per noise sd of the lead's (see Scenario).
Couplings = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulated plant: its channels, their sensor noise, its process model and couplings.

    ``noise[i]`` belongs to ``channels[i]``. ``couplings[kind][lead]`` says how a process
    fault of ``kind`` that shows first on channel ``lead`` moves every channel: a channel's
    move per noise sd of the lead's, in that channel's own noise sd, signed; the lead's own
    entry is +1 or -1 and gives its direction. A fault on a channel with no entry stays on
    that channel.

    Raises:
        ValueError: a coupling names a channel the plant lacks, or a lead's own entry is
            not +1 or -1.
    """

    name: str
    channels: tuple[str, ...]
    noise: tuple[SensorNoise, ...]
    process: Process
    couplings: Couplings

    def __post_init__(self) -> None:
        for kind, leads in self.couplings.items():
            for lead, moves in leads.items():
                unknown = sorted(set(moves) - set(self.channels))
                if unknown or abs(moves.get(lead, 0.0)) != 1.0:
                    raise ValueError(
                        f"{self.name} coupling {kind}[{lead}] = {dict(moves)}: name only the "
                        f"channels {', '.join(self.channels)} and give the lead itself +1 or -1"
                    )

    def coupling(self, kind: str, channel: str) -> npt.NDArray[np.float64] | None:
        """Return how a ``kind`` fault led by ``channel`` moves each channel, or ``None``.

        The moves have shape ``(channels,)``, in noise sd per noise sd of the lead (see the
        class); ``None`` means the plant has no such coupling and the fault stays on
        ``channel``.

        >>> SCENARIO_MODELS["well"].coupling("leak", "flow_kg_s")
        array([-1. ,  0.5,  0. ,  0. ])
        """
        moves = self.couplings.get(kind, {}).get(channel)
        if moves is None:
            return None
        return np.array([moves.get(c, 0.0) for c in self.channels], dtype=np.float64)

    def generate(
        self, rng: np.random.Generator, timestamps: npt.NDArray[np.float64], *, period_s: float
    ) -> NormalStream:
        """Return fault-free readings on ``timestamps`` (epoch s, shape ``(n,)``)."""
        clean = self.process(rng, timestamps, period_s=period_s)
        noise = np.column_stack([s.draw(rng, timestamps.size, period_s) for s in self.noise])
        return NormalStream(clean, noise)


def _well_process(
    rng: np.random.Generator, timestamps: npt.NDArray[np.float64], *, period_s: float
) -> npt.NDArray[np.float64]:
    """Geothermal production well: choke opening drives flow, pressure and temperature.

    The well delivers ``whp = p_shut - b*flow - c*flow**2`` (bar) and the choke passes
    ``flow = K * opening * sqrt(whp - p_sep)`` (kg/s). Opening the choke raises flow at
    once, then wellbore storage bleeds the pressure down over minutes, so flow overshoots
    and settles; temperature follows flow over the better part of an hour.
    """
    n = timestamps.size
    days = (timestamps - timestamps[0]) / _DAY_S
    day = daily_cycle(timestamps)
    opening = setpoint_ramps(
        rng,
        timestamps,
        changes_per_day=5.0,
        low=0.35,
        high=0.85,
        step_range=(0.04, 0.12),
        ramp_per_s=0.002,
    )
    # Reservoir: slow decline plus a gentle wander over hours.
    p_shut = 28.0 - 0.02 * days
    p_shut += colored_noise(rng, n, sd=0.08, tau_s=8 * 3600.0, period_s=period_s)
    p_sep = 6.0 + 1.0 * day  # plant back-pressure follows the condenser's day
    k_choke, b, c = 25.0, 0.2, 0.0005
    k2 = (k_choke * opening) ** 2
    flow_ss = (-k2 * b + np.sqrt((k2 * b) ** 2 + 4 * (1 + k2 * c) * k2 * (p_shut - p_sep))) / (
        2 * (1 + k2 * c)
    )
    whp = first_order_lag(p_shut - b * flow_ss - c * flow_ss**2, tau_s=360.0, period_s=period_s)
    flow_now = k_choke * opening * np.sqrt(np.maximum(whp - p_sep, 0.1))
    flow = first_order_lag(flow_now, tau_s=20.0, period_s=period_s)
    wht = first_order_lag(185.0 - 400.0 / flow, tau_s=2700.0, period_s=period_s) + 0.15 * day
    vibration = 0.4 + 1.2 * (flow / 50.0) ** 2 + 0.04 * (whp - p_sep)
    return np.column_stack([flow, whp, wht, vibration])


def _pump_process(
    rng: np.random.Generator, timestamps: npt.NDArray[np.float64], *, period_s: float
) -> npt.NDArray[np.float64]:
    """Mine dewatering pump on a variable-speed drive, following the sump's inflow.

    Affinity laws tie the channels to speed ratio ``s``: flow ~ s, head ~ s**2, power
    (and so supply current) ~ s**3. Bearing temperature lags load by ~25 minutes and rides
    on the pump station's air temperature; vibration rises with speed and has a structural
    resonance near 1280 rpm.
    """
    n = timestamps.size
    days = (timestamps - timestamps[0]) / _DAY_S
    day = daily_cycle(timestamps)
    setpoint = setpoint_ramps(
        rng,
        timestamps,
        changes_per_day=6.0,
        low=1050.0,
        high=1470.0,
        step_range=(60.0, 200.0),
        ramp_per_s=15.0,
    )
    speed = first_order_lag(setpoint + 10.0 * day, tau_s=3.0, period_s=period_s)
    s = speed / 1480.0
    wear = 1.0 - 0.001 * days  # impeller wear, about 0.1 % a day
    flow = first_order_lag(320.0 * s * wear, tau_s=4.0, period_s=period_s)
    sump_bar = 0.15 * day  # suction level rises and falls with the mine's water use
    discharge = first_order_lag(
        2.0 + 36.0 * (s * wear) ** 2 + sump_bar, tau_s=2.0, period_s=period_s
    )
    current = first_order_lag(45.0 + 380.0 * s**3, tau_s=1.0, period_s=period_s)
    vibration = 1.0 + 1.5 * s**2 + 0.7 * np.exp(-(((speed - 1280.0) / 45.0) ** 2))
    air_c = 24.0 + 1.5 * day + colored_noise(rng, n, sd=0.3, tau_s=3 * 3600.0, period_s=period_s)
    bearing = first_order_lag(air_c + 15.0 + 28.0 * s**2, tau_s=1500.0, period_s=period_s)
    return np.column_stack([speed, current, discharge, flow, vibration, bearing])


def _swing_together(channels: tuple[str, ...], *, others: float) -> dict[str, dict[str, float]]:
    """Return couplings where any of ``channels`` leads and the rest follow at ``others``."""
    return {lead: {c: 1.0 if c == lead else others for c in channels} for lead in channels}


# Directions follow each plant's physics; the other channels move less than the lead (in
# noise sd), so that a process fault stays an early warning on every channel it touches.
_WELL_COUPLINGS: Couplings = {
    "leak": {
        # Scale in the choke and flowline: less flow, so less drawdown and a higher whp.
        "flow_kg_s": {"flow_kg_s": -1.0, "whp_bar": 0.5},
        # The feed zone declines (a slow loss of reservoir pressure): the choke passes less.
        "whp_bar": {"whp_bar": -1.0, "flow_kg_s": -0.5},
    },
    "hunting": {
        # The choke's flow or pressure loop hunts: more opening, more flow, less pressure.
        # Temperature's hour-long lag filters the swing out.
        "flow_kg_s": {"flow_kg_s": 1.0, "whp_bar": -0.5, "vibration_mm_s": 0.3},
        "whp_bar": {"whp_bar": 1.0, "flow_kg_s": -0.5},
    },
}
_PUMP_COUPLINGS: Couplings = {
    "leak": {
        # Worn wear rings recirculate: less is delivered at the same speed and current,
        # and the head droops a little.
        "flow_m3h": {"flow_m3h": -1.0, "discharge_bar": -0.5},
        # Scale builds in the rising main: more head, less flow, a little less power.
        "discharge_bar": {"discharge_bar": 1.0, "flow_m3h": -0.5, "current_a": -0.3},
    },
    # The drive's level loop hunts: speed swings, and flow, head and power with it.
    "hunting": _swing_together(("speed_rpm", "current_a", "discharge_bar", "flow_m3h"), others=0.5),
}

_WELL = Scenario(
    name="well",
    channels=("flow_kg_s", "whp_bar", "wht_c", "vibration_mm_s"),
    noise=(
        SensorNoise(white_sd=0.25, colored_sd=0.35, colored_tau_s=15.0),
        SensorNoise(white_sd=0.03, colored_sd=0.04, colored_tau_s=30.0),
        SensorNoise(white_sd=0.04, colored_sd=0.05, colored_tau_s=120.0),
        SensorNoise(white_sd=0.05, colored_sd=0.10, colored_tau_s=10.0),
    ),
    process=_well_process,
    couplings=_WELL_COUPLINGS,
)

_PUMP = Scenario(
    name="pump",
    channels=(
        "speed_rpm",
        "current_a",
        "discharge_bar",
        "flow_m3h",
        "vibration_mm_s",
        "bearing_temp_c",
    ),
    noise=(
        SensorNoise(white_sd=1.5, colored_sd=1.0, colored_tau_s=5.0),
        SensorNoise(white_sd=1.5, colored_sd=1.5, colored_tau_s=8.0),
        SensorNoise(white_sd=0.08, colored_sd=0.06, colored_tau_s=5.0),
        SensorNoise(white_sd=2.0, colored_sd=2.0, colored_tau_s=20.0),
        SensorNoise(white_sd=0.05, colored_sd=0.12, colored_tau_s=10.0),
        SensorNoise(white_sd=0.08, colored_sd=0.05, colored_tau_s=300.0),
    ),
    process=_pump_process,
    couplings=_PUMP_COUPLINGS,
)

SCENARIO_MODELS: Mapping[str, Scenario] = MappingProxyType({"well": _WELL, "pump": _PUMP})
