"""Threshold calibration: quantile, POT tail and small-sample chi-squared."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.threshold import Threshold, min_calibration_windows


@settings(max_examples=80, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=50, max_size=400),
    fpr=st.floats(0.03, 0.5),
)
def test_calibrating_on_n_scores_flags_at_most_floor_fpr_n(scores, fpr):
    arr = np.array(scores)
    threshold = Threshold.calibrate(arr, fpr)
    flagged = sum(threshold.exceeds(s) for s in arr)
    # Holds for the small-sample chi-squared cut too: it never undercuts the quantile.
    assert flagged <= math.floor(fpr * len(arr))


def test_quantile_when_the_sample_supports_it():
    scores = np.random.default_rng(0).exponential(size=5000)
    t = Threshold.calibrate(scores, 0.01)
    assert t.method == "quantile"
    assert (scores > t.value).mean() <= 0.01


@pytest.mark.parametrize("fpr", [1e-4, 1e-5])
def test_pot_extrapolates_an_exponential_tail(fpr):
    scores = np.random.default_rng(1).exponential(size=20_000)
    t = Threshold.calibrate(scores, fpr)
    assert t.method == "pot"
    # The true quantile of Exp(1) is -ln(fpr); the tail fit should land near it.
    assert abs(t.value - (-math.log(fpr))) / -math.log(fpr) < 0.2


def test_chi2_for_small_samples_covers_the_sample():
    rng = np.random.default_rng(2)
    scores = rng.chisquare(5, size=100)
    t = Threshold.calibrate(scores, 0.001)
    assert t.method == "chi2"
    assert t.value >= scores.max() * 0.9
    # Out of sample, the rate of exceedances is near the target, not 10x above it.
    fresh = rng.chisquare(5, size=200_000)
    assert (fresh > t.value).mean() < 0.01


def test_bad_fpr_and_tiny_samples_say_what_to_do():
    with pytest.raises(ValueError, match="fpr must be in"):
        Threshold.calibrate(np.ones(100), 1.5)
    with pytest.raises(ValueError, match="add normal history"):
        Threshold.calibrate(np.ones(10), 0.01)


def test_json_round_trip():
    t = Threshold.calibrate(np.random.default_rng(3).exponential(size=2000), 1e-4)
    assert Threshold.from_json(t.to_json()) == t


def test_serving_does_not_import_scipy() -> None:
    """The daemon never calibrates: scipy (about 60 MB resident) stays out of its process."""
    code = (
        "import sys, aewatch.daemon.service, aewatch.commands.run; "
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fpr", [1e-5, 1e-4, 0.01, 0.2, 1 / 3, 0.4, 0.5, 0.9])
def test_min_calibration_windows_is_the_fewest_calibrate_accepts(fpr: float) -> None:
    need = min_calibration_windows(fpr)
    scores = np.random.default_rng(4).exponential(size=need)
    assert Threshold.calibrate(scores, fpr).n_calibration == need
    with pytest.raises(ValueError, match=f"needs at least {need} calibration windows"):
        Threshold.calibrate(scores[:-1], fpr)
