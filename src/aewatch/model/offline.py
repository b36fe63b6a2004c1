"""Score a whole file the way the daemon scores a stream (offline shell over the pure core).

The file's readings go through the same stages as live readings: the time grid, one
``Window`` per asset (reset at every long gap), the bundle's ``Scorer`` and one
``Detector``. Each input row then gets the outcome of the latest window ending at or
before it, which is what the daemon would hold at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aewatch.model.alerts import AlertEvent
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.detector import DecisionSettings, Detector
from aewatch.model.grid import regularize
from aewatch.model.window import Window

__all__ = ["TableScores", "score_table"]


@dataclass(frozen=True, slots=True)
class TableScores:
    """Per-row outcome for a table of ``n`` rows and ``c`` channels.

    ``score``, ``threshold`` ``(n,)`` float64, NaN until the row's segment has a full
    window; ``anomaly`` ``(n,)`` int8, the alert state after hysteresis (0 before the first
    window); ``channel_errors`` ``(n, c)`` float64, NaN like ``score``. ``window_end``,
    ``window_score``, ``window_cut``, ``window_severity`` ``(k,)`` describe every scored
    window; ``events`` the alerts raised and resolved.
    """

    score: npt.NDArray[np.float64]
    threshold: npt.NDArray[np.float64]
    anomaly: npt.NDArray[np.int8]
    channel_errors: npt.NDArray[np.float64]
    window_end: npt.NDArray[np.float64]
    window_score: npt.NDArray[np.float32]
    window_cut: npt.NDArray[np.float32]
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
    cuts: list[npt.NDArray[np.float32]] = [np.empty(0, dtype=np.float32)]
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
        cuts.append(verdicts.cuts)
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
        threshold[rows[has]] = verdicts.cuts[pick]
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
        np.concatenate(cuts),
        np.concatenate(severity),
        events,
    )
