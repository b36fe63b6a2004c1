"""Readings in, decisions out: the daemon's pure core from Reading to AlertEvent.

:meth:`Pipeline.ingest` places readings on each asset's time grid (:class:`Aligner`) and
cuts the windows that became due (:class:`Window`); they wait in the pipeline. The shell
calls :meth:`Pipeline.flush` when a batch is full or has waited long enough: every
model then scores its waiting windows in one forward pass, and each asset's windows go,
in time order, through that model's :class:`Detector`. No clock, no I/O: the shell decides
when to flush and turns the returned :class:`Scored` values into messages and metrics.

Every reading ends in exactly one place, counted in :attr:`Pipeline.counts`:
``aligned`` (placed on the grid), ``late``, ``unknown_channel``, ``invalid``, ``no_model``
(no configured model serves the asset) or ``too_many_assets`` (``max_assets`` reached).
Grid slots given up are ``dropped_slots``; forward-filled values ``filled``; window
restarts ``gaps``; scored windows ``windows``; forward passes ``batches``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aewatch.daemon.align import Aligner, AlignOutput
from aewatch.daemon.decode import Item, Reading, Series
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.model.alerts import AlertEvent
from aewatch.model.scorer import Scores
from aewatch.model.window import DueWindows, Window

__all__ = ["COUNTS", "Pipeline", "Scored"]

_JITTER_SHARE = 4  # a block may land this fraction of its length off and still continue

COUNTS = (
    "aligned",
    "late",
    "unknown_channel",
    "invalid",
    "no_model",
    "too_many_assets",
    "dropped_slots",
    "filled",
    "gaps",
    "windows",
    "batches",
)


@dataclass(frozen=True, slots=True)
class Scored:
    """One asset's windows scored in one flush, oldest first (``k`` windows, ``c`` channels).

    ``end_timestamps`` ``(k,)`` float64 epoch seconds; ``scores`` (smoothed errors) and
    ``cuts`` (the thresholds they met) ``(k,)`` float32; ``is_firing`` ``(k,)`` bool, the
    alert state after each window; ``channel_errors`` ``(k, c)`` float32. ``denoised`` is
    None unless asked for, else the reconstructed newest ``hop`` rows of each window:
    timestamps ``(m,)`` and values ``(m, c)`` in data units.
    """

    model: ServedModel
    asset: str
    end_timestamps: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float32]
    cuts: npt.NDArray[np.float32]
    is_firing: npt.NDArray[np.bool_]
    channel_errors: npt.NDArray[np.float32]
    events: list[AlertEvent]
    denoised: tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]] | None = None


@dataclass(slots=True)
class _Track:
    """One asset's grid and window, and the model that serves it."""

    model: ServedModel
    aligner: Aligner
    window: Window
    is_warming: bool = True
    block_ends: dict[str, int] | None = None  # channel -> grid slot its last block ended on


@dataclass(slots=True)
class _Waiting:
    """Due windows of one model, grouped by asset in arrival order."""

    by_asset: dict[str, list[DueWindows]] = field(default_factory=dict)
    count: int = 0


class Pipeline:
    """Per-asset alignment and windows, batched scoring and decisions for a fleet.

    ``max_late_s`` is how long an incomplete grid slot waits for its missing channels;
    ``max_gap_periods`` None takes each bundle's own (what training used).
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        max_assets: int = 10_000,
        max_late_s: float = 30.0,
        max_gap_periods: float | None = None,
        with_denoised: bool = False,
    ) -> None:
        if max_assets < 1:
            raise ValueError(f"max_assets must be at least 1, got {max_assets}")
        self.fleet = fleet
        self.max_assets = max_assets
        self.max_late_s = max_late_s
        self.max_gap_periods = max_gap_periods
        self.with_denoised = with_denoised
        self.counts: Counter[str] = Counter({name: 0 for name in COUNTS})
        self._tracks: dict[str, _Track] = {}
        self._waiting: dict[ServedModel, _Waiting] = {}
        self._pending = 0
        self._warming = 0

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

        Pass many readings per call: each asset's new rows go to its window in one step.
        A :class:`Row` or :class:`Series` counts as its readings.
        """
        counts = self.counts
        tracks = self._tracks
        completed: dict[str, list[AlignOutput]] = {}
        aligned = late = unknown = invalid = dropped = filled = 0
        for item in readings:
            track = tracks.get(item.asset)
            if track is None:
                count = 1 if isinstance(item, Reading) else len(item.values)
                track = self._track_for(item.asset, count)
                if track is None:
                    continue
            outputs: list[AlignOutput] | tuple[AlignOutput, ...]
            if isinstance(item, Reading):
                outputs, count = (track.aligner.add(item),), 1
            elif isinstance(item, Series):
                block = _continue_block(track, item)
                outputs = track.aligner.add_series(block.channel, block.timestamps, block.values)
                count = len(item.values)
            else:
                whole = track.aligner.add_row(item.timestamp, item.channels, item.values)
                if whole is None:  # not the common case: reading by reading
                    outputs = [track.aligner.add(reading) for reading in item.readings()]
                else:
                    outputs = (whole,)
                count = len(item.values)
            refused = 0
            for out in outputs:
                refused += out.late + out.unknown_channel + out.invalid
                late += out.late
                unknown += out.unknown_channel
                invalid += out.invalid
                dropped += out.dropped_slots
                if len(out.timestamps):
                    filled += out.filled
                    completed.setdefault(item.asset, []).append(out)
            aligned += count - refused
        counts["aligned"] += aligned
        counts["late"] += late
        counts["unknown_channel"] += unknown
        counts["invalid"] += invalid
        counts["dropped_slots"] += dropped
        counts["filled"] += filled
        for asset, outputs in completed.items():
            self._cut(asset, tracks[asset], outputs)

    def _cut(self, asset: str, track: _Track, outputs: list[AlignOutput]) -> None:
        """Extend ``asset``'s window with its new rows (restarting it at gaps)."""
        start = 0
        for i in range(1, len(outputs) + 1):
            if i < len(outputs) and not outputs[i].gap:
                continue
            run = outputs[start:i]
            if run[0].gap:
                track.window.reset()
                self.counts["gaps"] += 1
                if not track.is_warming:
                    track.is_warming = True
                    self._warming += 1
            if len(run) == 1:
                timestamps, values = run[0].timestamps, run[0].values
            else:
                timestamps = np.concatenate([o.timestamps for o in run])
                values = np.concatenate([o.values for o in run])
            due = track.window.extend(timestamps, values)
            if len(due):
                if track.is_warming:
                    track.is_warming = False
                    self._warming -= 1
                waiting = self._waiting.setdefault(track.model, _Waiting())
                waiting.by_asset.setdefault(asset, []).append(due)
                waiting.count += len(due)
                self._pending += len(due)
            start = i

    def flush(self) -> list[Scored]:
        """Score every waiting window, one forward pass per model; return the decisions."""
        results: list[Scored] = []
        for model, waiting in self._waiting.items():
            groups = [
                (asset, np.concatenate([d.end_timestamps for d in dues]), [d.windows for d in dues])
                for asset, dues in waiting.by_asset.items()
            ]
            scores = model.scorer.score(np.concatenate([w for _, _, ws in groups for w in ws]))
            self.counts["windows"] += len(scores)
            self.counts["batches"] += 1
            start = 0
            for asset, ends, _ in groups:
                stop = start + len(ends)
                results.append(self._decide(model, asset, ends, scores, slice(start, stop)))
                start = stop
        self._waiting.clear()
        self._pending = 0
        return results

    def restore_alert(
        self,
        asset: str,
        *,
        alert_id: str,
        started_at: float,
        peak_score: float,
        threshold: float,
        contributions: dict[str, float],
    ) -> bool:
        """Resume an alert a previous process left open on ``asset``; False if not applied.

        Not applied when no model serves the asset or the asset already has state here.
        """
        model = self.fleet.model_for(asset)
        if model is None:
            return False
        return model.detector.alerts.restore(
            asset,
            alert_id=alert_id,
            started_at=started_at,
            peak_score=peak_score,
            threshold=threshold,
            contributions=contributions,
        )

    def swap_fleet(self, fleet: Fleet) -> tuple[int, int, int]:
        """Serve every asset from ``fleet`` from now on; return (kept, restarted, dropped).

        Call it with nothing pending (:meth:`flush` first). An asset whose new model has
        the same channels, window, hop and period keeps its grid and window (no reading
        is lost); otherwise both restart. Alert state and the drift baseline move to the
        new model's detector either way, so an open alert stays open under its id. An
        asset no model serves any more is dropped.
        """
        if self._pending:
            raise RuntimeError("swap_fleet needs an empty batch; call flush() first")
        old_models = self.fleet.models
        self.fleet = fleet
        kept = restarted = dropped = 0
        for asset, track in list(self._tracks.items()):
            model = fleet.model_for(asset)
            if model is None:
                del self._tracks[asset]
                self._warming -= track.is_warming
                dropped += 1
                continue
            model.detector.adopt(asset, track.model.detector)
            if _same_windows(model, track.model):
                track.model = model
                kept += 1
                continue
            self._warming -= track.is_warming
            del self._tracks[asset]
            self._track_for(asset)
            restarted += 1
        for old in old_models:  # open alerts resumed at start on assets not seen yet
            for asset in old.detector.alerts.firing():
                model = fleet.model_for(asset)
                if model is not None:
                    model.detector.adopt(asset, old.detector)
        return kept, restarted, dropped

    def _track_for(self, asset: str, readings: int = 1) -> _Track | None:
        """Start tracking ``asset``; None when no model serves it or the fleet is full.

        In that case its ``readings`` are counted under the reason.
        """
        model = self.fleet.model_for(asset)
        if model is None:
            self.counts["no_model"] += readings
            return None
        if len(self._tracks) >= self.max_assets:
            self.counts["too_many_assets"] += readings
            return None
        bundle = model.bundle
        max_gap = self.max_gap_periods or bundle.max_gap_periods
        track = _Track(
            model,
            Aligner(
                bundle.channels,
                period_s=bundle.period_s,
                max_gap_periods=max_gap,
                max_late_s=self.max_late_s,
            ),
            Window(len(bundle.channels), bundle.window_len, bundle.hop),
        )
        self._tracks[asset] = track
        self._warming += 1
        return track

    def _decide(
        self,
        model: ServedModel,
        asset: str,
        ends: npt.NDArray[np.float64],
        scores: Scores,
        rows: slice,
    ) -> Scored:
        mine = Scores(
            scores.reconstructions[rows], scores.errors[rows], scores.channel_errors[rows]
        )
        verdicts = model.detector.decide(asset, ends, mine)
        denoised = _newest_rows(model, ends, mine.reconstructions) if self.with_denoised else None
        return Scored(
            model,
            asset,
            ends,
            verdicts.scores,
            verdicts.cuts,
            verdicts.is_firing,
            mine.channel_errors,
            verdicts.events,
            denoised,
        )


def _continue_block(track: _Track, block: Series) -> Series:
    """``block`` moved to continue its channel's last block, when it lands near enough.

    A block's sample times come from its arrival (``float32_le``), which comes late by
    however long the broker, the network and the intake took: a block that really follows
    the last one lands a few slots early or late. Early, its first samples would be dropped
    as late; late, it leaves a hole that holds every later row until filled (or, beyond
    ``max_gap_periods``, restarts the window). A block within a quarter of its length (at
    least one slot) of the slot after its channel's last one is therefore moved onto it;
    further off it stays where it lands (a real gap or overlap, and the channel re-anchors).
    """
    period_s = track.model.bundle.period_s
    first = round(float(block.timestamps[0]) / period_s)
    last = round(float(block.timestamps[-1]) / period_s)
    if track.block_ends is None:
        track.block_ends = {}
    previous = track.block_ends.get(block.channel)
    if previous is not None:
        shift = previous + 1 - first
        if shift and abs(shift) <= max(1, len(block.values) // _JITTER_SHARE):
            block = block._replace(timestamps=block.timestamps + shift * period_s)
            last += shift
    track.block_ends[block.channel] = last
    return block


def _same_windows(a: ServedModel, b: ServedModel) -> bool:
    """True when the two models cut the same windows from the same grid."""
    x, y = a.bundle, b.bundle
    return (x.channels, x.window_len, x.hop, x.period_s) == (
        y.channels,
        y.window_len,
        y.hop,
        y.period_s,
    )


def _newest_rows(
    model: ServedModel, ends: npt.NDArray[np.float64], recon: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """The reconstructed rows each window added (its newest ``hop``), with their times."""
    bundle = model.bundle
    hop = min(bundle.hop, bundle.window_len)
    offsets = (np.arange(hop) - (hop - 1)) * bundle.period_s  # (hop,), last is 0
    times = (ends[:, None] + offsets[None, :]).reshape(-1)
    values = recon[:, :, -hop:].transpose(0, 2, 1).reshape(-1, recon.shape[1])
    return times, np.ascontiguousarray(values, dtype=np.float32)
