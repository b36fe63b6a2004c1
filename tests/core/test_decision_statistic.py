"""decision_statistic: what training and recalibration calibrate on, as the detector judges it."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aewatch.core.detector import (
    Adaptation,
    DecisionSettings,
    Detector,
    decision_statistic,
    smooth,
)
from aewatch.core.threshold import Threshold
from aewatch.model.scorer import Scores

errors_st = st.lists(st.floats(0.01, 100.0), min_size=1, max_size=200)
halflife_st = st.sampled_from([0.0, 1.0, 5.0])


@given(errors_st, halflife_st, st.integers(1, 300))
def test_statistic_is_the_smoothed_error_over_the_seed_mean(
    errors: list[float], halflife: float, depth: int
) -> None:
    adapt = Adaptation(depth=depth, drop=0.3, min_alert=7, floor=0.5)
    settings = DecisionSettings(2, 9, halflife, adapt)
    seeded, statistic = decision_statistic(errors, settings)
    smoothed = smooth(errors, halflife)
    assert seeded.adaptation is not None
    assert seeded.adaptation.seed == tuple(smoothed[-depth:].tolist())
    assert seeded == DecisionSettings(
        2, 9, halflife, Adaptation(depth, seeded.adaptation.seed, 0.3, 7, 0.5)
    )
    np.testing.assert_allclose(statistic * np.mean(smoothed[-depth:]), smoothed)


@given(errors_st, halflife_st)
def test_without_adaptation_the_statistic_is_the_smoothed_error(
    errors: list[float], halflife: float
) -> None:
    settings = DecisionSettings(1, 1, halflife, None)
    seeded, statistic = decision_statistic(errors, settings)
    assert seeded == settings
    np.testing.assert_array_equal(statistic, smooth(errors, halflife))


@given(errors_st, st.floats(0.01, 100.0), st.floats(0.5, 5.0))
def test_a_fresh_asset_is_judged_on_the_statistic(
    errors: list[float], error: float, value: float
) -> None:
    # A fresh asset's first window: its error over the seed's mean against the threshold.
    seeded, _ = decision_statistic(errors, DecisionSettings(adaptation=Adaptation(depth=50)))
    assert seeded.adaptation is not None
    seed_mean = float(np.mean(seeded.adaptation.seed))
    detector = Detector(Threshold(value, 0.01, len(errors), "quantile"), ("a",), seeded)
    e = np.array([error], dtype=np.float32)
    verdicts = detector.decide("x", [0.0], Scores(np.zeros((1, 1, 2), np.float32), e, e[:, None]))
    np.testing.assert_allclose(verdicts.thresholds[0], value * seed_mean, rtol=1e-6)
    if abs(float(e[0]) / seed_mean - value) > 1e-6 * value:
        assert bool(verdicts.is_anomalous[0]) == (float(e[0]) / seed_mean > value)
