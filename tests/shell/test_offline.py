"""Offline scoring equals the streaming path the daemon runs, row by row."""

from __future__ import annotations

import numpy as np

from aewatch.core.detector import DecisionSettings, Detector
from aewatch.core.window import Window
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle


def _table(n: int, seed: int, *, fault_at: int | None = None) -> Table:
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.arange(n, dtype=np.float64)
    base = np.sin(t / 30.0)
    values = np.column_stack([base, 0.5 * base + 1.0, -base]) + 0.05 * rng.standard_normal((n, 3))
    if fault_at is not None:
        values[fault_at : fault_at + 80, 1] += 1.5
    return Table("x.csv", t, values, ("a", "b", "c"), None, None, np.arange(n) + 2)


def test_score_table_matches_row_by_row_streaming() -> None:
    bundle = train_bundle(
        [_table(2000, 0)], TrainSettings(fit=FitSettings(show_progress=False))
    ).bundle
    test = _table(600, 1, fault_at=300)
    offline = score_table(bundle, test, asset="w")

    window = Window(3, bundle.window_len, bundle.hop)
    scorer = bundle.scorer()
    detector = Detector(
        bundle.threshold, bundle.channels, DecisionSettings.from_json(bundle.decision)
    )
    firing, events = [], []
    for ts, row in zip(test.timestamps, test.values, strict=True):
        due = window.push(ts, row)
        if len(due):
            scores = scorer.score(due.windows)
            verdicts = detector.decide("w", due.end_timestamps, scores, due.windows)
            firing.append(bool(verdicts.is_firing[-1]))
            events += verdicts.events
        else:
            firing.append(False)
    assert offline.anomaly.tolist() == [int(f) for f in firing]
    # Same alerts; scores agree to float32 precision (batched vs one-window matmuls).
    assert [(e.alert_id, e.state, e.at) for e in offline.events] == [
        (e.alert_id, e.state, e.at) for e in events
    ]
    np.testing.assert_allclose(
        [e.peak_score for e in offline.events], [e.peak_score for e in events], rtol=1e-5
    )
    assert any(e.state == "raised" for e in events)  # the fault is found


def test_gaps_restart_windows_but_keep_alert_state() -> None:
    bundle = train_bundle(
        [_table(2000, 0)], TrainSettings(fit=FitSettings(show_progress=False))
    ).bundle
    test = _table(400, 2)
    gap = test.timestamps.copy()
    gap[200:] += 3600.0  # an hour without data
    scores = score_table(
        bundle, Table("g.csv", gap, test.values, test.channels, None, None, test.lines), asset="w"
    )
    w = bundle.window_len
    assert np.isnan(scores.score[200 : 200 + w - 1]).all()  # the window refills after the gap
    assert not np.isnan(scores.score[200 + w - 1 :]).any()
