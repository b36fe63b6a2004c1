"""Faults to inject into simulated streams: what the user asks for and where they land.

Part of the offline simulator (``aewatch simulate``), outside the scoring pipeline. A
``FaultSpec`` is a request (any of time, duration and channel may be left to the seed),
``parse_faults`` reads the command line's fault syntax into specs, and ``place_faults``
turns specs into concrete, labelled row spans. A fault's channel is the one it acts on, or
for a process fault (``leak``, ``hunting``) the one it shows first on; a process fault may
move other channels too, but always within its span's rows, which are all labelled.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from aewatch.errors import AewatchError

__all__ = [
    "FAULT_KINDS",
    "FAULT_SYNTAX",
    "FaultSpec",
    "InjectedFault",
    "Placement",
    "parse_faults",
    "place_faults",
]

FAULT_KINDS: tuple[str, ...] = (
    "drift",
    "step",
    "spikes",
    "stuck",
    "noise",
    "oscillation",
    "decouple",
    "gain",
    "leak",
    "hunting",
)
FAULT_SYNTAX = (
    "comma-separated items KIND, KIND:CHANNEL, KIND@START_H+DURATION_H or "
    "KIND@START_H+DURATION_H:CHANNEL (hours from the start of the stream), or 'all' for "
    f"one of each kind; kinds: {', '.join(FAULT_KINDS)}; "
    "e.g. 'drift,spikes@3.5+0.25:whp_bar,stuck'"
)

# Random faults keep out of the first tenth so a stream always opens on normal data.
_WARMUP_FRACTION = 0.1
_DEFAULT_DURATION_S = (300.0, 1800.0)
_MIN_GAP_S = 600.0
_PLACEMENT_TRIES = 20
_ANY_CHANNEL: Mapping[str, Sequence[str]] = MappingProxyType({})
_ITEM = re.compile(r"(?P<kind>[^@:]*)(?:@(?P<start>[^+:]*)\+(?P<duration>[^:]*))?(?::(?P<ch>.*))?")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to inject; any field left ``None`` is chosen at random from the seed.

    ``start_s`` and ``duration_s`` are seconds from the start of the stream.

    >>> FaultSpec("drift", start_s=3600.0, duration_s=900.0, channel="whp_bar").kind
    'drift'

    Raises:
        AewatchError: unknown kind, negative start, non-positive duration, empty channel.
    """

    kind: str
    start_s: float | None = None
    duration_s: float | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise AewatchError(f"fault kind {self.kind!r} is unknown; {_kinds_hint(self.kind)}")
        if self.start_s is not None and not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise AewatchError(
                f"fault {self.kind} start = {self.start_s} s; it must be a finite time "
                "of 0 or more seconds from the start of the stream"
            )
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise AewatchError(
                f"fault {self.kind} duration = {self.duration_s} s; it must be finite and "
                "positive, e.g. 900 s (15 minutes)"
            )
        if self.channel is not None and not self.channel:
            raise AewatchError(
                f"fault {self.kind} has an empty channel name; name a channel or leave it "
                "out to pick one at random"
            )


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault as placed: rows with ``start_s <= t < end_s`` (s from the start) are faulty."""

    kind: str
    channel: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Placement:
    """An injected fault and the rows it covers, ``rows.start <= i < rows.stop``."""

    fault: InjectedFault
    rows: slice


def parse_faults(text: str) -> list[FaultSpec]:
    """Return the fault specs written in the command line's syntax (see ``FAULT_SYNTAX``).

    Times are hours in the text and seconds in the specs. Empty text means no faults.

    >>> parse_faults("drift,spikes@3.5+0.25:whp_bar")[1]
    FaultSpec(kind='spikes', start_s=12600.0, duration_s=900.0, channel='whp_bar')

    Raises:
        AewatchError: naming the bad item and what is wrong with it, with the syntax.
    """
    if not text.strip():
        return []
    specs: list[FaultSpec] = []
    for item in text.split(","):
        try:
            specs.extend(_parse_item(item.strip()))
        except AewatchError as err:
            raise AewatchError(
                f"fault item {item.strip()!r} in {text!r}: {err}\n  syntax: {FAULT_SYNTAX}"
            ) from err
    return specs


def place_faults(
    rng: np.random.Generator,
    specs: Sequence[FaultSpec],
    *,
    channels: Sequence[str],
    n: int,
    period_s: float,
    leads: Mapping[str, Sequence[str]] = _ANY_CHANNEL,
) -> list[Placement]:
    """Return where each spec lands on a grid of ``n`` rows ``period_s`` apart, in order.

    Given times are honoured as given. Faults with no start go after the first tenth of
    the stream, clear of every other fault by up to ten minutes; with no duration they
    last 5-30 minutes, scaled down so that all of them fit a short stream. A fault with
    no channel gets one of ``leads[kind]`` (the channels a process fault of that kind can
    show first on), or of ``channels`` for a kind not in ``leads``.

    Raises:
        AewatchError: unknown channel, a fault outside the stream or covering no row, or
            a stream too short for the random faults asked for.
    """
    for spec in specs:
        if spec.channel is not None and spec.channel not in channels:
            raise AewatchError(
                f"fault {spec.kind} names channel {spec.channel!r}, which this scenario "
                f"lacks; use one of {', '.join(channels)} or leave it out"
            )
    grid = _Grid(n, period_s)
    pools = {kind: tuple(leads.get(kind, channels)) for kind in FAULT_KINDS}
    fixed = {
        i: _place_fixed(rng, spec, pools, grid)
        for i, spec in enumerate(specs)
        if spec.start_s is not None
    }
    loose = [i for i, s in enumerate(specs) if s.start_s is None]
    placed = _place_random(rng, [specs[i] for i in loose], list(fixed.values()), pools, grid)
    by_index = fixed | dict(zip(loose, placed, strict=True))
    return [by_index[i] for i in range(len(specs))]


@dataclass(frozen=True, slots=True)
class _Grid:
    n: int
    period_s: float

    def time_s(self, row: int) -> float:
        return float(row) * self.period_s

    def first_row_at_or_after(self, t_s: float) -> int:
        times = np.arange(self.n, dtype=np.float64) * self.period_s
        return int(np.searchsorted(times, t_s, side="left"))


def _parse_item(item: str) -> list[FaultSpec]:
    if not item:
        raise AewatchError("the item is empty; remove the doubled or trailing comma")
    match = _ITEM.fullmatch(item)
    if match is None:
        raise AewatchError("a time needs a start and a duration: KIND@START_H+DURATION_H")
    kind, channel = match["kind"].strip(), match["ch"]
    if kind == "all":
        if match["start"] is not None or channel is not None:
            raise AewatchError("'all' takes no time or channel")
        return [FaultSpec(k) for k in FAULT_KINDS]
    if match["start"] is None:
        return [FaultSpec(kind, channel=None if channel is None else channel.strip())]
    start_h = _parse_hours(match["start"], "START_H")
    duration_h = _parse_hours(match["duration"], "DURATION_H")
    return [
        FaultSpec(
            kind,
            start_s=start_h * 3600.0,
            duration_s=duration_h * 3600.0,
            channel=None if channel is None else channel.strip(),
        )
    ]


def _parse_hours(text: str, what: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours):
        raise AewatchError(f"{what} = {text!r} is not a number of hours, e.g. 3.5")
    return hours


def _kinds_hint(kind: str) -> str:
    close = difflib.get_close_matches(kind, FAULT_KINDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}use one of {', '.join(FAULT_KINDS)} (or 'all')"


def _default_duration_s(rng: np.random.Generator, cap_s: float) -> float:
    low, high = _DEFAULT_DURATION_S
    return float(rng.uniform(low, high)) * min(1.0, cap_s / high)


def _place_fixed(
    rng: np.random.Generator, spec: FaultSpec, pools: Mapping[str, Sequence[str]], grid: _Grid
) -> Placement:
    assert spec.start_s is not None
    total_s = grid.time_s(grid.n)
    if spec.start_s >= total_s:
        raise AewatchError(
            f"fault {spec.kind} starts at {spec.start_s / 3600:g} h but the stream is only "
            f"{total_s / 3600:g} h long; start it earlier or simulate more hours"
        )
    duration_s = spec.duration_s
    if duration_s is None:
        duration_s = min(_default_duration_s(rng, total_s), total_s - spec.start_s)
    end_s = spec.start_s + duration_s
    if end_s > total_s * (1 + 1e-12):
        raise AewatchError(
            f"fault {spec.kind} ends at {end_s / 3600:g} h, after the stream's end at "
            f"{total_s / 3600:g} h; shorten it or simulate more hours"
        )
    rows = slice(grid.first_row_at_or_after(spec.start_s), grid.first_row_at_or_after(end_s))
    if rows.stop <= rows.start:
        raise AewatchError(
            f"fault {spec.kind} at {spec.start_s:g} s lasting {duration_s:g} s covers no "
            f"sample of the {grid.period_s:g} s grid; make it at least one period long"
        )
    channel = spec.channel or str(rng.choice(list(pools[spec.kind])))
    return Placement(InjectedFault(spec.kind, channel, spec.start_s, end_s), rows)


def _place_random(
    rng: np.random.Generator,
    specs: Sequence[FaultSpec],
    fixed: Sequence[Placement],
    pools: Mapping[str, Sequence[str]],
    grid: _Grid,
) -> list[Placement]:
    if not specs:
        return []
    blocked = np.zeros(grid.n, dtype=bool)
    blocked[: math.ceil(_WARMUP_FRACTION * grid.n)] = True
    for placement in fixed:
        blocked[placement.rows] = True
    usable = grid.n - math.ceil(_WARMUP_FRACTION * grid.n)
    lengths = _random_lengths(rng, specs, usable_s=usable * grid.period_s, grid=grid)
    gap = max(1, min(round(_MIN_GAP_S / grid.period_s), usable // (4 * len(specs))))
    # Wide gaps first; if the stream is crowded, settle for faults that merely do not touch.
    for attempt in range(_PLACEMENT_TRIES):
        attempt_gap = gap if attempt < _PLACEMENT_TRIES // 2 else 1
        starts = _try_starts(rng, blocked, lengths, gap=attempt_gap)
        if starts is not None:
            break
    else:
        raise AewatchError(
            f"cannot fit {len(specs)} randomly placed faults, {sum(lengths)} rows in all, "
            f"into the {usable} rows after the first tenth of a {grid.n}-row stream and "
            "clear of the given faults; simulate more hours, ask for fewer faults or give "
            "shorter durations"
        )
    out = []
    for spec, length, start in zip(specs, lengths, starts, strict=True):
        channel = spec.channel or str(rng.choice(list(pools[spec.kind])))
        fault = InjectedFault(spec.kind, channel, grid.time_s(start), grid.time_s(start + length))
        out.append(Placement(fault, slice(start, start + length)))
    return out


def _random_lengths(
    rng: np.random.Generator, specs: Sequence[FaultSpec], *, usable_s: float, grid: _Grid
) -> list[int]:
    """Return each fault's length in rows; defaults shrink so all fit a third of the room."""
    cap_s = usable_s / (3 * len(specs))
    lengths = []
    for spec in specs:
        duration_s = spec.duration_s
        if duration_s is None:
            duration_s = _default_duration_s(rng, cap_s)
        lengths.append(max(1, round(duration_s / grid.period_s)))
    return lengths


def _try_starts(
    rng: np.random.Generator,
    blocked: npt.NDArray[np.bool_],
    lengths: Sequence[int],
    *,
    gap: int,
) -> list[int] | None:
    """Return a free start row for each length in turn, or ``None`` if one does not fit."""
    blocked = blocked.copy()
    starts = []
    for length in lengths:
        start = _free_start(rng, blocked, length=length, gap=gap)
        if start is None:
            return None
        starts.append(start)
        blocked[start : start + length] = True
    return starts


def _free_start(
    rng: np.random.Generator, blocked: npt.NDArray[np.bool_], *, length: int, gap: int
) -> int | None:
    """Pick a start whose ``length`` rows, padded by ``gap`` rows, are all unblocked."""
    n = blocked.size
    candidates = np.arange(n - length + 1)
    used = np.concatenate([[0], np.cumsum(blocked)])
    lo = np.maximum(candidates - gap, 0)
    hi = np.minimum(candidates + length + gap, n)
    free = candidates[used[hi] - used[lo] == 0]
    if free.size == 0:
        return None
    return int(rng.choice(free))
