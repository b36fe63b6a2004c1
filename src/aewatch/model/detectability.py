"""What a trained model will and will not catch: per fault kind and channel, the smallest
fault it raises an alert for and how soon (shell: scores offline, as the daemon scores).

Faults of known sizes (``aewatch.sim.inject.inject_sized``: the simulator's shapes, sized
in the channel's noise level) are written into copies of short stretches of held-out
normal history, *placements*, and every copy is scored as its own asset, the way the
daemon scores a fleet (``aewatch.model.offline.score_many``). A fault is raised at a
placement when an alert is on at some time from its start to ``GRACE_S`` after its end;
placements whose clean copy has an alert on then are never used. A size counts as raised
when at least half the placements raise it. Sizes are tried on a ladder, largest first
(not raised: "not seen up to" it), then by bisection for the smallest size raised, which
assumes a larger fault of the same shape is raised whenever a smaller one is. Each
placement's fault keeps its sign, spike rows and oscillation period at every size.
``decouple``, ``leak`` and ``hunting`` are left out: the first needs the noise-free
process, the others the plant's couplings, and a model trained on data knows neither. The
table's types live in ``aewatch.model.detectability_table`` and are re-exported here.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Self

import numpy as np
import numpy.typing as npt

from aewatch.core.alerts import AlertEvent
from aewatch.model.bundle import ModelBundle
from aewatch.model.detectability_table import Detectability, DetectabilityRow, Trial
from aewatch.model.offline import score_many
from aewatch.sim.inject import SIZED_KINDS, FaultSite, inject_sized

__all__ = [
    "DEFAULT_SIZES",
    "GRACE_S",
    "LEAD_S",
    "PLACEMENTS",
    "SELECTION_SIZES",
    "SPAN_S",
    "Caught",
    "Detectability",
    "DetectabilityRow",
    "Trial",
    "caught",
    "detectability",
    "noise_levels",
]

DEFAULT_SIZES: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 8.0)  # noise levels
# The sizes ``caught`` compares models on: early-warning faults, a few noise levels.
SELECTION_SIZES: tuple[float, ...] = (2.0, 4.0)
SPAN_S = 1800.0  # each fault lasts half an hour (the simulator's last 5-30 min)
LEAD_S = 900.0  # normal history scored before each fault, so windows and statistics are warm
GRACE_S = 300.0  # an alert on up to 5 min after the fault's end still counts for it
PLACEMENTS = 8
TIME_BUDGET_S = 60.0
_CANDIDATES_PER_PLACEMENT = 3  # stretches scored clean to find the quiet placements
_MAD_TO_SD = 1.4826


def detectability(
    bundle: ModelBundle,
    held_out_rows: Sequence[npt.NDArray[np.floating]],
    *,
    seed: int = 0,
    time_budget_s: float = TIME_BUDGET_S,
    sizes: Sequence[float] = DEFAULT_SIZES,
    placements: int = PLACEMENTS,
    span_s: float = SPAN_S,
    device: str = "cpu",
) -> Detectability:
    """Measure the smallest fault of each of ``SIZED_KINDS`` on each channel that ``bundle``
    raises, on ``held_out_rows`` (contiguous grid blocks ``(m, channels)`` of normal
    history, such as ``TrainOutcome.held_out_rows``).

    The same ``seed`` gives the same table. The search stops between rounds once
    ``time_budget_s`` is spent, leaving the rest of the rows unfinished (see
    ``DetectabilityRow.is_complete``); a week of 10 s history with 4 channels takes about
    a second, far from the default budget. Fewer quiet placements than ``placements``
    are used when the held-out history has no more; with none, the table has no rows and
    its note says why. See the module docstring for the method.
    """
    started = time.perf_counter()
    ladder = tuple(sorted(float(s) for s in sizes))
    noise, source = noise_levels(bundle, held_out_rows)
    shape = _Shape.of(bundle, span_s)
    spots, note, _ = _quiet_spots(
        [bundle], held_out_rows, shape, seed=seed, wanted=placements, device=device
    )
    table = Detectability((), ladder, len(spots), shape.span_s, GRACE_S, source, seed, note)
    if not spots:
        return _timed(table, started)
    level = np.median(np.abs(np.concatenate([np.asarray(b) for b in held_out_rows])), axis=0)
    searches = [
        _Search(kind, column, ladder if kind != "stuck" else (None,))
        for column in range(len(bundle.channels))
        for kind in SIZED_KINDS
    ]
    while pending := [s for s in searches if s.next is not None]:
        if time.perf_counter() - started > time_budget_s:
            spent = (
                f"the time budget of {time_budget_s:g} s ran out: rows without trials are "
                "not measured, sizes marked 'at most' are upper bounds"
            )
            note = f"{note}; {spent}" if note else spent
            break
        _round(bundle, pending, spots, shape, noise=noise, seed=seed, device=device)
    rows = tuple(
        s.row(bundle.channels[s.column], noise=noise, level=level, span_s=shape.span_s)
        for s in searches
    )
    return _timed(replace(table, rows=rows, note=note), started)


@dataclass(frozen=True, slots=True)
class Caught:
    """How many of a fixed set of injected faults one model raised, and how soon.

    ``raised`` of ``tried`` trials (one fault of one kind and size on one channel at one
    placement); ``delay_s`` is the median over the trials that raised any of their
    median delays (``None``: none raised).
    """

    raised: int
    tried: int
    delay_s: float | None

    @property
    def share(self) -> float:
        return self.raised / self.tried if self.tried else 0.0


def caught(
    bundles: Sequence[ModelBundle],
    held_out_rows: Sequence[npt.NDArray[np.floating]],
    *,
    sizes: Sequence[float] = SELECTION_SIZES,
    placements: int = PLACEMENTS,
    seed: int = 0,
    span_s: float = SPAN_S,
    device: str = "cpu",
    time_budget_s: float = math.inf,
) -> tuple[list[Caught], str]:
    """The same injected faults scored by each of ``bundles`` (variants of one model:
    same channels, grid and noise levels), for a side-by-side comparison.

    Every kind of ``SIZED_KINDS`` on every channel, at each of ``sizes`` noise levels
    (``stuck`` once, it has no size), at the same placements: stretches of
    ``held_out_rows`` that none of the bundles raises an alert on unaided. Returns one
    ``Caught`` per bundle, in order, and a note when there were fewer placements than
    ``placements`` (no placement at all: every ``Caught`` has ``tried == 0``).

    What finding the placements took tells how long the faults will take; when that is
    over ``time_budget_s``, fewer placements are used, and none (nothing measured) when
    even two would not fit.
    """
    started = time.perf_counter()
    first_bundle = bundles[0]
    noise, _ = noise_levels(first_bundle, held_out_rows)
    shape = _Shape.of(first_bundle, span_s)
    spots, note, scored = _quiet_spots(
        bundles, held_out_rows, shape, seed=seed, wanted=placements, device=device
    )
    columns = range(len(first_bundle.channels))

    def searches(i: int, size: float) -> list[_Search]:
        """Round ``i``: every kind at ``size`` on every channel (``stuck``, sizeless, once)."""
        return [
            _Search(kind, column, (size,) if kind != "stuck" else (None,))
            for column in columns
            for kind in SIZED_KINDS
            if kind != "stuck" or i == 0
        ]

    if spots and scored:
        per_copy = (time.perf_counter() - started) / scored
        copies = sum(len(searches(i, size)) for i, size in enumerate(sizes))
        per_placement = per_copy * len(bundles) * copies
        left = time_budget_s - (time.perf_counter() - started)
        if per_placement * len(spots) > left:
            fits = max(int(left / per_placement), 0) if per_placement > 0 else 0
            spent = (
                f"{len(spots)} placements would take about {per_placement * len(spots):.0f} s "
                f"and the time budget leaves {max(left, 0.0):.0f} s"
            )
            spots = spots[:fits] if fits >= 2 else []
            used = f"{len(spots)} used" if spots else "none measured"
            note = f"{note}; {spent}: {used}" if note else f"{spent}: {used}"
    results = []
    for bundle in bundles:
        trials: list[Trial] = []
        for i, size in enumerate(sizes if spots else ()):
            fresh = searches(i, size)
            _round(bundle, fresh, spots, shape, noise=noise, seed=seed, device=device)
            trials += [t for s in fresh for t in s.trials]
        delays = [t.delay_s for t in trials if t.delay_s is not None]
        results.append(
            Caught(
                sum(t.raised for t in trials),
                sum(t.placements for t in trials),
                statistics.median(delays) if delays else None,
            )
        )
    return results, note


def noise_levels(
    bundle: ModelBundle, held_out_rows: Sequence[npt.NDArray[np.floating]]
) -> tuple[npt.NDArray[np.float64], str]:
    """Each channel's noise level ``(channels,)`` in its units, and where it came from.

    With the channel checks on, their residual model's noise: the robust spread of each
    channel's reading minus its prediction on the held-out rows, the unit the checks
    themselves count in. Without them, a robust sd of the held-out rows' first
    differences over sqrt(2) (1.4826 MAD): white sensor noise exactly, slow (coloured)
    noise only in part.

    Raises:
        ValueError: no checks and fewer than two held-out rows in any block.
    """
    checks = bundle.decision.get("checks")
    if checks:
        return np.asarray(
            checks["model"]["noise"], dtype=np.float64
        ), "the channel checks' residual noise"
    diffs = [np.diff(np.asarray(b, dtype=np.float64), axis=0) for b in held_out_rows if len(b) > 1]
    if not diffs:
        raise ValueError("held-out rows: need a block of at least 2 rows to measure the noise")
    d = np.concatenate(diffs)
    mad = _MAD_TO_SD * np.median(np.abs(d - np.median(d, axis=0)), axis=0) / math.sqrt(2.0)
    sd = np.std(d, axis=0) / math.sqrt(2.0)
    spread = np.where(mad > 0, mad, sd)
    return np.where(
        spread > 0, spread, 1e-6
    ), "the held-out rows' first differences (1.4826 MAD / sqrt 2)"


@dataclass(frozen=True, slots=True)
class _Shape:
    """Rows of one placement: ``lead`` normal, ``span`` faulty, ``grace`` after."""

    lead: int
    span: int
    grace: int
    period_s: float

    @classmethod
    def of(cls, bundle: ModelBundle, span_s: float) -> Self:
        period = bundle.period_s
        lead = max(round(LEAD_S / period), 2 * bundle.window_len * bundle.hop)
        return cls(lead, max(round(span_s / period), 1), round(GRACE_S / period), period)

    @property
    def rows(self) -> int:
        return self.lead + self.span + self.grace

    @property
    def span_s(self) -> float:
        return self.span * self.period_s

    def fault_times(self) -> tuple[float, float]:
        """The fault's first time and the last time an alert counts for it (start 0)."""
        start = self.lead * self.period_s
        return start, start + self.span_s + self.grace * self.period_s


@dataclass(slots=True)
class _Search:
    """The ladder search of one (kind, channel): largest size first, then bisection."""

    kind: str
    column: int
    ladder: tuple[float | None, ...]
    trials: list[Trial] = field(default_factory=list)
    lo: int = 0
    hi: int = -1
    next: int | None = -1  # ladder index to try next; None: done

    def __post_init__(self) -> None:
        self.hi = self.next = len(self.ladder) - 1

    def record(self, trial: Trial) -> None:
        """Take the outcome of trying ``ladder[next]``; pick the next size, or finish."""
        assert self.next is not None
        self.trials.append(trial)
        if trial.is_raised:
            self.hi = self.next
        elif self.next == len(self.ladder) - 1:
            self.next = None  # not even the largest: not seen
            return
        else:
            self.lo = self.next + 1
        self.next = (self.lo + self.hi) // 2 if self.lo < self.hi else None

    def row(
        self,
        channel: str,
        *,
        noise: npt.NDArray[np.float64],
        level: npt.NDArray[np.floating],
        span_s: float,
    ) -> DetectabilityRow:
        """What the search found so far, as a row of the table."""
        return DetectabilityRow(
            self.kind,
            channel,
            float(noise[self.column]),
            float(level[self.column]),
            span_s,
            tuple(self.trials),
            self.next is None,
        )


def _round(
    bundle: ModelBundle,
    pending: list[_Search],
    spots: list[npt.NDArray[np.float64]],
    shape: _Shape,
    *,
    noise: npt.NDArray[np.float64],
    seed: int,
    device: str,
) -> None:
    """Try each pending search's next size at every placement, all in one scoring."""
    copies = []
    for search in pending:
        assert search.next is not None
        size = search.ladder[search.next]
        for index, spot in enumerate(spots):
            rng = np.random.default_rng(
                (seed, SIZED_KINDS.index(search.kind), search.column, index)
            )
            copies.append(_faulty(spot, shape, search, size=size, noise=noise, rng=rng))
    events = score_many(bundle, copies, device=device)
    first, last = shape.fault_times()
    for g, search in enumerate(pending):
        assert search.next is not None
        mine = events[g * len(spots) : (g + 1) * len(spots)]
        delays = [d for d in (_delay(e, first, last) for e in mine) if d is not None]
        median = statistics.median(delays) if delays else None
        search.record(Trial(search.ladder[search.next], len(delays), len(spots), median))


def _faulty(
    spot: npt.NDArray[np.float64],
    shape: _Shape,
    search: _Search,
    *,
    size: float | None,
    noise: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """A copy of ``spot`` with the search's fault of ``size`` over its span rows."""
    rows = slice(shape.lead, shape.lead + shape.span)
    span = spot[rows]
    # The held-out readings stand in for the noise-free process, which only a gain error
    # reads (for the level it scales about).
    site = FaultSite(
        values=span,
        clean=span,
        noise=np.zeros_like(span),
        before=spot[shape.lead - 1],
        scale=noise,
        column=search.column,
        period_s=shape.period_s,
    )
    out = spot.copy()
    out[rows] = inject_sized(search.kind, rng, site, size=size or 0.0)
    return out


def _quiet_spots(
    bundles: Sequence[ModelBundle],
    blocks: Sequence[npt.NDArray[np.floating]],
    shape: _Shape,
    *,
    seed: int,
    wanted: int,
    device: str,
) -> tuple[list[npt.NDArray[np.float64]], str, int]:
    """Up to ``wanted`` stretches of ``shape.rows`` held-out rows, none overlapping, whose
    clean copies raise no alert under any of ``bundles`` when the fault would be on; a
    note if fewer; and how many clean copies were scored to find them."""
    tiles = [
        np.asarray(block[a : a + shape.rows], dtype=np.float64)
        for block in blocks
        for a in range(0, len(block) - shape.rows + 1, shape.rows)
    ]
    if not tiles:
        longest = max((len(b) for b in blocks), default=0)
        return (
            [],
            f"the held-out history's longest unbroken stretch is {longest} samples and a "
            f"placement needs {shape.rows} ({shape.rows * shape.period_s / 60.0:g} min); "
            "train on a longer history",
            0,
        )
    order = np.random.default_rng(seed).permutation(len(tiles))[
        : wanted * _CANDIDATES_PER_PLACEMENT
    ]
    candidates = [tiles[i] for i in order]
    first, last = shape.fault_times()
    is_quiet = [True] * len(candidates)
    for bundle in bundles:
        events = score_many(bundle, candidates, device=device)
        is_quiet = [
            q and _delay(e, first, last) is None for q, e in zip(is_quiet, events, strict=True)
        ]
    quiet = [c for c, q in zip(candidates, is_quiet, strict=True) if q]
    spots = quiet[:wanted]
    scored = len(candidates) * len(bundles)
    if len(spots) == wanted:
        return spots, "", scored
    return (
        spots,
        f"{len(spots)} quiet placements, not {wanted}: of {len(candidates)} stretches of the "
        f"held-out history, {len(candidates) - len(quiet)} raise an alert unaided",
        scored,
    )


def _delay(events: list[AlertEvent], first: float, last: float) -> float | None:
    """The first alert on during ``[first, last]``: its raise time minus ``first``, or 0
    when it was raised before; ``None`` when no alert is on then."""
    raised: dict[str, float] = {}
    resolved: dict[str, float] = {}
    for event in events:
        (raised if event.state == "raised" else resolved)[event.alert_id] = event.at
    on = [
        at
        for alert_id, at in raised.items()
        if at <= last and resolved.get(alert_id, math.inf) > first
    ]
    return max(min(on) - first, 0.0) if on else None


def _timed(table: Detectability, started: float) -> Detectability:
    return replace(table, seconds=round(time.perf_counter() - started, 3))
