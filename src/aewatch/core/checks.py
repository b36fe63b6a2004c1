"""Per-channel residual detectors and sensor-health checks (pipeline stage: Detector).

Beside the autoencoder's window error, every channel of every asset is watched by four
checks, each a statistic with a limit calibrated on held-out normal data (a ratio of 1
means "at the limit"):

``shift``
    A two-sided CUSUM of the channel's residual (reading minus the ``ResidualModel``'s
    prediction) in noise levels: a step or drift of one to three noise levels builds up
    within minutes, while single noisy samples fade (each sample adds ``z - k``; a sample
    counts at most ``clip`` noise levels, so one wild spike cannot raise it alone).
    Once at its limit it is held until the sum has fallen to half of it *and* the
    residual, smoothed over ``_LEVEL_HALFLIFE`` samples, is back within ``_SHIFT_HOLD``
    noise levels of 0, so a fault that is only partly undone (a step that settles at a
    noise level) stays one alert instead of resolving and raising again, and a resolved
    shift means the channel reads as predicted again. A sample in which ``moves`` channels
    or more depart by over ``MOVE_LEVEL`` noise levels at once counts at most ``MOVE_CAP``
    in these sums: that is a set-point move the predictor cannot time (speed, current,
    head and flow of a pump jump together), not a sensor fault, which shows on its own
    channel. The sample after such a sample counts the same way (``move_next``): the
    predictions catch up with a move over it, and the leader of the move (a pump's speed)
    still reads several noise levels off where fewer channels depart. Without this, those
    few samples of every move set the limits, and the shift check would need a step
    several times larger to reach them.
``noise``
    A CUSUM of the squared residual about its recent level, against 1 + ``k_spread``: the
    channel got noisier (a failing transmitter, a bad earth) or started to oscillate. A
    residual that is offset but no wider (a prediction lagging a ramp) does not count, and
    neither do the samples of a set-point move: where ``spread_moves`` channels or more
    depart by over ``MOVE_LEVEL`` at once, each counts at most ``MOVE_CAP`` here (two are
    enough: a sensor gets noisier on its own, while the shift sums still count a slow
    process change that moves two channels).
``stuck``
    The reading has not moved by more than ``stuck_tolerance`` for ``stuck_after``
    samples: a frozen or flatlined transmitter. The limit is at least the stated time and
    twice the longest still run of the normal history, so quantised channels keep quiet.
``range``
    The reading left the training envelope ``[low, high]`` (the normal history's
    0.1 %-99.9 % range widened by a margin, or physical limits given by the user). It is
    held outside until it is back inside by ``_RANGE_BAND`` noise levels or a tenth of
    the envelope's half-width, whichever is more (at most half of it), so a reading that
    hovers at an edge raises one alert, not one per crossing.
``spikes``
    Isolated spikes: a sample that stands out from *both* its neighbours, on the same
    side, by at least ``spike_level`` times the channel's normal sample-to-sample spread
    (a step or a ramp stands out from one neighbour only, so set-point moves do not
    count). Each spike adds 1 to a count that halves every ``spike_halflife`` samples
    (15 minutes) and never passes its limit; the limit is at least 1.5 (two spikes
    within a quarter of an hour) and ``margin`` × the highest count on the normal
    history, so a channel whose healthy history has glitches needs more of them. The
    check lets go one half-life after the count was last at its limit. A spike is judged
    when the sample after it arrives; one without both neighbours in its window (the first
    of a window that does not overlap the one before) is not judged.

``ChannelMonitor`` keeps the statistics of many assets in arrays (one row per asset) and
updates the assets' windows of one flush together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from aewatch.core.ewma import ewma_from
from aewatch.core.residual import ResidualModel, robust_sd

__all__ = [
    "CHECK_KINDS",
    "CHECK_MARGIN",
    "MOVE_CHANNELS",
    "MOVE_NEXT",
    "SPREAD_MOVE_CHANNELS",
    "ChannelChecks",
    "ChannelMonitor",
    "Observation",
    "calibrate_checks",
    "cusum_limit",
]

CHECK_KINDS: tuple[str, ...] = ("shift", "noise", "stuck", "range", "spikes")
STEADY_BOUND = 3.0  # steady_levels: halves this many times what noise explains apart, at most
CHECK_MARGIN = 1.5  # a limit is at least this many times the highest normal held-out value
MOVE_CHANNELS = 3  # channels departing together that make a sample a process move
MOVE_NEXT = True  # and the sample after it is part of the move (for the shift sums)
SPREAD_MOVE_CHANNELS = 2  # the same for the noise check
MOVE_LEVEL = 3.0  # noise levels: a channel "departs" by more than this
MOVE_CAP = 1.0  # noise levels: what a process move's sample adds to the sums at most
SHIFT, NOISE, STUCK, RANGE, SPIKES = range(5)
_CAP = 1.5  # a CUSUM never climbs past this many limits, so it falls back soon after a fault
_RELEASE = 0.5  # a check at its limit stays there until its statistic falls below this
_SHIFT_HOLD = 0.5  # noise levels: a shift at its limit also waits for the smoothed residual
_RANGE_BAND = 3.0  # noise levels back inside its envelope that release a channel's range
_RANGE_HALF_SHARE = 0.1  # or this share of the envelope's half-width, whichever is more
_LEVEL_HALFLIFE = 20.0  # samples; the smoothed residual an alert reports
_LEVEL_ALPHA = 1.0 - math.pow(0.5, 1.0 / _LEVEL_HALFLIFE)
_STUCK_TOLERANCE = 0.05  # of the channel's noise level: a move smaller than this is no move
_MIN_STUCK_SAMPLES = 6
_NORMAL_RANGE_Q = 0.001
_SQUARE_CLIP = 9.0  # a sample adds at most 3² to the noise statistic
CHUNK_WINDOWS = 2048  # windows observed in one slice (see ChannelMonitor.observe)
_ALONG_TIME = 8  # an asset with this many windows in one call is folded in along time
_SIEGMUND = 1.166
SPIKE_LEVEL = 6.0  # a spike stands this many normal spreads above both its neighbours
_SPIKE_HALFLIFE_S = 900.0
_MIN_SPIKE_LIMIT = 1.5  # two spikes within a half-life
OFF_LIMIT = 1e300  # the limit of a check that does not run: finite, so JSON holds it
_SPIKE_FLOOR = 0.1  # of the residual's noise level: the least spike unit (a still channel)
_MAX_CORRELATION = 0.9  # Siegmund's correction of the limit for the overshoot


@dataclass(frozen=True, slots=True)
class ChannelChecks:
    """The calibrated checks of one model; every array is ``(c,)``, in channel order.

    ``shift_limit`` and ``noise_limit`` are CUSUM limits; ``stuck_after`` in samples;
    ``stuck_tolerance``, ``low`` and ``high`` in the channels' units. ``hop`` is how many
    new samples each window brings. ``spike_unit`` ``(c,)`` is each channel's normal
    spread of a sample about the mean of its neighbours, in its units; ``spike_limit``
    ``(c,)`` the limit of the decaying spike count, ``spike_halflife`` its half-life in
    samples. Without ``spike_unit`` (a bundle from before the check) spikes are not
    looked for. ``moves`` and ``spread_moves``: how many channels departing together make
    a sample a process move for the shift sums and for the noise check (module docstring;
    0: none, as in bundles from before them); ``move_next``: the sample after a move is
    part of it in the shift sums (False in bundles from before it).
    """

    model: ResidualModel
    shift_limit: npt.NDArray[np.float64]
    noise_limit: npt.NDArray[np.float64]
    stuck_tolerance: npt.NDArray[np.float64]
    stuck_after: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    hop: int
    k: float = 1.0
    k_spread: float = 1.0
    clip: float = 6.0
    shift_scale: npt.NDArray[np.float64] | None = None  # (c,) long-run over plain noise sd
    spike_unit: npt.NDArray[np.float64] | None = None
    spike_limit: npt.NDArray[np.float64] | None = None
    spike_level: float = SPIKE_LEVEL
    spike_halflife: float = 180.0
    kinds: tuple[str, ...] = CHECK_KINDS  # the checks that run; the others report 0
    moves: int = 0
    spread_moves: int = 0
    move_next: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        return {
            "model": self.model.to_json(),
            **{name: getattr(self, name).tolist() for name in _ARRAYS},
            "hop": self.hop,
            "k": self.k,
            "k_spread": self.k_spread,
            "clip": self.clip,
            "shift_scale": None if self.shift_scale is None else self.shift_scale.tolist(),
            "spike_unit": None if self.spike_unit is None else self.spike_unit.tolist(),
            "spike_limit": None if self.spike_limit is None else self.spike_limit.tolist(),
            "spike_level": self.spike_level,
            "spike_halflife": self.spike_halflife,
            "kinds": list(self.kinds),
            "moves": self.moves,
            "spread_moves": self.spread_moves,
            "move_next": self.move_next,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``.

        Raises:
            ValueError: shapes that disagree with the model, or values out of range.
        """
        model = ResidualModel.from_json(obj["model"])
        arrays = {name: np.asarray(obj[name], dtype=np.float64) for name in _ARRAYS}
        for name, values in arrays.items():
            if values.shape != (model.channels,) or np.isnan(values).any():
                raise ValueError(f"checks: {name} must hold {model.channels} numbers")
        if (arrays["shift_limit"] <= 0).any() or (arrays["noise_limit"] <= 0).any():
            raise ValueError("checks: the CUSUM limits must be positive")
        if (arrays["stuck_after"] < 1).any() or (arrays["low"] > arrays["high"]).any():
            raise ValueError("checks: stuck_after must be >= 1 sample and low <= high")
        hop = int(obj["hop"])
        if hop < 1:
            raise ValueError(f"checks: hop must be >= 1, got {hop}")
        scale = obj.get("shift_scale")
        shift_scale = None if scale is None else np.asarray(scale, dtype=np.float64)
        if shift_scale is not None and (
            shift_scale.shape != (model.channels,) or not (shift_scale >= 1.0).all()
        ):
            raise ValueError(f"checks: shift_scale must hold {model.channels} numbers >= 1")
        spike_unit, spike_limit = _spike_arrays(obj, model.channels)
        spike_level = float(obj.get("spike_level", SPIKE_LEVEL))
        spike_halflife = float(obj.get("spike_halflife", 180.0))
        if not (spike_level > 0 and spike_halflife >= 1):
            raise ValueError("checks: spike_level must be > 0 and spike_halflife >= 1 sample")
        k, k_spread = float(obj.get("k", 1.0)), float(obj.get("k_spread", 1.0))
        clip = float(obj.get("clip", 6.0))
        _refuse_huge(
            {"k": k, "k_spread": k_spread, "clip": clip, "spike_level": spike_level}, _MAX_SETTING
        )
        _refuse_huge(
            {
                **arrays,
                "shift_scale": shift_scale,
                "spike_unit": spike_unit,
                "spike_limit": spike_limit,
            },
            OFF_LIMIT,
        )
        kinds = obj.get("kinds", CHECK_KINDS)
        if (
            not isinstance(kinds, list | tuple)
            or not kinds
            or any(k not in CHECK_KINDS for k in kinds)
        ):
            raise ValueError(f"checks: kinds must be a non-empty list of {', '.join(CHECK_KINDS)}")
        moves, spread_moves = obj.get("moves", 0), obj.get("spread_moves", 0)
        for name, count in (("moves", moves), ("spread_moves", spread_moves)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"checks: {name} must be a whole number >= 0, got {count!r}")
        move_next = obj.get("move_next", False)
        if not isinstance(move_next, bool):
            raise ValueError(f"checks: move_next must be true or false, got {move_next!r}")
        return cls(
            model,
            hop=hop,
            k=k,
            k_spread=k_spread,
            clip=clip,
            shift_scale=shift_scale,
            spike_unit=spike_unit,
            spike_limit=spike_limit,
            spike_level=spike_level,
            spike_halflife=spike_halflife,
            kinds=tuple(str(k) for k in kinds),
            moves=moves,
            spread_moves=spread_moves,
            move_next=move_next,
            **arrays,
        )

    @property
    def spike_alpha(self) -> float:
        """The spike count's decay per sample, as an EWMA's weight."""
        return 1.0 - math.pow(0.5, 1.0 / self.spike_halflife)


def _refuse_huge(values: dict[str, Any], bound: float) -> None:
    """Refuse a finite number past ``bound`` (a mutated bundle): ``spike_level`` times a
    unit of 1e308 overflows, where a clear refusal is due. The limits, units and envelope
    may be as large as :data:`OFF_LIMIT` (a check turned off), the settings that multiply
    them :data:`_MAX_SETTING`, so no product of the two leaves float64's range.

    Raises:
        ValueError: the first such value, named.
    """
    for name, value in values.items():
        if value is None:
            continue
        a = np.abs(np.asarray(value, dtype=np.float64))
        if (a[np.isfinite(a)] > bound).any():
            raise ValueError(f"checks: {name} holds a value too large (over {bound:.3g})")


_MAX_SETTING = 1e6  # spike_level, k, k_spread, clip: a few units each when trained


def _spike_arrays(
    obj: dict[str, Any], c: int
) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
    """The spike check's ``(unit, limit)`` from a bundle's JSON: both or neither."""
    unit, limit = obj.get("spike_unit"), obj.get("spike_limit")
    if unit is None and limit is None:
        return None, None
    if unit is None or limit is None:
        raise ValueError("checks: spike_unit and spike_limit come together")
    arrays = np.asarray(unit, dtype=np.float64), np.asarray(limit, dtype=np.float64)
    for name, values in zip(("spike_unit", "spike_limit"), arrays, strict=True):
        if values.shape != (c,) or not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"checks: {name} must hold {c} positive numbers")
    return arrays


_STATE_ROWS = 13
_LATCHES = [5, 6, 10]  # the state rows flagging a check held at its limit
_ARRAYS = ("shift_limit", "noise_limit", "stuck_tolerance", "stuck_after", "low", "high")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the checks made of ``n`` windows, in the order given.

    ``ratios`` ``(n, 5, c)``: each check's statistic over its limit (``CHECK_KINDS``
    order), the highest it reached in the window's new samples. ``measured`` and
    ``expected`` ``(n, c)``: the newest reading and its prediction, in the channels'
    units. ``level`` ``(n, c)``: the residual's mean since the shift statistic last left
    0, in noise levels, signed; ``spread`` ``(n, c)``: the recent residual's spread over
    its normal one. ``spike`` and ``spike_expected`` ``(n, c)``: the channel's latest
    spike and the mean of its two neighbours (NaN before the first).
    """

    ratios: npt.NDArray[np.float64]
    measured: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]
    level: npt.NDArray[np.float64]
    spread: npt.NDArray[np.float64]
    spike: npt.NDArray[np.float64]
    spike_expected: npt.NDArray[np.float64]

    def worst(self) -> npt.NDArray[np.float64]:
        """The highest ratio of each window ``(n,)`` over checks and channels."""
        if self.ratios.size == 0:
            return np.zeros(len(self.ratios))
        worst: npt.NDArray[np.float64] = self.ratios.reshape(len(self.ratios), -1).max(axis=1)
        return worst


class ChannelMonitor:
    """The checks' statistics for every asset a model serves, one row per asset.

    A row belongs to its asset's :class:`~aewatch.core.detector.AssetState` (its ``row``):
    the monitor keeps the rows side by side so that the checks of many assets run in one
    set of array operations, and knows no asset names.
    """

    def __init__(self, checks: ChannelChecks) -> None:
        self.checks = checks
        self._free: list[int] = []
        c = checks.model.channels
        # shift up, shift down, noise, level, square, shift latched, noise latched, samples
        # in the shift up and down sums since they were last 0, spike count, spikes
        # latched, the latest spike and the mean of its neighbours
        self._state = np.zeros((0, _STATE_ROWS, c))
        self._still = np.zeros((0, c))
        self._outside = np.zeros((0, c))  # 1 where a channel is held outside its envelope
        self._moved = np.zeros(0, dtype=np.bool_)  # whether the newest sample was a move
        half = np.maximum((checks.high - checks.low) / 2.0, 1e-12)
        inside = np.maximum(_RANGE_BAND * checks.model.noise / half, _RANGE_HALF_SHARE)
        self._range_release = np.maximum(1.0 - inside, _RELEASE)
        self._off = [i for i, kind in enumerate(CHECK_KINDS) if kind not in checks.kinds]

    def open(self) -> int:
        """A fresh row of statistics (from zero) for one asset; :meth:`close` gives it back."""
        c = self.checks.model.channels
        if self._free:
            row = self._free.pop()
        else:
            row = len(self._state)
            grow = max(1, row)
            self._state = np.concatenate((self._state, np.zeros((grow, *self._state.shape[1:]))))
            self._still = np.concatenate((self._still, np.zeros((grow, self._still.shape[1]))))
            self._outside = np.concatenate((self._outside, np.zeros((grow, c))))
            self._moved = np.concatenate((self._moved, np.zeros(grow, dtype=np.bool_)))
            self._free.extend(range(row + grow - 1, row, -1))
        self._state[row] = 0.0
        self._state[row, 4] = 1.0
        self._state[row, 11:13] = np.nan
        self._still[row] = 0.0
        self._outside[row] = 0.0
        self._moved[row] = False
        return row

    def close(self, row: int) -> None:
        """Give ``row`` back (its asset is gone or moved to another monitor)."""
        self._free.append(row)

    def adopt(self, row: int, previous: ChannelMonitor) -> int:
        """A row of this monitor holding ``previous``'s ``row`` (closed there), or a fresh
        one when the channels differ."""
        if previous is self:
            return row
        state, still = previous._state[row].copy(), previous._still[row].copy()
        outside, moved = previous._outside[row].copy(), bool(previous._moved[row])
        previous.close(row)
        mine = self.open()
        if state.shape == self._state.shape[1:]:
            self._state[mine], self._still[mine], self._outside[mine] = state, still, outside
            self._moved[mine] = moved
        return mine

    def export_row(self, row: int) -> dict[str, Any]:
        """Row ``row``'s statistics as plain JSON (NaN where no spike was seen yet), for
        :meth:`import_row` in a later process serving the same model."""
        return {
            "state": self._state[row].tolist(),
            "still": self._still[row].tolist(),
            "outside": self._outside[row].tolist(),
            "moved": bool(self._moved[row]),
        }

    def import_row(self, row: int, saved: dict[str, Any]) -> None:
        """Put what :meth:`export_row` gave into ``row`` (an open one).

        Raises:
            ValueError: ``saved`` does not hold statistics of this monitor's shape.
        """
        try:
            state = np.asarray(saved["state"], dtype=np.float64)
            still = np.asarray(saved["still"], dtype=np.float64)
            outside = np.asarray(saved["outside"], dtype=np.float64)
            moved = bool(saved["moved"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a row of channel statistics: {err}") from err
        shapes = (state.shape, still.shape, outside.shape)
        c = self._still.shape[1]
        if shapes != ((_STATE_ROWS, c), (c,), (c,)):
            raise ValueError(f"channel statistics of shapes {shapes}, not for {c} channels")
        self._state[row], self._still[row], self._outside[row] = state, still, outside
        self._moved[row] = moved

    def observe(
        self, slots: Sequence[int] | npt.NDArray[np.int64], windows: npt.NDArray[np.floating]
    ) -> Observation:
        """Fold the new samples of ``windows`` ``(n, c, L)`` into the statistics of ``slots``.

        ``slots[i]`` is the row of window ``i``'s asset; an asset's windows come in time
        order, and windows of different assets may interleave. An asset with many windows
        in the call (a file, a burst of samples) is folded in along time in array
        operations while none of its statistics reaches a limit; otherwise, and for the
        others, sample by sample (the assets of one turn together).

        Many windows go in slices of ``CHUNK_WINDOWS``, in order: the result is the same
        (each asset's windows still come in time order), and a slice's arrays stay in the
        CPU's cache, where one pass over tens of thousands of windows (a daemon's flush
        under load) waits on memory and costs twice as much a window.
        """
        rows = np.asarray(slots, dtype=np.int64)
        n, c = len(windows), self.checks.model.channels
        latest_spike = np.full((n, 2, c), np.nan)
        out = Observation(
            np.zeros((n, len(CHECK_KINDS), c)),
            np.zeros((n, c)),
            np.zeros((n, c)),
            np.zeros((n, c)),
            np.zeros((n, c)),
            latest_spike[:, 0],
            latest_spike[:, 1],
        )
        if n <= CHUNK_WINDOWS:
            self._observe(rows, windows, out, latest_spike)
        else:  # each slice fills its part of ``out`` in place
            for a, b in _slices(rows, CHUNK_WINDOWS):
                part = Observation(*(getattr(out, f.name)[a:b] for f in fields(Observation)))
                self._observe(rows[a:b], windows[a:b], part, latest_spike[a:b])
        return out

    def _observe(
        self,
        rows: npt.NDArray[np.int64],
        windows: npt.NDArray[np.floating],
        out: Observation,
        latest_spike: npt.NDArray[np.float64],
    ) -> None:
        """:meth:`observe` for one slice: fills ``out`` (zeros, NaN spikes) and
        ``latest_spike`` ``(n, 2, c)``, whose two rows ``out``'s spike fields view."""
        checks = self.checks
        model = checks.model
        n = len(windows)
        expected = model.expected(windows, checks.hop)  # (n, h, c)
        h = expected.shape[1]
        if n == 0 or h == 0:
            latest_spike[:] = 0.0
            return
        # The new samples and the two before them (NaN where the window holds no second):
        # (n, h + 2, c), time along axis 1. The spikes check judges each middle sample.
        spike_seq = _recent(windows, h)
        recent = spike_seq[:, 1:]  # the new samples and the one before: stuck, range
        x = recent[:, 1:]
        z = (x - expected) / model.noise
        np.nan_to_num(z, copy=False, nan=0.0)
        np.clip(z, -checks.clip, checks.clip, out=z)
        is_spike = _spike_samples(spike_seq, checks)
        runs = _AssetRuns.of(rows)
        departing = _departing(z) if checks.moves or checks.spread_moves else None
        shift_z = z
        if checks.moves and departing is not None:
            is_move = departing >= checks.moves  # (n, h)
            if checks.move_next:
                is_move = is_move | self._after_moves(is_move, runs)
            shift_z = _capped(z, is_move)
        samples = _Samples(
            z=z,
            spread_z=_without_moves(z, checks.spread_moves, departing),
            shift_z=shift_z if checks.shift_scale is None else shift_z / checks.shift_scale,
            is_still=np.abs(np.diff(recent, axis=1)) <= checks.stuck_tolerance,
            is_spike=is_spike,
            spike_seq=spike_seq,
            ratios=out.ratios,
            level=out.level,
            spread=out.spread,
            latest_spike=latest_spike,
        )
        mid = (checks.high + checks.low) / 2.0
        inverse_half = 1.0 / np.maximum((checks.high - checks.low) / 2.0, 1e-12)
        off_range = np.abs(x - mid) * inverse_half  # NaN compares False below, as 0 did
        samples.ratios[:, RANGE] = off_range[:, 0] if h == 1 else off_range.max(axis=1)
        np.nan_to_num(samples.ratios[:, RANGE], copy=False, nan=0.0)
        stepwise = np.ones(n, dtype=np.bool_)
        order, ordered, starts = runs.order, runs.ordered, runs.starts
        counts = runs.ends - starts + 1
        samples.ratios[:, RANGE] = self._held_outside(samples.ratios[:, RANGE], runs)
        is_long = counts >= _ALONG_TIME
        leftovers: list[tuple[int, npt.NDArray[np.int64]]] = []
        for m in np.unique(counts[is_long]).tolist():
            groups = starts[is_long & (counts == m)]
            mine = order[groups[:, None] + np.arange(m)]  # (assets, m) windows, time order
            done = self._fold_along_time(ordered[groups], mine, samples)
            stepwise[mine.ravel()] = False
            for i in np.flatnonzero(done < m).tolist():
                leftovers.append((int(ordered[groups[i]]), mine[i, done[i] :]))
        if stepwise.any():
            picked = np.flatnonzero(stepwise)
            for turn in _turns(rows[picked]):
                self._fold_turn(rows[picked[turn]], picked[turn], samples)
        for row, windows_left in leftovers:
            self._fold_sequence(row, windows_left, samples)
        if self._off:
            samples.ratios[:, self._off] = 0.0
        out.measured[:] = x[:, -1]
        out.expected[:] = expected[:, -1]

    def _after_moves(
        self, is_move: npt.NDArray[np.bool_], runs: _AssetRuns
    ) -> npt.NDArray[np.bool_]:
        """Which new samples ``(n, h)`` come right after a move: the sample before each
        is one (in its own window, the asset's window before it in this call, or the
        asset's newest sample of the call before, which each asset's row keeps). Updates
        the rows' newest-sample flags."""
        newest = is_move[runs.order, -1]  # each window's newest sample, asset by asset
        before = np.empty_like(newest)
        before[1:] = newest[:-1]
        before[runs.starts] = self._moved[runs.slots]
        first = np.empty_like(before)
        first[runs.order] = before
        self._moved[runs.slots] = newest[runs.ends]
        return _one_later(is_move, first)

    def _held_outside(
        self, ratio: npt.NDArray[np.float64], runs: _AssetRuns
    ) -> npt.NDArray[np.float64]:
        """The range ratios ``(n, c)`` with hysteresis: a channel that left its envelope
        (ratio 1 or more) stays at the limit until it is back inside by the band the
        module docstring gives (ratio ``self._range_release`` or less), so a reading
        that hovers at the edge raises one alert, not one per crossing. Updates each
        asset's held flags."""
        order, starts, slots = runs.order, runs.starts, runs.slots
        if not (ratio >= 1.0).any() and not self._outside[slots].any():
            return ratio  # nothing outside, nothing held: the common case, unchanged
        r = ratio[order]
        n = len(r)
        # The latest window at or before each that was outside (hi) or back inside (lo),
        # as 2 * index + 2; each asset's run opens with what it carried in, at
        # 2 * start + 1 (the winner) and 2 * start + 0.5, above any earlier asset's.
        position = 2.0 * np.arange(n, dtype=np.float64)[:, None] + 2.0
        hi = np.where(r >= 1.0, position, -1.0)
        lo = np.where(r <= self._range_release, position, -1.0)
        carried = self._outside[slots] > 0  # (assets, c)
        base = 2.0 * starts[:, None].astype(np.float64)
        hi[starts] = np.maximum(hi[starts], np.where(carried, base + 1.0, base + 0.5))
        lo[starts] = np.maximum(lo[starts], np.where(carried, base + 0.5, base + 1.0))
        held = np.maximum.accumulate(hi, axis=0) > np.maximum.accumulate(lo, axis=0)
        self._outside[slots] = held[runs.ends]
        out = np.empty_like(ratio)
        out[order] = np.where(held, np.maximum(r, 1.0), r)
        return out

    def _fold_turn(
        self, at: npt.NDArray[np.int64], turn: npt.NDArray[np.int64], samples: _Samples
    ) -> None:
        """Fold windows ``turn`` (one per asset row ``at``) in, sample by sample."""
        checks = self.checks
        c = checks.model.channels
        alpha = _LEVEL_ALPHA
        cap_shift, cap_noise = _CAP * checks.shift_limit, _CAP * checks.noise_limit
        s = self._state[at]  # (m, _STATE_ROWS, c), a copy
        run = self._still[at]
        shift = np.zeros((len(turn), c))
        noise = np.zeros((len(turn), c))
        stuck = np.zeros((len(turn), c))
        spikes = np.zeros((len(turn), c))
        for i in range(samples.z.shape[1]):
            zi = samples.z[turn, i]
            square = np.minimum((samples.spread_z[turn, i] - s[:, 3]) ** 2, _SQUARE_CLIP)
            si = samples.shift_z[turn, i]
            s[:, 0] = np.minimum(np.maximum(s[:, 0] + si - checks.k, 0.0), cap_shift)
            s[:, 1] = np.minimum(np.maximum(s[:, 1] - si - checks.k, 0.0), cap_shift)
            s[:, 7] = np.where(s[:, 0] > 0, s[:, 7] + 1.0, 0.0)
            s[:, 8] = np.where(s[:, 1] > 0, s[:, 8] + 1.0, 0.0)
            s[:, 2] = np.minimum(
                np.maximum(s[:, 2] + square - 1.0 - checks.k_spread, 0.0), cap_noise
            )
            s[:, 3] += alpha * (zi - s[:, 3])
            s[:, 4] += alpha * (square - s[:, 4])
            run = np.where(samples.is_still[turn, i], run + 1.0, 0.0)
            shift = np.maximum(
                shift,
                _latched(
                    s,
                    np.maximum(s[:, 0], s[:, 1]) / checks.shift_limit,
                    5,
                    (0, 1),
                    level=s[:, 3],
                ),
            )
            noise = np.maximum(noise, _latched(s, s[:, 2] / checks.noise_limit, 6, (2,)))
            stuck = np.maximum(stuck, run / checks.stuck_after)
        if checks.spike_limit is not None:
            spikes = self._count_spikes(s, turn, samples, checks.spike_limit)
        self._state[at], self._still[at] = s, run
        ratios = samples.ratios
        ratios[turn, SHIFT], ratios[turn, NOISE], ratios[turn, STUCK] = shift, noise, stuck
        ratios[turn, SPIKES] = spikes
        samples.latest_spike[turn] = s[:, 11:13]
        samples.level[turn] = _mean_shift(s, checks)
        samples.spread[turn] = np.sqrt(np.maximum(s[:, 4], 0.0))

    def _count_spikes(
        self,
        s: npt.NDArray[np.float64],
        turn: npt.NDArray[np.int64],
        samples: _Samples,
        limit: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Fold the spikes of windows ``turn`` into the spike counts of ``s`` (in place);
        the highest ratio of each window ``(m, c)``."""
        keep = 1.0 - self.checks.spike_alpha
        hits = samples.is_spike[turn]  # (m, h, c)
        h = hits.shape[1]
        if not hits.any() and not s[:, 10].any():  # the counts only fall: the first is highest
            s[:, 9] *= keep
            spikes = s[:, 9] / limit
            s[:, 9] *= keep ** (h - 1)
            return np.asarray(spikes, dtype=np.float64)
        spikes = np.zeros((len(turn), s.shape[2]))
        seq = samples.spike_seq[turn]
        for i in range(h):
            hit = hits[:, i]
            s[:, 9] = np.minimum(s[:, 9] * keep + hit, limit)
            s[:, 11] = np.where(hit, seq[:, i + 1], s[:, 11])
            s[:, 12] = np.where(hit, (seq[:, i] + seq[:, i + 2]) / 2.0, s[:, 12])
            spikes = np.maximum(spikes, _latched(s, s[:, 9] / limit, 10, ()))
        return spikes

    def _fold_sequence(self, row: int, windows: npt.NDArray[np.int64], samples: _Samples) -> None:
        """One asset's windows in time order: along time while no statistic is at its
        limit, window by window from the first that reaches it until all are released."""
        j = 0
        at = np.array([row], dtype=np.int64)
        while j < len(windows):
            state = self._state[row]
            if len(windows) - j >= _ALONG_TIME and not state[_LATCHES].any():
                j += int(self._fold_along_time(at, windows[None, j:], samples)[0])
                if j == len(windows):
                    break
            self._fold_turn(at, windows[j : j + 1], samples)
            j += 1

    def _fold_along_time(
        self, at: npt.NDArray[np.int64], mine: npt.NDArray[np.int64], samples: _Samples
    ) -> npt.NDArray[np.int64]:
        """Fold the windows ``mine`` ``(k, m)`` of the assets of rows ``at`` ``(k,)`` in
        along time, all ``k`` together, up to each asset's first window in which a
        statistic reaches its limit (none when one is at it already): that window and
        the ones after it take the sample-by-sample path, which caps and latches. Returns
        how many leading windows of each asset were folded ``(k,)``.

        Only the ratios are written for the folded windows (their ``level`` and
        ``spread`` stay 0): those serve the findings of a shift or noise check at its
        limit, and a window with one is never folded here.
        """
        checks = self.checks
        k, m = mine.shape
        h, c = samples.z.shape[1:]
        s = self._state[at]  # (k, _STATE_ROWS, c), a copy

        def along_time(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
            """(n, h, c) per window -> time-major (m * h, k, c) for the assets of ``mine``,
            so each asset's samples follow each other down axis 0."""
            return np.asarray(x[mine].reshape(k, m * h, c).transpose(1, 0, 2))

        z = along_time(samples.z)
        # The same arrays as z where nothing is capped or scaled (no second gather then).
        shift_z = z if samples.shift_z is samples.z else along_time(samples.shift_z)
        spread_z = z if samples.spread_z is samples.z else along_time(samples.spread_z)
        level = ewma_from(z, _LEVEL_ALPHA, s[:, 3].copy())
        level_before = np.concatenate((s[None, :, 3], level[:-1]))
        square = np.minimum((spread_z - level_before) ** 2, _SQUARE_CLIP)
        up = _lindley(shift_z - checks.k, s[:, 0])
        down = _lindley(-shift_z - checks.k, s[:, 1])
        spread_sum = _lindley(square - 1.0 - checks.k_spread, s[:, 2])
        shift_ratio = np.maximum(up, down) / checks.shift_limit
        noise_ratio = spread_sum / checks.noise_limit
        is_spike = along_time(samples.is_spike)
        spike_sum = np.zeros_like(z)  # no spikes are looked for: the count stays 0
        if checks.spike_limit is not None:
            alpha = checks.spike_alpha
            spike_sum = ewma_from(is_spike / alpha, alpha, s[:, 9].copy())
        spike_ratio = spike_sum / (np.inf if checks.spike_limit is None else checks.spike_limit)
        # Each asset's first sample at a limit (T: none), then whole windows before it.
        hits = ((shift_ratio >= 1.0) | (noise_ratio >= 1.0) | (spike_ratio >= 1.0)).any(axis=2)
        first = np.where(hits.any(axis=0), hits.argmax(axis=0), m * h)
        done = np.where(s[:, _LATCHES].any(axis=(1, 2)), 0, first // h)
        if not done.any():
            return np.asarray(done, dtype=np.int64)
        pick = np.flatnonzero(done)
        rows, windows, j = at[pick], mine[pick], len(pick)
        cols = np.arange(j)
        end = done[pick] * h - 1  # each picked asset's newest sample folded in
        is_still = samples.is_still[windows].reshape(j, m * h, c).transpose(1, 0, 2)
        run = _runs(is_still, self._still[rows])

        def per_window(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            """(m * h, j, c) samples -> (j, m, c), each window's highest."""
            if h == 1:
                return np.asarray(x.transpose(1, 0, 2))
            return np.asarray(x.reshape(m, h, j, c).max(axis=1).transpose(1, 0, 2))

        keep = np.arange(m) < done[pick][:, None]  # (j, m): the windows folded in
        kept = windows[keep]
        ratios = samples.ratios
        ratios[kept, SHIFT] = per_window(shift_ratio[:, pick])[keep]
        ratios[kept, NOISE] = per_window(noise_ratio[:, pick])[keep]
        ratios[kept, STUCK] = per_window(run / checks.stuck_after)[keep]
        ratios[kept, SPIKES] = per_window(spike_ratio[:, pick])[keep]
        squares = ewma_from(square[:, pick], _LEVEL_ALPHA, s[pick, 4].copy())
        state = s[pick]
        state[:, 0], state[:, 1] = up[end, pick], down[end, pick]
        state[:, 2], state[:, 3] = spread_sum[end, pick], level[end, pick]
        state[:, 4] = squares[end, cols]
        state[:, 7] = _since_zero(up[:, pick], end, state[:, 7])
        state[:, 8] = _since_zero(down[:, pick], end, state[:, 8])
        state[:, 9] = spike_sum[end, pick]
        index = np.arange(m * h).reshape(-1, 1, 1)
        last_spike = np.maximum.accumulate(np.where(is_spike[:, pick], index, -1), axis=0)
        at_spike = last_spike[end, cols]  # (j, c): the sample of each channel's latest spike
        if (at_spike >= 0).any():
            found = np.maximum(at_spike, 0)
            seq = samples.spike_seq[windows]  # (j, m, h + 2, c)
            judged = seq[:, :, 1:-1].reshape(j, m * h, c)
            around = ((seq[:, :, :-2] + seq[:, :, 2:]) / 2.0).reshape(j, m * h, c)
            for row, values in ((11, judged), (12, around)):
                picked = np.take_along_axis(values, found[:, None, :], axis=1)[:, 0]
                state[:, row] = np.where(at_spike >= 0, picked, state[:, row])
        self._state[rows] = state
        self._still[rows] = run[end, cols]
        return np.asarray(done, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _AssetRuns:
    """One call's windows grouped by asset: ``order`` sorts them by asset row, in time
    order within each (``ordered``: their rows); asset ``i``'s run is
    ``order[starts[i] : ends[i] + 1]`` and its row ``slots[i]``."""

    order: npt.NDArray[np.int64]
    ordered: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    @classmethod
    def of(cls, rows: npt.NDArray[np.int64]) -> _AssetRuns:
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        return cls(order, ordered, starts, np.append(starts[1:], len(rows)) - 1)

    @property
    def slots(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.ordered[self.starts], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Samples:
    """One call's samples ``(n, h, c)`` and what it fills in, per window."""

    z: npt.NDArray[np.float64]
    spread_z: npt.NDArray[np.float64]  # z as the noise check squares it (moves capped)
    shift_z: npt.NDArray[np.float64]
    is_still: npt.NDArray[np.bool_]
    is_spike: npt.NDArray[np.bool_]
    spike_seq: npt.NDArray[np.float64]  # (n, h + 2, c): each judged sample and its neighbours
    ratios: npt.NDArray[np.float64]
    level: npt.NDArray[np.float64]
    spread: npt.NDArray[np.float64]
    latest_spike: npt.NDArray[np.float64]  # (n, 2, c): the latest spike, its neighbours' mean


def _slices(rows: npt.NDArray[np.int64], size: int) -> list[tuple[int, int]]:
    """Consecutive ``[a, b)`` covering ``rows``, each about ``size`` long, cut where one
    asset's windows end and the next one's begin (an asset's windows split, the sums
    carried over, only when it alone has more than twice ``size``).

    >>> _slices(np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2]), 2)
    [(0, 3), (3, 5), (5, 7), (7, 10)]
    """
    n = len(rows)
    changes = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    out: list[tuple[int, int]] = []
    a = 0
    while a < n:
        at = int(np.searchsorted(changes, a + size))
        b = int(changes[at]) if at < len(changes) else n
        if b - a > 2 * size:
            b = a + size
        out.append((a, b))
        a = b
    return out


def _recent(windows: npt.NDArray[np.floating], h: int) -> npt.NDArray[np.float64]:
    """The newest ``h`` samples of ``windows`` ``(n, c, L)`` and the two before them,
    ``(n, h + 2, c)``; NaN where the window does not reach that far back."""
    n, c, length = np.shape(windows)
    first = length - h - 2
    seq = np.asarray(windows[:, :, max(first, 0) :], dtype=np.float64).transpose(0, 2, 1)
    if first < 0:
        seq = np.concatenate((np.full((n, -first, c), np.nan), seq), axis=1)
    return seq


def _departing(z: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """How many channels of each sample of ``z`` ``(..., c)`` are over ``MOVE_LEVEL``
    noise levels off their predictions: ``(...)``."""
    return np.asarray((np.abs(z) > MOVE_LEVEL).sum(axis=-1), dtype=np.int64)


def _without_moves(
    z: npt.NDArray[np.float64], moves: int, departing: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.float64]:
    """The residuals ``z`` ``(..., c)`` (noise levels) as the shift sums or the noise check
    count them: in a sample where ``moves`` channels or more depart by over
    ``MOVE_LEVEL`` at once, each at most ``MOVE_CAP`` either way. ``z`` itself where
    ``moves`` is 0 or no sample is one. ``departing``: :func:`_departing` of ``z``, where
    the caller has it already.

    >>> z = np.array([[4.0, -5.0, 3.5, 0.5], [4.0, 0.0, 0.0, 0.0]])
    >>> _without_moves(z, 3).tolist()
    [[1.0, -1.0, 1.0, 0.5], [4.0, 0.0, 0.0, 0.0]]
    """
    if moves < 1:
        return z
    return _capped(z, (_departing(z) if departing is None else departing) >= moves)


def _capped(z: npt.NDArray[np.float64], is_move: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """``z`` ``(..., c)`` with every channel of the samples ``is_move`` ``(...)`` at most
    ``MOVE_CAP`` either way; ``z`` itself where no sample is a move."""
    if not is_move.any():
        return z
    return np.where(is_move[..., None], np.clip(z, -MOVE_CAP, MOVE_CAP), z)


def _moves_and_next(
    departing: npt.NDArray[np.int64], moves: int, *, move_next: bool
) -> npt.NDArray[np.bool_]:
    """Which samples of one run ``(m,)`` count as a process move: ``moves`` channels or
    more depart (``departing``, :func:`_departing`), and with ``move_next`` the sample
    after such a sample too.

    >>> _moves_and_next(np.array([0, 3, 1, 0, 4]), 3, move_next=True).tolist()
    [False, True, True, False, True]
    """
    is_move = departing >= moves if moves >= 1 else np.zeros(departing.shape, dtype=np.bool_)
    if move_next and len(is_move):
        is_move = is_move | _one_later(is_move, np.False_)
    return np.asarray(is_move, dtype=np.bool_)


def _one_later(
    flags: npt.NDArray[np.bool_], first: npt.NDArray[np.bool_] | np.bool_
) -> npt.NDArray[np.bool_]:
    """``flags`` ``(..., h)`` one sample later along the last axis: each sample takes the
    flag of the one before it, the first ones take ``first`` ``(...)``.

    >>> _one_later(np.array([[True, False], [False, True]]), np.array([False, True])).tolist()
    [[False, True], [True, False]]
    """
    later = np.empty_like(flags)
    later[..., 1:] = flags[..., :-1]
    later[..., 0] = first
    return later


def _spike_samples(seq: npt.NDArray[np.float64], checks: ChannelChecks) -> npt.NDArray[np.bool_]:
    """Whether sample ``i + 1`` of ``seq`` ``(n, h + 2, c)`` is a spike, for each ``i``:
    ``(n, h, c)`` (one without both neighbours is not judged)."""
    if checks.spike_unit is None:
        n, h2, c = seq.shape
        return np.zeros((n, h2 - 2, c), dtype=np.bool_)
    least = checks.spike_level * checks.spike_unit
    return _is_spike(seq[:, :-2], seq[:, 1:-1], seq[:, 2:], least)


def _is_spike(
    left: npt.NDArray[np.float64],
    mid: npt.NDArray[np.float64],
    right: npt.NDArray[np.float64],
    least: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Whether ``mid`` stands above or below both neighbours by at least ``least``."""
    with np.errstate(invalid="ignore"):
        above = mid - np.maximum(left, right)
        below = np.minimum(left, right) - mid
        return np.asarray(np.maximum(above, below) >= least)


def _lindley(
    steps: npt.NDArray[np.float64], start: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``S = max(0, S + step)`` from ``start`` over ``steps`` ``(T, ...)`` along axis 0,
    uncapped: ``max(start + C_t, C_t - min(C_1..C_t))`` for the cumulative sums ``C``."""
    total = np.cumsum(steps, axis=0)
    lowest = np.minimum.accumulate(total, axis=0)
    return np.maximum(np.maximum(start + total, total - lowest), 0.0)


def _since_zero(
    sums: npt.NDArray[np.float64], end: npt.NDArray[np.int64], count: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Samples since each sum ``(T, j, c)`` was last 0, at sample ``end[i]`` of asset ``i``;
    ``count`` ``(j, c)`` before the first sample."""
    index = np.arange(len(sums)).reshape(-1, 1, 1)
    last_zero = np.maximum.accumulate(np.where(sums <= 0.0, index, -1), axis=0)
    at = last_zero[end, np.arange(len(end))]
    return np.asarray(np.where(at >= 0, end[:, None] - at, count + end[:, None] + 1.0), np.float64)


def _runs(
    is_still: npt.NDArray[np.bool_], start: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Length of the still run at each sample ``(T, ...)``, continuing from ``start``."""
    index = np.arange(len(is_still)).reshape(-1, *([1] * (is_still.ndim - 1)))
    last_move = np.maximum.accumulate(np.where(is_still, -1, index), axis=0)
    return np.where(last_move >= 0, index - last_move, start + index + 1.0).astype(np.float64)


def _mean_shift(s: npt.NDArray[np.float64], checks: ChannelChecks) -> npt.NDArray[np.float64]:
    """The residual's mean since the larger shift sum last left 0, in noise levels, signed.

    A CUSUM's own estimate of the change: ``k + sum / samples`` (Page 1954), in the
    long-run units the sums count, turned back into noise levels. 0 where both sums are 0.
    """
    up = s[:, 0] >= s[:, 1]
    total = np.where(up, s[:, 0], s[:, 1])
    count = np.where(up, s[:, 7], s[:, 8])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, checks.k + total / np.maximum(count, 1.0), 0.0)
    scale = 1.0 if checks.shift_scale is None else checks.shift_scale
    return np.asarray(np.where(up, mean, -mean) * scale, dtype=np.float64)


def _latched(
    s: npt.NDArray[np.float64],
    ratio: npt.NDArray[np.float64],
    flag: int,
    sums: tuple[int, ...],
    level: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """``ratio`` as the check reports it: at least 1 from reaching 1 until it falls below
    ``_RELEASE`` (and, where the smoothed residual ``level`` is given, it is back within
    ``_SHIFT_HOLD``); then the CUSUM ``sums`` start again from 0, so a fault that ended
    does not raise again from a statistic still near its limit. Updates ``s`` in place."""
    latched = np.where(ratio >= 1.0, 1.0, s[:, flag])
    released = (latched > 0) & (ratio < _RELEASE)
    if level is not None and released.any():
        released &= np.abs(level) < _SHIFT_HOLD
    if released.any():
        latched[released] = 0.0
        for row in sums:
            s[:, row][released] = 0.0
    s[:, flag] = latched
    return np.where(latched > 0, np.maximum(ratio, 1.0), ratio)


def cusum_limit(arl: float, drift: float, variance: float = 1.0) -> float:
    """The one-sided CUSUM limit whose mean run length between false alarms is ``arl`` samples.

    Siegmund's approximation for increments of mean ``-drift`` and the given variance
    (``z - k`` for a standard normal ``z`` has ``drift = k``, ``variance = 1``).

    >>> round(cusum_limit(10_000, 1.0), 2)
    3.79
    """
    if arl <= 1 or drift <= 0:
        raise ValueError(f"need arl > 1 and drift > 0, got {arl}, {drift}")
    rate = 2.0 * drift / variance

    def mean_run(limit: float) -> float:
        b = rate * (limit + _SIEGMUND * math.sqrt(variance))
        return (math.exp(b) - b - 1.0) / (rate * drift)

    lo, hi = 0.0, 1.0
    while mean_run(hi) < arl:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if mean_run(mid) < arl else (lo, mid)
    return hi


def calibrate_checks(
    model: ResidualModel,
    held_out: list[npt.NDArray[np.floating]],
    normal: list[npt.NDArray[np.floating]],
    *,
    period_s: float,
    hop: int,
    false_alerts_per_day: float,
    stuck_s: float,
    range_margin: float,
    margin: float = CHECK_MARGIN,
    limits: dict[int, tuple[float | None, float | None]] | None = None,
    k: float = 1.0,
    k_spread: float = 1.0,
    clip: float = 6.0,
    kinds: tuple[str, ...] = CHECK_KINDS,
    still_unit: npt.NDArray[np.float64] | None = None,
    moves: int = 0,
    spread_moves: int = 0,
    move_next: bool = False,
) -> ChannelChecks:
    """Limits for ``model``'s checks from normal data the network did not train on.

    The false-alert budget per asset and day is shared evenly between the autoencoder and
    the channels' ``shift`` and ``noise`` statistics; each CUSUM limit is the larger of
    what its share allows for white normal residuals and ``margin`` × the highest value
    it reached on ``held_out`` (real residuals are neither white nor normal). ``normal``
    (every normal block) sets the envelope, the longest still run and the spikes' unit
    and limit (they need no prediction, so the training rows are as honest a sample of
    them as the held-out ones); ``limits`` maps a
    channel index to physical (low, high) limits that replace its envelope (None: that
    side keeps the envelope's). ``still_unit`` ``(c,)`` is the unit of the stuck check's
    tolerance where it is not the model's noise level (a channel's sample-to-sample
    spread where the residual is its distance from its median). Only ``kinds`` run: the
    limits of the others are set where nothing reaches them. ``moves`` and
    ``spread_moves`` (0: none) make a sample where that many channels depart together
    count at most ``MOVE_CAP`` in the shift sums and the noise check, here as in the
    monitor (module docstring); ``move_next`` makes the sample after one count so in the
    shift sums too.
    """
    c = model.channels
    samples_per_day = 86_400.0 / period_s
    shares = 2 * c + 1
    arl = samples_per_day * shares / max(false_alerts_per_day, 1e-9)
    shift_theory = cusum_limit(2.0 * arl, k)  # two-sided: each side gets half
    noise_theory = 2.0 * cusum_limit(arl, k_spread, variance=2.0)
    z = [model.residuals([b]) / model.noise for b in held_out]
    z = [np.clip(np.nan_to_num(r), -clip, clip) for r in z if len(r)]
    shift_scale = _long_run_scale(z, c)
    shift_seen, noise_seen = np.zeros(c), np.zeros(c)
    for r in z:
        departing = _departing(r)
        shift_r = _capped(r, _moves_and_next(departing, moves, move_next=move_next)) / shift_scale
        shift_seen = np.maximum(shift_seen, _lindley_max(shift_r - k))
        shift_seen = np.maximum(shift_seen, _lindley_max(-shift_r - k))
        spread_r = _without_moves(r, spread_moves, departing)
        square = np.minimum(_spread_steps(r, spread_r), _SQUARE_CLIP)
        noise_seen = np.maximum(noise_seen, _lindley_max(square - 1.0 - k_spread))
    rows = np.concatenate([np.asarray(b, dtype=np.float64) for b in normal])
    lo, hi = np.nanquantile(rows, [_NORMAL_RANGE_Q, 1.0 - _NORMAL_RANGE_Q], axis=0)
    width = np.maximum(hi - lo, model.noise)
    low, high = lo - range_margin * width, hi + range_margin * width
    for j, (lo_j, hi_j) in (limits or {}).items():
        low[j] = low[j] if lo_j is None else lo_j
        high[j] = high[j] if hi_j is None else hi_j
    tolerance = _STUCK_TOLERANCE * (model.noise if still_unit is None else still_unit)
    longest = np.zeros(c)
    for block in normal:
        longest = np.maximum(longest, _longest_still(np.asarray(block, np.float64), tolerance))
    least = max(math.ceil(stuck_s / period_s), _MIN_STUCK_SAMPLES)
    spike_halflife = max(_SPIKE_HALFLIFE_S / period_s, 1.0)
    spike_unit, spike_seen = _spikes_seen(normal, _SPIKE_FLOOR * model.noise, spike_halflife)
    off = np.full(c, OFF_LIMIT)
    is_on = {kind: kind in kinds for kind in CHECK_KINDS}
    return ChannelChecks(
        model,
        shift_limit=np.maximum(shift_theory, margin * shift_seen) if is_on["shift"] else off,
        noise_limit=np.maximum(noise_theory, margin * noise_seen) if is_on["noise"] else off,
        stuck_tolerance=tolerance,
        stuck_after=np.maximum(float(least), 2.0 * longest + 1.0) if is_on["stuck"] else off,
        low=low if is_on["range"] else -off,
        high=high if is_on["range"] else off,
        hop=hop,
        k=k,
        k_spread=k_spread,
        clip=clip,
        shift_scale=shift_scale,
        spike_unit=spike_unit if is_on["spikes"] else None,
        spike_limit=np.maximum(_MIN_SPIKE_LIMIT, margin * spike_seen) if is_on["spikes"] else None,
        spike_halflife=spike_halflife,
        kinds=tuple(kind for kind in CHECK_KINDS if is_on[kind]),
        moves=moves,
        spread_moves=spread_moves,
        move_next=move_next and moves >= 1,
    )


def steady_levels(
    blocks: list[npt.NDArray[np.floating]],
    model: ResidualModel,
    shift_scale: npt.NDArray[np.float64],
    bound: float = STEADY_BOUND,
) -> npt.NDArray[np.bool_]:
    """Which channels ``(c,)`` hold one level over ``blocks``: the means of the history's
    two halves differ by less than ``bound`` times what the channel's residual noise
    (its long-run spread, ``shift_scale``) explains. A channel that warms up or wanders
    over the history does not, and a limit set on it would not hold for the next hours.
    """
    rows = np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])
    half = len(rows) // 2
    if half < 2:
        return np.zeros(model.channels, dtype=bool)
    first, second = rows[:half], rows[half:]
    gap = np.abs(np.nanmean(first, axis=0) - np.nanmean(second, axis=0))
    explained = model.noise * shift_scale * math.sqrt(1.0 / len(first) + 1.0 / len(second))
    return np.asarray(gap < bound * explained)


def _spikes_seen(
    blocks: list[npt.NDArray[np.floating]], floor: npt.NDArray[np.float64], halflife: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each channel's spike unit and the highest spike count on ``blocks``, both ``(c,)``.

    The unit is the robust spread of a sample about the mean of its two neighbours
    (its standard deviation where that is 0, as on a quantised channel; at least
    ``floor`` for a channel that never moves).
    """
    c = len(floor)
    triples = [
        (b[:-2], b[1:-1], b[2:])
        for b in (np.asarray(x, dtype=np.float64) for x in blocks)
        if len(b) > 2
    ]
    if not triples:
        return floor.copy(), np.zeros(c)
    away = np.concatenate([mid - (left + right) / 2.0 for left, mid, right in triples])
    unit = np.maximum(np.nan_to_num(robust_sd(away)), floor)
    alpha = 1.0 - math.pow(0.5, 1.0 / halflife)
    seen = np.zeros(c)
    for left, mid, right in triples:
        is_spike = _is_spike(left, mid, right, SPIKE_LEVEL * unit)
        count = ewma_from(is_spike / alpha, alpha, np.zeros(c))
        seen = np.maximum(seen, count.max(axis=0))
    return unit, seen


def _long_run_scale(z: list[npt.NDArray[np.float64]], c: int) -> npt.NDArray[np.float64]:
    """Per channel ``sqrt((1 + r) / (1 - r))`` for the residual's lag-1 correlation ``r``.

    A sum of ``n`` residuals that follow each other (``r > 0``) spreads like ``n`` times
    this factor squared, not ``n``: the shift CUSUM counts the residual in these wider
    units, so its limit holds for what the model leaves unexplained. ``r`` is taken in
    [0, 0.9].
    """
    pairs = [(r[:-1], r[1:]) for r in z if len(r) > 2]
    if not pairs:
        return np.ones(c)
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denominator > 0, (a * b).sum(axis=0) / denominator, 0.0)
    r = np.clip(r, 0.0, _MAX_CORRELATION)
    return np.asarray(np.sqrt((1.0 + r) / (1.0 - r)), dtype=np.float64)


def _turns(rows: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """Indices of the windows to update together: the r-th window of every asset in turn r."""
    if len(rows) == 0:
        return []
    if len(np.unique(rows)) == len(rows):
        return [np.arange(len(rows))]
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.append(starts, len(rows))))
    ranks = np.empty(len(rows), dtype=np.int64)
    ranks[order] = rank
    by_rank = np.argsort(ranks, kind="stable")
    bounds = np.searchsorted(ranks[by_rank], np.arange(int(ranks.max()) + 2))
    return [by_rank[bounds[r] : bounds[r + 1]] for r in range(len(bounds) - 1)]


def _spread_steps(
    z: npt.NDArray[np.float64], spread_z: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``(spread_z_t - level_{t-1})²`` ``(n, c)``: each residual (as the noise check takes
    it, ``spread_z``) squared about the recent level of ``z`` (starting at 0), as the
    monitor computes it."""
    level = ewma_from(z, _LEVEL_ALPHA, np.zeros(z.shape[1]))
    return np.asarray((spread_z - np.vstack((np.zeros((1, z.shape[1])), level[:-1]))) ** 2)


def _lindley_max(steps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Highest value ``(c,)`` of ``S = max(0, S + step)`` from 0 over ``steps`` ``(n, c)``."""
    if len(steps) == 0:
        return np.zeros(steps.shape[1])
    return np.asarray(_lindley(steps, np.zeros(steps.shape[1])).max(axis=0))


def _longest_still(
    rows: npt.NDArray[np.float64], tolerance: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Longest run ``(c,)`` of consecutive samples that moved by at most ``tolerance``."""
    if len(rows) < 2:
        return np.zeros(rows.shape[1])
    still = np.abs(np.diff(rows, axis=0)) <= tolerance
    return np.asarray(_runs(still, np.zeros(rows.shape[1])).max(axis=0))
