"""A history too short to fit predictions but covering a day: each channel's level is
watched, so a valve that a controller holds away from its normal position is raised."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aewatch.core.detector import DecisionSettings, Detector
from aewatch.core.window import Window
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle

PERIOD_S = 180.0  # a sample every 3 minutes: 480 a day
CHANNELS = tuple(f"ch{i}" for i in range(12))
VALVE = 7


def _plant(n: int, seed: int) -> npt.NDArray[np.float64]:
    """Twelve channels wandering about their set-points (AR(1), lag-1 correlation 0.5)."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal((n, len(CHANNELS)))
    rows = np.empty_like(shocks)
    rows[0] = shocks[0]
    for t in range(1, n):
        rows[t] = 0.5 * rows[t - 1] + shocks[t]
    return 50.0 + 2.0 * rows


def _table(values: npt.NDArray[np.float64]) -> Table:
    t = 1.7e9 + PERIOD_S * np.arange(len(values), dtype=np.float64)
    return Table("plant.csv", t, values, CHANNELS, None, None, np.arange(len(values)) + 2)


def _settings() -> TrainSettings:
    return TrainSettings(fit=FitSettings(show_progress=False, epochs=5))


def test_a_valve_held_off_its_level_is_raised_as_a_shift() -> None:
    history = _plant(600, 0)  # 30 h: a day and more, far fewer samples than the residuals need
    bundle = train_bundle([_table(history)], _settings()).bundle
    checks = bundle.decision["checks"]
    assert checks["kinds"] == ["shift", "stuck"]
    day = _plant(480, 1)
    spread = 2.0 / np.sqrt(1.0 - 0.5**2)  # the AR(1)'s standard deviation
    day[240:, VALVE] += 3.0 * spread  # the controller opens the valve to hold the process
    events = score_table(bundle, _table(day), asset="unit").events
    # The window error of so short a history raises on its own now and then; the level
    # shift is what this asserts.
    shifts = [
        (e.at, f.channel)
        for e in events
        if e.state == "raised"
        for f in e.findings
        if f.kind == "shift"
    ]
    assert shifts, "the held valve raised no shift"
    moved_at = 1.7e9 + 240 * PERIOD_S
    assert moved_at <= shifts[0][0] <= moved_at + 3600.0  # within the hour, not before
    assert {channel for _, channel in shifts} == {CHANNELS[VALVE]}


def test_a_normal_day_raises_no_level_shift() -> None:
    bundle = train_bundle([_table(_plant(600, 0))], _settings()).bundle
    for seed in (2, 3):
        events = score_table(bundle, _table(_plant(480, seed)), asset="unit").events
        assert not [f for e in events for f in e.findings if f.kind == "shift"]


def test_a_history_under_a_day_watches_no_level() -> None:
    """Twenty hours have not seen a day's swings: the stuck check alone."""
    bundle = train_bundle([_table(_plant(400, 0))], _settings()).bundle
    assert bundle.decision["checks"]["kinds"] == ["stuck"]


def test_window_by_window_streaming_raises_the_same_level_shift_as_offline() -> None:
    """The daemon's path (a window at a time through the detector) gives offline's alerts."""
    bundle = train_bundle([_table(_plant(600, 0))], _settings()).bundle
    day = _plant(480, 1)
    day[240:, VALVE] += 3.0 * 2.0 / np.sqrt(1.0 - 0.5**2)
    table = _table(day)
    offline = score_table(bundle, table, asset="unit")
    window = Window(len(CHANNELS), bundle.window_len, bundle.hop)
    scorer = bundle.scorer()
    detector = Detector(
        bundle.threshold, bundle.channels, DecisionSettings.from_json(bundle.decision)
    )
    events = []
    for ts, row in zip(table.timestamps, table.values, strict=True):
        due = window.push(ts, row)
        if len(due):
            events += detector.decide(
                "unit", due.end_timestamps, scorer.score(due.windows), due.windows
            ).events
    assert [(e.alert_id, e.state, e.at, e.kind) for e in offline.events] == [
        (e.alert_id, e.state, e.at, e.kind) for e in events
    ]
    assert any(e.kind == "shift" for e in events)
