"""Score a whole file the way the daemon scores a stream (offline shell over the pure core).

The file's readings go through the same stages as live readings: the time grid, one
``Window`` per asset (reset at every long gap), the bundle's ``Scorer`` and one
``Detector``. Each input row then gets the outcome of the latest window ending at or
before it, which is what the daemon would hold at that moment. ``score_many`` scores many
short blocks at once, each as its own asset, the way the daemon scores a fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aewatch.core.alerts import AlertEvent
from aewatch.core.detector import DecisionSettings, Detector
from aewatch.core.grid import regularize
from aewatch.core.window import Window
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.scorer import Scorer

__all__ = ["TableScores", "score_many", "score_table"]

# Windows scored in one call of score_many: bounds its memory (a 6-channel window of 10
# samples is 240 bytes, so about 50 MB), whatever the number and length of the blocks.
_MAX_WINDOWS_PER_CALL = 200_000


@dataclass(frozen=True, slots=True)
class TableScores:
    """Per-row outcome for a table of ``n`` rows and ``c`` channels.

    ``score``, ``threshold`` ``(n,)`` float64, NaN until the row's segment has a full
    window; ``anomaly`` ``(n,)`` int8, the alert state after hysteresis (0 before the first
    window); ``channel_errors`` ``(n, c)`` float64, NaN like ``score``. ``window_end``,
    ``window_score``, ``window_threshold``, ``window_severity`` ``(k,)`` describe every scored
    window; ``events`` the alerts raised and resolved.
    """

    score: npt.NDArray[np.float64]
    threshold: npt.NDArray[np.float64]
    anomaly: npt.NDArray[np.int8]
    channel_errors: npt.NDArray[np.float64]
    window_end: npt.NDArray[np.float64]
    window_score: npt.NDArray[np.float32]
    window_threshold: npt.NDArray[np.float32]
    window_severity: npt.NDArray[np.float32]
    events: list[AlertEvent]


def score_table(
    bundle: ModelBundle, table: Table, *, asset: str = "asset", device: str = "cpu"
) -> TableScores:
    """Run ``table`` through grid, windows, scorer and detector; map results back to rows."""
    bundle.check_channels(table.channels, table.source)
    n, c = table.values.shape
    score, threshold = np.full(n, np.nan), np.full(n, np.nan)
    anomaly = np.zeros(n, dtype=np.int8)
    channel_errors = np.full((n, c), np.nan)
    events: list[AlertEvent] = []
    scorer = bundle.scorer(device=device)
    detector = Detector(
        bundle.threshold, bundle.channels, DecisionSettings.from_json(bundle.decision)
    )
    window = Window(c, bundle.window_len, bundle.hop)
    ends: list[npt.NDArray[np.float64]] = [np.empty(0)]
    errors: list[npt.NDArray[np.float32]] = [np.empty(0, dtype=np.float32)]
    thresholds: list[npt.NDArray[np.float32]] = [np.empty(0, dtype=np.float32)]
    severity: list[npt.NDArray[np.float32]] = [np.empty(0, dtype=np.float32)]
    firing_held = 0
    for seg in regularize(
        table.timestamps,
        table.values,
        period_s=bundle.period_s,
        max_gap_periods=bundle.max_gap_periods,
    ):
        window.reset()
        due = window.extend(seg.timestamps, seg.values)
        scores = scorer.score(due.windows)
        verdicts = detector.decide(asset, due.end_timestamps, scores, due.windows)
        events.extend(verdicts.events)
        ends.append(due.end_timestamps)
        errors.append(verdicts.scores)
        thresholds.append(verdicts.thresholds)
        severity.append(verdicts.severity)
        # Grid row of each window's end, then for every grid row the latest window so far.
        first, last = int(seg.source_index[0]), int(seg.source_index[-1])
        rows = np.arange(first, last + 1)
        slot = np.minimum(np.searchsorted(seg.source_index, rows), len(seg.source_index) - 1)
        end_slot = np.rint((due.end_timestamps - seg.timestamps[0]) / bundle.period_s)
        latest = np.searchsorted(end_slot, slot, side="right") - 1
        has = latest >= 0
        pick = latest[has]
        score[rows[has]] = verdicts.scores[pick]
        threshold[rows[has]] = verdicts.thresholds[pick]
        channel_errors[rows[has]] = scores.channel_errors[pick]
        anomaly[rows[has]] = verdicts.is_firing[pick]
        # Rows before this segment's first window keep the state the asset already had.
        anomaly[rows[~has]] = firing_held
        if len(verdicts.is_firing):
            firing_held = int(verdicts.is_firing[-1])
    return TableScores(
        score,
        threshold,
        anomaly,
        channel_errors,
        np.concatenate(ends),
        np.concatenate(errors),
        np.concatenate(thresholds),
        np.concatenate(severity),
        events,
    )


def score_many(
    bundle: ModelBundle,
    blocks: Sequence[npt.NDArray[np.floating]],
    *,
    start_s: float = 0.0,
    device: str = "cpu",
) -> list[list[AlertEvent]]:
    """The alert events of each block ``(m, channels)`` of consecutive grid rows.

    Every block is its own asset (named by its index) with its own window, its first row
    at ``start_s`` and the next ones ``bundle.period_s`` apart; the blocks' windows go
    through the scorer together and through one detector's ``decide_many``, as a fleet's
    do in the daemon. Each block's events are those ``score_table`` gives for it alone.

    Raises:
        ValueError: a block that is not ``(m, channels)``.
    """
    c = len(bundle.channels)
    scorer = bundle.scorer(device=device)
    events: list[list[AlertEvent]] = [[] for _ in blocks]
    windows: list[npt.NDArray[np.float32]] = []
    ends: list[npt.NDArray[np.float64]] = []
    assets: list[str] = []
    for index, block in enumerate(blocks):
        if block.ndim != 2 or block.shape[1] != c:
            raise ValueError(f"block {index} must be (m, {c}), got {block.shape}")
        timestamps = start_s + np.arange(len(block), dtype=np.float64) * bundle.period_s
        due = Window(c, bundle.window_len, bundle.hop).extend(timestamps, block)
        windows.append(due.windows)
        ends.append(due.end_timestamps)
        assets.append(str(index))
        if sum(len(e) for e in ends) >= _MAX_WINDOWS_PER_CALL or index == len(blocks) - 1:
            for event in _decide(bundle, scorer, assets, windows, ends):
                events[int(event.asset)].append(event)
            windows, ends, assets = [], [], []
    return events


def _decide(
    bundle: ModelBundle,
    scorer: Scorer,
    assets: list[str],
    windows: list[npt.NDArray[np.float32]],
    ends: list[npt.NDArray[np.float64]],
) -> list[AlertEvent]:
    """Score the windows of ``assets`` (``windows[g]`` of ``assets[g]``) in one detector."""
    detector = Detector(
        bundle.threshold, bundle.channels, DecisionSettings.from_json(bundle.decision)
    )
    stacked = np.concatenate(windows)
    bounds = np.concatenate(([0], np.cumsum([len(e) for e in ends]))).astype(np.int64)
    scores = scorer.score(stacked, reconstruct=False)
    return detector.decide_many(assets, bounds, np.concatenate(ends), scores, stacked).events
