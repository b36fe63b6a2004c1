"""Readings in, decisions out: the daemon's pure core from Reading to AlertEvent.

What it needs of the models is named by Protocols (``ServesWindows``: a model's window
shape, scorer and detector; ``ModelsFor``: which model serves an asset), so the core
imports no torch: the daemon hands it its ``Fleet`` of ``M``.

:meth:`Pipeline.ingest` places readings on each asset's time grid (:class:`Aligner`) and
cuts the windows that became due; they wait in the pipeline. The windows of every asset
served by one model shape live in one :class:`WindowBank`, a slot each, so the common case
of a batch (one new row for each of many assets) is cut in one step. The shell
calls :meth:`Pipeline.flush` when a batch is full or has waited long enough: every
model then scores its waiting windows in one forward pass, and its :class:`Detector`
walks each asset's windows in time order. No clock, no I/O: the shell decides when to
flush and turns the returned :class:`Scored` values (one per model) into messages and
metrics.

Every reading ends in exactly one place, counted in :attr:`Pipeline.counts`:
``aligned`` (placed on the grid), ``late``, ``outlier`` (held off its asset's time, then
outrun: see ``clock_tolerance_s``), ``unknown_channel``, ``invalid``, ``no_model`` (no
configured model serves the asset) or ``too_many_assets`` (``max_assets`` reached). A
reading held off its asset's time is counted once it is placed or outrun. Grid slots given
up are ``dropped_slots``; forward-filled values ``filled``; window restarts ``gaps``;
scored windows ``windows``; forward passes ``batches``. Clock steps wait in
:attr:`Pipeline.clock_steps` until the shell takes them.

A shell restarted after a clean stop goes on where it stopped: it hands
:meth:`Pipeline.restore_state` each asset's decisions' state (:meth:`Pipeline.states` at
the stop: smoothing, baseline, alert, the checks' sums) and :meth:`Pipeline.skip_decided`
each asset's newest decided window (:meth:`Pipeline.decided`); the readings it replays
fill the windows again, and the windows ending at or before that time, decided already,
are not decided a second time.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from aewatch.core.alerts import AlertEvent, OpenAlert
from aewatch.core.align import Aligner, AlignOutput
from aewatch.core.counts import Counts
from aewatch.core.decode import Item, Reading, Row, Series
from aewatch.core.detector import AssetState, Detector, WindowScores
from aewatch.core.window import DueWindows, WindowBank

__all__ = [
    "COUNTS",
    "AssetFailure",
    "ClockStep",
    "ModelsFor",
    "Pipeline",
    "PipelineCounts",
    "Scored",
    "ServesWindows",
    "WindowShape",
]


class WindowShape(Protocol):
    """What the pipeline reads of a model's bundle: its channels and time grid."""

    @property
    def channels(self) -> tuple[str, ...]: ...
    @property
    def window_len(self) -> int: ...
    @property
    def hop(self) -> int: ...
    @property
    def period_s(self) -> float: ...
    @property
    def max_gap_periods(self) -> float: ...


class ScoredWindows(WindowScores, Protocol):
    """A scorer's output: the window errors and, when asked, the reconstructions."""

    @property
    def reconstructions(self) -> npt.NDArray[np.float32] | None: ...

    def __len__(self) -> int: ...


class WindowScorer(Protocol):
    """Scores windows ``(n, channels, length)`` in one forward pass."""

    def score(self, windows: npt.ArrayLike, *, reconstruct: bool = True) -> ScoredWindows: ...


class ServesWindows(Protocol):
    """One served model as the pipeline uses it (the daemon's ``M``)."""

    @property
    def bundle(self) -> WindowShape: ...
    @property
    def scorer(self) -> WindowScorer: ...
    @property
    def detector(self) -> Detector: ...


M = TypeVar("M", bound=ServesWindows)
M_co = TypeVar("M_co", bound=ServesWindows, covariant=True)


class ModelsFor(Protocol[M_co]):
    """Which model serves an asset (the daemon's ``Fleet``)."""

    def model_for(self, asset: str) -> M_co | None: ...


_MAX_UNKNOWN = 1000  # (asset, channel) pairs of unknown channels noted for the log
_CROWDED_AFTER = 3  # readings in slots already out, not behind their channel, before a note
_JITTER_SHARE = 4  # a block may land this fraction of its length off and still continue


@dataclass(slots=True)
class PipelineCounts(Counts):
    """Where every reading ended and what the pipeline did, since it started (see the
    module's docstring for each name). One writer, the scoring worker."""

    aligned: int = 0
    late: int = 0
    outlier: int = 0
    unknown_channel: int = 0
    invalid: int = 0
    no_model: int = 0
    too_many_assets: int = 0
    dropped_slots: int = 0
    filled: int = 0
    gaps: int = 0
    windows: int = 0
    batches: int = 0
    outside_envelope: int = 0


COUNTS: tuple[str, ...] = tuple(f.name for f in fields(PipelineCounts))


class ClockStep(NamedTuple):
    """An asset's clock stepped: ``step_s`` seconds (negative: back), followed from ``at``.

    ``at`` is the grid time (epoch seconds) of the asset's newest reading once it was
    followed.
    """

    asset: str
    at: float
    step_s: float


class AssetFailure(NamedTuple):
    """One asset whose windows a flush could not score: why (an exception's type and text)."""

    asset: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Scored(Generic[M]):
    """One model's windows scored in one flush, grouped by asset (``n`` windows in all).

    The windows of ``assets[g]`` are ``bounds[g]:bounds[g + 1]``, oldest first.
    ``end_timestamps`` ``(n,)`` float64 epoch seconds; ``scores`` (smoothed errors),
    ``thresholds`` (the thresholds in force they were held to) and ``severity`` (the worst
    statistic over its limit: 1 or more is anomalous) ``(n,)`` float32; ``is_firing``
    ``(n,)`` bool, the alert state after each window; ``channel_errors`` ``(n, c)`` float32;
    ``events`` every raise and resolve, in order. ``denoised`` is None unless asked for,
    else the reconstructed newest ``hop`` rows of each window (``rows_per_window``),
    timestamps ``(m,)`` and values ``(m, c)`` in data units, window by window.
    :meth:`per_asset` cuts it into one ``Scored`` per asset.
    """

    model: M
    assets: tuple[str, ...]
    bounds: npt.NDArray[np.int64]
    end_timestamps: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float32]
    thresholds: npt.NDArray[np.float32]
    severity: npt.NDArray[np.float32]
    is_firing: npt.NDArray[np.bool_]
    channel_errors: npt.NDArray[np.float32]
    events: list[AlertEvent]
    denoised: tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]] | None = None

    @property
    def rows_per_window(self) -> int:
        """Denoised rows each window adds (its newest ``hop``)."""
        bundle = self.model.bundle
        return min(bundle.hop, bundle.window_len)

    def per_asset(self) -> list[Scored[M]]:
        """The same, one ``Scored`` of one asset per asset, in the order of :attr:`assets`."""
        out: list[Scored[M]] = []
        step = self.rows_per_window
        for g, asset in enumerate(self.assets):
            mine = slice(int(self.bounds[g]), int(self.bounds[g + 1]))
            denoised = None
            if self.denoised is not None:
                rows = slice(mine.start * step, mine.stop * step)
                denoised = (self.denoised[0][rows], self.denoised[1][rows])
            out.append(
                Scored(
                    self.model,
                    (asset,),
                    np.array([0, mine.stop - mine.start], dtype=np.int64),
                    self.end_timestamps[mine],
                    self.scores[mine],
                    self.thresholds[mine],
                    self.severity[mine],
                    self.is_firing[mine],
                    self.channel_errors[mine],
                    [e for e in self.events if e.asset == asset],
                    denoised,
                )
            )
        return out


_Item = TypeVar("_Item", bound=np.generic)
_Key = TypeVar("_Key", bound=Hashable)
_Taken = tuple[float, list[float], bool]  # Aligner.take_row: grid time, row, gap


@dataclass(slots=True, eq=False)
class _Track(Generic[M]):
    """Everything the pipeline knows of one asset: the model that serves it, its grid, its
    slot of windows and what its windows decided (``state``: smoothing, drift baseline,
    alert and the row of its channel checks' statistics).

    A reload hands ``state`` to the new model's detector (:meth:`Detector.adopt`); a track
    compares by identity, so due windows are grouped by track.
    """

    asset: str
    model: M
    aligner: Aligner
    bank: WindowBank
    slot: int
    state: AssetState
    is_warming: bool = True
    block_ends: dict[str, int] | None = None  # channel -> grid slot its last block ended on
    silent: frozenset[str] = frozenset()  # channels marked stale since the last row
    decided_s: float = -math.inf  # the end of the newest window decided


@dataclass(slots=True)
class _Waiting(Generic[M]):
    """Due windows of one model in the order they were cut: ``sizes[e]`` windows of
    ``tracks[e]`` per entry ``e``."""

    tracks: list[_Track[M]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    windows: list[npt.NDArray[np.float32]] = field(default_factory=list)
    ends: list[npt.NDArray[np.float64]] = field(default_factory=list)


class Pipeline(Generic[M]):
    """Per-asset alignment and windows, batched scoring and decisions for a fleet.

    ``max_late_s`` is how long an incomplete grid slot waits for its missing channels;
    ``max_gap_periods`` None takes each bundle's own (what training used);
    ``clock_tolerance_s`` is how far off its asset's time a reading is held as a possible
    clock step (None: never; see :class:`Aligner`). These three apply to the assets
    tracked after they are set.
    """

    def __init__(
        self,
        fleet: ModelsFor[M],
        *,
        max_assets: int = 10_000,
        max_late_s: float = 30.0,
        max_gap_periods: float | None = None,
        with_denoised: bool = False,
        clock_tolerance_s: float | None = None,
    ) -> None:
        if max_assets < 1:
            raise ValueError(f"max_assets must be at least 1, got {max_assets}")
        self.fleet = fleet
        self.max_assets = max_assets
        self.max_late_s = max_late_s
        self.max_gap_periods = max_gap_periods
        self.with_denoised = with_denoised
        self.clock_tolerance_s = clock_tolerance_s
        self.clock_steps: list[ClockStep] = []  # oldest first; the shell takes them
        # (asset, channel) pairs whose readings no model channel takes, each once, oldest
        # first; the shell takes them. At most _MAX_UNKNOWN pairs are ever noted.
        self.unknown_channels: list[tuple[str, str]] = []
        self._unknown_seen: set[tuple[str, str]] = set()
        # (asset, channel) pairs published more often than their model's period (their
        # readings pile up in slots already out), each once, oldest first, after
        # _CROWDED_AFTER such readings; the shell takes them. At most _MAX_UNKNOWN pairs.
        self.crowded_channels: list[tuple[str, str]] = []
        self._crowded_seen: dict[tuple[str, str], int] = {}
        self.counts = PipelineCounts()
        self._tracks: dict[str, _Track[M]] = {}
        self._banks: dict[tuple[int, int, int], WindowBank] = {}  # by channels, length, hop
        self._waiting: dict[M, _Waiting[M]] = {}
        # Alerts an earlier process left open on assets not tracked yet, with their model.
        self._resumed: dict[str, tuple[M, AssetState]] = {}
        self._stale: dict[M, list[AlertEvent]] = {}  # raised since the last flush
        self._pending = 0
        self._warming = 0
        self.failures: list[AssetFailure] = []  # assets whose windows the last flush dropped
        # Per asset, the newest window an earlier process decided: windows ending at or
        # before it are not decided again (skip_decided); ``skipped`` counts them.
        self._skip_until: dict[str, float] = {}
        self.skipped = 0

    @property
    def pending(self) -> int:
        """Windows cut and waiting for :meth:`flush`."""
        return self._pending

    @property
    def assets(self) -> int:
        """Assets tracked (each has a grid and a window)."""
        return len(self._tracks)

    @property
    def warming(self) -> int:
        """Tracked assets that have not yet filled a window since they started or restarted."""
        return self._warming

    def ingest(self, readings: Iterable[Item]) -> None:
        """Place readings on their assets' grids and cut the windows that became due.

        Pass many readings per call: each asset's new rows go to its window in one step,
        and the assets that got one whole row each are cut together.
        A :class:`Row` or :class:`Series` counts as its readings.
        """
        counts = self.counts
        tracks = self._tracks
        completed: dict[str, list[AlignOutput | _Taken]] = {}
        aligned = late = outlier = unknown = invalid = dropped = filled = 0
        for item in readings:
            track = tracks.get(item.asset)
            if track is None:
                count = 1 if isinstance(item, Reading) else len(item.values)
                track = self._track_for(item.asset, count)
                if track is None:
                    continue
            outputs: list[AlignOutput] | tuple[AlignOutput, ...]
            held = track.aligner.held_readings
            if isinstance(item, Reading):
                outputs, count = (track.aligner.add(item),), 1
            elif isinstance(item, Series):
                block = _continue_block(track, item)
                outputs = track.aligner.add_series(block.channel, block.timestamps, block.values)
                count = len(item.values)
            else:
                count = len(item.values)
                taken = track.aligner.take_row(item.timestamp, item.channels, item.values)
                if taken is not None:  # the common case: a whole row, next on the grid
                    aligned += count
                    done = completed.get(item.asset)
                    if done is None:
                        completed[item.asset] = [taken]
                    else:
                        done.append(taken)
                    continue
                outputs = [track.aligner.add(reading) for reading in item.readings()]
            # A reading held off its asset's time counts once placed (aligned) or outrun.
            refused = track.aligner.held_readings - held
            for out in outputs:
                refused += out.late + out.unknown_channel + out.invalid + out.outlier
                late += out.late
                if out.crowded:
                    self._note_crowded(item, outputs, out)
                outlier += out.outlier
                if out.clock_step_s:
                    step = ClockStep(item.asset, track.aligner.newest_s, out.clock_step_s)
                    self.clock_steps.append(step)
                unknown += out.unknown_channel
                if out.unknown_channel:
                    self._note_unknown(item)
                invalid += out.invalid
                dropped += out.dropped_slots
                if out.dropped_slots:
                    self._note_silent(track)
                if len(out.timestamps):
                    filled += out.filled
                    completed.setdefault(item.asset, []).append(out)
                    if track.silent:
                        track.silent = frozenset()
            aligned += count - refused
        counts.aligned += aligned
        counts.late += late
        counts.outlier += outlier
        counts.unknown_channel += unknown
        counts.invalid += invalid
        counts.dropped_slots += dropped
        counts.filled += filled
        rows: dict[M, list[tuple[_Track[M], _Taken]]] = {}
        for asset, done in completed.items():
            track = tracks[asset]
            first = done[0]
            if len(done) == 1 and isinstance(first, tuple) and not first[2]:
                rows.setdefault(track.model, []).append((track, first))
            else:
                self._cut(track, [_as_output(out) for out in done])
        for model, model_rows in rows.items():
            self._cut_rows(model, model_rows)

    def _note_unknown(self, item: Item) -> None:
        """Note the channels of ``item`` its asset's model does not have, each pair once."""
        if len(self._unknown_seen) >= _MAX_UNKNOWN:
            return
        channels = item.channels if isinstance(item, Row) else (item.channel,)
        track = self._tracks.get(item.asset)
        known = () if track is None else track.model.bundle.channels
        for channel in channels:
            pair = (item.asset, channel)
            if channel not in known and pair not in self._unknown_seen:
                self._unknown_seen.add(pair)
                self.unknown_channels.append(pair)

    def _note_crowded(self, item: Item, outputs: Sequence[AlignOutput], out: AlignOutput) -> None:
        """Count the reading of ``item`` whose output ``out`` is (a row's readings give one
        output each, in channel order) that came in a slot already out while not behind its
        channel; note the pair at the ``_CROWDED_AFTER``-th. Off the hot path: it runs only
        for such readings."""
        if isinstance(item, Row):
            channel = item.channels[next(i for i, o in enumerate(outputs) if o is out)]
        else:
            channel = item.channel
        pair = (item.asset, channel)
        seen = self._crowded_seen.get(pair, 0)
        if seen >= _CROWDED_AFTER or (not seen and len(self._crowded_seen) >= _MAX_UNKNOWN):
            return
        self._crowded_seen[pair] = seen + 1
        if seen + 1 == _CROWDED_AFTER:
            self.crowded_channels.append(pair)

    def _note_silent(self, track: _Track[M]) -> None:
        """Raise ``stale`` on the asset for channels that stopped while its others go on."""
        at, silent = track.aligner.silent_channels()
        new = [entry for entry in silent if entry[0] not in track.silent]
        if not new:
            return
        track.silent = track.silent.union(name for name, _, _ in new)
        aligner = track.aligner
        event = track.model.detector.mark_stale(
            track.state, at, silent, aligner.max_pending_slots * aligner.period_s
        )
        if event is not None:
            self._stale.setdefault(track.model, []).append(event)

    def _cut(self, track: _Track[M], outputs: list[AlignOutput]) -> None:
        """Extend the asset's window with its new rows (restarting it at gaps)."""
        start = 0
        for i in range(1, len(outputs) + 1):
            if i < len(outputs) and not outputs[i].gap:
                continue
            run = outputs[start:i]
            if run[0].gap:
                track.bank.reset(track.slot)
                self.counts.gaps += 1
                if not track.is_warming:
                    track.is_warming = True
                    self._warming += 1
            if len(run) == 1:
                timestamps, values = run[0].timestamps, run[0].values
            else:
                timestamps = np.concatenate([o.timestamps for o in run])
                values = np.concatenate([o.values for o in run])
            due = track.bank.extend(track.slot, timestamps, values)
            if len(due):
                if track.is_warming:
                    track.is_warming = False
                    self._warming -= 1
                self._queue(track.model, [track], [len(due)], due)
            start = i

    def _cut_rows(self, model: M, taken: list[tuple[_Track[M], _Taken]]) -> None:
        """One new row for each of many assets of ``model`` (no gap): cut them together."""
        bank = taken[0][0].bank  # every track of a model has its slot in the same bank
        n = len(taken)
        slots = np.fromiter((track.slot for track, _ in taken), dtype=np.int64, count=n)
        times = np.fromiter((row[0] for _, row in taken), dtype=np.float64, count=n)
        values = np.array([row[1] for _, row in taken], dtype=np.float32)
        picked, due = bank.extend_rows(slots, times, values)
        if not len(picked):
            return
        cut = []
        for i in picked.tolist():
            track = taken[i][0]
            if track.is_warming:
                track.is_warming = False
                self._warming -= 1
            cut.append(track)
        self._queue(model, cut, [1] * len(cut), due)

    def _queue(self, model: M, tracks: list[_Track[M]], sizes: list[int], due: DueWindows) -> None:
        """Let ``due`` (``sizes[e]`` windows of ``tracks[e]`` in turn) wait for a flush."""
        if self._skip_until:
            tracks, sizes, due = self._undecided(tracks, sizes, due)
            if not tracks:
                return
        waiting = self._waiting.get(model)
        if waiting is None:
            waiting = self._waiting[model] = _Waiting()
        waiting.tracks += tracks
        waiting.sizes += sizes
        waiting.windows.append(due.windows)
        waiting.ends.append(due.end_timestamps)
        self._pending += len(due)

    def _undecided(
        self, tracks: list[_Track[M]], sizes: list[int], due: DueWindows
    ) -> tuple[list[_Track[M]], list[int], DueWindows]:
        """``due`` without the windows an earlier process decided (:meth:`skip_decided`);
        an asset's mark goes once one of its windows ends after it."""
        skip_until = self._skip_until
        ends = due.end_timestamps
        keep = np.ones(len(ends), dtype=np.bool_)
        kept_tracks: list[_Track[M]] = []
        kept_sizes: list[int] = []
        start = 0
        for track, size in zip(tracks, sizes, strict=True):
            stop = start + size
            left = size
            until = skip_until.get(track.asset)
            if until is not None:
                old = ends[start:stop] <= until
                keep[start:stop] = ~old
                left -= int(old.sum())
                self.skipped += size - left
                if left:  # a window after the mark: the replay has caught up
                    del skip_until[track.asset]
            if left:
                kept_tracks.append(track)
                kept_sizes.append(left)
            start = stop
        if keep.all():
            return tracks, sizes, due
        return kept_tracks, kept_sizes, DueWindows(due.windows[keep], ends[keep])

    def skip_decided(self, decided: dict[str, float]) -> None:
        """Do not decide again the windows an earlier process decided: per asset, those
        ending at or before ``decided[asset]`` (epoch seconds; see :meth:`decided`).

        For the readings a restart replays; call :meth:`end_replay` once they are all
        ingested, so that live readings are decided whatever their times (a file replayed
        again, say).
        """
        self._skip_until.update(decided)
        for asset, until in decided.items():
            track = self._tracks.get(asset)
            if track is not None:
                track.decided_s = max(track.decided_s, until)

    def end_replay(self) -> None:
        """The replayed readings are all ingested: forget the marks :meth:`skip_decided`
        set that no window has passed yet."""
        self._skip_until.clear()

    def decided(self) -> dict[str, float]:
        """Each asset's newest decided window end (epoch seconds, finite; an asset with
        none is left out), for a restart's :meth:`skip_decided`; the marks not yet passed
        are kept."""
        out = dict(self._skip_until)
        for asset, track in self._tracks.items():
            if track.decided_s > out.get(asset, -math.inf):
                out[asset] = track.decided_s
        return out

    def flush(self) -> list[Scored[M]]:
        """Score every waiting window, one forward pass per model; return the decisions.

        Stale alerts raised since the last flush come first, each model's in a ``Scored``
        of no windows. A model whose batch fails is scored again asset by asset, so a
        failure stays with its asset: that asset's windows are dropped and it is listed in
        :attr:`failures`, the other assets are scored and decided as usual.
        """
        results = [_events_only(model, events) for model, events in self._stale.items()]
        self._stale.clear()
        self.failures = []
        for model, waiting in self._waiting.items():
            windows = _joined(waiting.windows)
            ends = _joined(waiting.ends)
            order, tracks, bounds = _by_asset(waiting.tracks, waiting.sizes)
            if order is not None:
                windows, ends = windows[order], ends[order]
            try:
                results.append(self._score(model, tracks, bounds, ends, windows))
            except Exception:  # one asset's windows must not sink the whole batch
                results += self._score_apart(model, tracks, bounds, ends, windows)
        self._waiting.clear()
        self._pending = 0
        return results

    def _score(
        self,
        model: M,
        tracks: list[_Track[M]],
        bounds: npt.NDArray[np.int64],
        ends: npt.NDArray[np.float64],
        windows: npt.NDArray[np.float32],
    ) -> Scored[M]:
        """One forward pass over ``windows`` and the decisions on them, by asset."""
        scores = model.scorer.score(windows, reconstruct=self.with_denoised)
        states = [track.state for track in tracks]
        verdicts = model.detector.decide_states(states, bounds, ends, scores, windows)
        for track, end in zip(tracks, ends[bounds[1:] - 1].tolist(), strict=True):
            track.decided_s = end
        self.counts.windows += len(scores)
        self.counts.batches += 1
        self.counts.outside_envelope += verdicts.outside_envelope
        denoised = None
        if scores.reconstructions is not None:
            denoised = _newest_rows(model, ends, scores.reconstructions)
        return Scored(
            model,
            tuple(track.asset for track in tracks),
            bounds,
            ends,
            verdicts.scores,
            verdicts.thresholds,
            verdicts.severity,
            verdicts.is_firing,
            scores.channel_errors,
            verdicts.events,
            denoised,
        )

    def _score_apart(
        self,
        model: M,
        tracks: list[_Track[M]],
        bounds: npt.NDArray[np.int64],
        ends: npt.NDArray[np.float64],
        windows: npt.NDArray[np.float32],
    ) -> list[Scored[M]]:
        """After ``model``'s batch failed: each asset on its own; note those that fail.

        A failure inside the decisions may have left the assets decided before it one
        step on: they see these windows a second time, which beats losing every asset.
        """
        out = []
        for g, track in enumerate(tracks):
            mine = slice(int(bounds[g]), int(bounds[g + 1]))
            one = np.array([0, mine.stop - mine.start], dtype=np.int64)
            try:
                out.append(self._score(model, [track], one, ends[mine], windows[mine]))
            except Exception as err:
                self.failures.append(AssetFailure(track.asset, type(err).__name__, str(err)))
        return out

    def settled_s(self, asset: str) -> float:
        """Time up to which ``asset``'s readings are done with: inf when it is not tracked.

        A reading at or before it lies before every window still to come: its slot is
        final on the asset's grid (placed, filled in or dropped), so every window it makes
        due has been cut, and it is more than a window's length behind the last final slot,
        so the windows to come no longer need it. Half a period is added, since a reading
        goes to the nearest slot. An asset the pipeline does not track (no model, too many
        assets, dropped at a reload) has nothing pending.
        """
        track = self._tracks.get(asset)
        if track is None:
            return math.inf
        bundle = track.model.bundle
        final_s = track.aligner.final_s + bundle.period_s / 2
        return final_s - (bundle.window_len - 1) * bundle.period_s

    def gap_s(self, asset: str) -> float:
        """How long a silence of ``asset`` restarts its window: its gap limit and how long
        a slot waits (seconds; 0 when it is not tracked).

        A live reading that comes after a silence longer than this starts the window
        afresh, so it needs none of the readings before.
        """
        track = self._tracks.get(asset)
        if track is None:
            return 0.0
        aligner = track.aligner
        return aligner.max_gap_periods * aligner.period_s + aligner.max_late_s

    def states(self) -> dict[str, tuple[M, dict[str, Any]]]:
        """Each asset's model and its decisions' state (smoothing, baseline, alert, checks'
        statistics) as plain JSON, for a later process's :meth:`restore_state`: the tracked
        assets, and those restored or resumed whose readings have not come yet (a short
        run passes their states on)."""
        out = {
            asset: (model, model.detector.export_state(state))
            for asset, (model, state) in self._resumed.items()
        }
        for asset, track in self._tracks.items():
            out[asset] = (track.model, track.model.detector.export_state(track.state))
        return out

    def restore_state(self, asset: str, saved: dict[str, Any]) -> bool:
        """Start ``asset``'s decisions from ``saved`` (:meth:`states` of an earlier process
        whose model for it was the one that serves it now: the caller checks); it replaces
        an alert resumed for it. False when no model serves the asset or it is tracked.

        Raises:
            ValueError: ``saved`` does not fit the model (the asset starts as before).
        """
        model = self.fleet.model_for(asset)
        if model is None or asset in self._tracks:
            return False
        state = model.detector.import_state(asset, saved)
        resumed = self._resumed.pop(asset, None)
        if resumed is not None:
            resumed[0].detector.release(resumed[1])
        self._resumed[asset] = (model, state)
        return True

    def restore_alert(self, alert: OpenAlert) -> bool:
        """Resume an alert a previous process left open on its asset; False if not applied.

        Not applied when no model serves the asset or the asset already has state here.
        The asset's track, when its readings come, starts from it.
        """
        asset = alert.asset
        model = self.fleet.model_for(asset)
        if model is None or asset in self._tracks or asset in self._resumed:
            return False
        self._resumed[asset] = (model, model.detector.resumed_state(alert))
        return True

    def swap_fleet(self, fleet: ModelsFor[M]) -> tuple[int, int, int]:
        """Serve every asset from ``fleet`` from now on; return (kept, restarted, dropped).

        Call it with nothing pending (:meth:`flush` first). An asset whose new model has
        the same channels, window, hop and period keeps its grid and window (no reading
        is lost); otherwise both restart. Alert state and the drift baseline move to the
        new model's detector either way (:meth:`Detector.adopt`), so an open alert stays
        open under its id. An asset no model serves any more is dropped.
        """
        if self._pending:
            raise RuntimeError("swap_fleet needs an empty batch; call flush() first")
        self.fleet = fleet
        kept = restarted = dropped = 0
        for asset, track in list(self._tracks.items()):
            model = fleet.model_for(asset)
            if model is None:
                track.model.detector.release(track.state)
                self._untrack(track)
                dropped += 1
                continue
            model.detector.adopt(track.state, track.model.detector)
            if _same_windows(model, track.model):
                track.model = model  # the same shape: the same bank and slot
                kept += 1
                continue
            self._untrack(track)
            restarted_track = self._track_for(asset, state=track.state)
            if restarted_track is not None:
                restarted_track.decided_s = track.decided_s
            restarted += 1
        for asset, (old, state) in list(self._resumed.items()):  # resumed, not seen yet
            model = fleet.model_for(asset)
            if model is None:
                old.detector.release(state)
                del self._resumed[asset]
            else:
                model.detector.adopt(state, old.detector)
                self._resumed[asset] = (model, state)
        return kept, restarted, dropped

    def _track_for(
        self, asset: str, readings: int = 1, state: AssetState | None = None
    ) -> _Track[M] | None:
        """Start tracking ``asset``; None when no model serves it or the fleet is full.

        In that case its ``readings`` are counted under the reason. Its decisions go on
        from ``state`` (held by its model's detector), else from an alert resumed at start,
        else afresh.
        """
        model = self.fleet.model_for(asset)
        if model is None:
            self.counts.no_model += readings
            return None
        if len(self._tracks) >= self.max_assets:
            self.counts.too_many_assets += readings
            return None
        bundle = model.bundle
        max_gap = self.max_gap_periods or bundle.max_gap_periods
        shape = (len(bundle.channels), bundle.window_len, bundle.hop)
        bank = self._banks.get(shape)
        if bank is None:
            bank = self._banks[shape] = WindowBank(*shape)
        if state is None:
            resumed = self._resumed.pop(asset, None)
            state = model.detector.new_state(asset) if resumed is None else resumed[1]
        track = _Track(
            asset,
            model,
            Aligner(
                bundle.channels,
                period_s=bundle.period_s,
                max_gap_periods=max_gap,
                max_late_s=self.max_late_s,
                clock_tolerance_s=self.clock_tolerance_s,
            ),
            bank,
            bank.open(),
            state,
            decided_s=self._skip_until.get(asset, -math.inf),
        )
        self._tracks[asset] = track
        self._warming += 1
        return track

    def _untrack(self, track: _Track[M]) -> None:
        """Stop tracking the asset: its grid goes, its window slot is given back (its state
        is the caller's to release or to hand on)."""
        del self._tracks[track.asset]
        track.bank.close(track.slot)
        self._warming -= track.is_warming


def _continue_block(track: _Track[M], block: Series) -> Series:
    """``block`` moved to continue its channel's last block, when it lands near enough.

    A block's sample times come from its arrival (``float32_le``), which comes late by
    however long the broker, the network and the intake took: a block that really follows
    the last one lands a few slots early or late. Early, its first samples would be dropped
    as late; late, it leaves a hole that holds every later row until filled (or, beyond
    ``max_gap_periods``, restarts the window). A block within a quarter of its length (at
    least one slot) of the slot after its channel's last one is therefore moved onto it;
    further off it stays where it lands (a real gap or overlap, and the channel re-anchors).
    The asset's channels come in messages of their own, each stamped as it arrives, so a
    block is first put on the slots of the round the asset's other channels are in (or the
    next one) when it lands within that reach of them: from the first round on, the
    blocks of a round share their slots and go on the grid in one step
    (:meth:`Aligner.add_series`), instead of overlapping by a slot or two for good, which
    would place every sample one by one and fill or drop each round's edges.
    """
    period_s = track.model.bundle.period_s
    first = round(float(block.timestamps[0]) / period_s)
    last = round(float(block.timestamps[-1]) / period_s)
    if track.block_ends is None:
        track.block_ends = {}
    n = len(block.values)
    tolerance = max(1, n // _JITTER_SHARE)
    starts = []
    others = [end for channel, end in track.block_ends.items() if channel != block.channel]
    if others:  # the asset's other channels: this round's slots, or the next round's
        newest = max(others)
        starts += [newest + 1 - n, newest + 1]
    previous = track.block_ends.get(block.channel)
    if previous is not None:
        starts.append(previous + 1)
    near = [start for start in starts if abs(start - first) <= tolerance]
    if near:
        shift = min(near, key=lambda start: abs(start - first)) - first
        if shift:
            block = block._replace(timestamps=block.timestamps + shift * period_s)
            last += shift
    track.block_ends[block.channel] = last
    return block


def _as_output(out: AlignOutput | _Taken) -> AlignOutput:
    """A row taken whole (:meth:`Aligner.take_row`) as the output adding it would give."""
    return out if isinstance(out, AlignOutput) else AlignOutput.of_row(*out)


def _joined(parts: list[npt.NDArray[_Item]]) -> npt.NDArray[_Item]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _by_asset(
    entries: list[_Key], sizes: list[int]
) -> tuple[npt.NDArray[np.int64] | None, list[_Key], npt.NDArray[np.int64]]:
    """Group waiting windows by asset, keeping each asset's in time order.

    ``sizes[e]`` windows of ``entries[e]`` in turn. Returns the order to take the windows
    in (None: as they are, when no asset has two entries), the assets, and the bounds of
    each asset's windows in that order.
    """
    starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    if len(set(entries)) == len(entries):
        return None, entries, starts
    by_asset: dict[_Key, list[int]] = {}
    for e, asset in enumerate(entries):
        by_asset.setdefault(asset, []).append(e)
    order = np.concatenate(
        [np.arange(starts[e], starts[e + 1]) for es in by_asset.values() for e in es]
    )
    totals = [sum(sizes[e] for e in es) for es in by_asset.values()]
    bounds = np.zeros(len(totals) + 1, dtype=np.int64)
    np.cumsum(totals, out=bounds[1:])
    return order, list(by_asset), bounds


def _events_only(model: M, events: list[AlertEvent]) -> Scored[M]:
    """A ``Scored`` of no windows that carries ``events``."""
    none = np.empty(0, dtype=np.float32)
    return Scored(
        model,
        (),
        np.zeros(1, dtype=np.int64),
        np.empty(0, dtype=np.float64),
        none,
        none,
        none,
        np.empty(0, dtype=np.bool_),
        np.empty((0, len(model.bundle.channels)), dtype=np.float32),
        events,
    )


def _same_windows(a: M, b: M) -> bool:
    """True when the two models cut the same windows from the same grid."""
    x, y = a.bundle, b.bundle
    return (x.channels, x.window_len, x.hop, x.period_s) == (
        y.channels,
        y.window_len,
        y.hop,
        y.period_s,
    )


def _newest_rows(
    model: M, ends: npt.NDArray[np.float64], recon: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """The reconstructed rows each window added (its newest ``hop``), with their times."""
    bundle = model.bundle
    hop = min(bundle.hop, bundle.window_len)
    offsets = (np.arange(hop) - (hop - 1)) * bundle.period_s  # (hop,), last is 0
    times = (ends[:, None] + offsets[None, :]).reshape(-1)
    values = recon[:, :, -hop:].transpose(0, 2, 1).reshape(-1, recon.shape[1])
    return times, np.ascontiguousarray(values, dtype=np.float32)
