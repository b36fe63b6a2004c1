"""Detector: smoothing, drift baseline, re-baselining, floor — and offline equals streaming."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.alerts import AlertEvent
from aewatch.core.detector import Adaptation, AssetState, DecisionSettings, Detector
from aewatch.core.threshold import Threshold
from aewatch.model.scorer import Scores

CHANNELS = ("a", "b")


def _scores(errors: np.ndarray) -> Scores:
    errors = np.asarray(errors, dtype=np.float32)
    per_channel = np.column_stack([errors * 1.5, errors * 0.5]).astype(np.float32)
    return Scores(np.zeros((len(errors), 2, 3), np.float32), errors, per_channel)


def _run(settings: DecisionSettings, errors: np.ndarray, cut: float = 2.0):
    detector = Detector(Threshold(cut, 0.01, 100, "quantile"), CHANNELS, settings)
    return detector.decide("asset", np.arange(len(errors), dtype=float), _scores(errors))


def test_plain_threshold_and_hysteresis() -> None:
    errors = np.array([1, 3, 3, 1, 3, 3, 3, 1, 1, 1], dtype=float)
    v = _run(DecisionSettings(raise_after=2, resolve_after=2), errors)
    assert v.is_anomalous.tolist() == (errors > 2).tolist()
    assert v.is_firing.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert [e.state for e in v.events] == ["raised", "resolved"]
    assert v.events[0].contributions[0][0] == "a"  # the channel with the larger error
    np.testing.assert_allclose(v.scores, errors)


def test_smoothing_damps_a_single_spike_but_not_a_sustained_rise() -> None:
    settings = DecisionSettings(smoothing_halflife=5)
    spike = np.r_[np.ones(20), 10.0, np.ones(20)]
    assert not _run(settings, spike, cut=3.0).is_anomalous.any()
    rise = np.r_[np.ones(20), np.full(20, 10.0)]
    assert _run(settings, rise, cut=3.0).is_anomalous[-1]


def _adapting(**kw: float) -> DecisionSettings:
    return DecisionSettings(adaptation=Adaptation(depth=50, seed=(1.0,) * 50, **kw))


def test_baseline_follows_slow_drift_but_not_a_fault() -> None:
    drift = np.linspace(1.0, 4.0, 3000)  # errors quadruple over a long time: plant ageing
    v = _run(_adapting(), drift, cut=2.0)
    assert not v.is_firing.any()
    assert v.thresholds[-1] > 7.0  # threshold x baseline moved with the drift
    fault = np.r_[np.ones(100), np.full(500, 5.0)]  # a sudden fault that lasts
    v = _run(_adapting(), fault, cut=2.0)
    assert v.is_firing[-1]  # never learnt while firing, so it is not absorbed
    assert v.thresholds[-1] == pytest.approx(2.0)


def test_relative_drop_rebaselines_after_a_fault() -> None:
    # A fault (score 20), then the plant settles on a plateau at 3: above the old cut of 2.
    errors = np.r_[np.ones(50), np.full(60, 20.0), np.full(200, 3.0)]
    without = _run(_adapting(), errors)
    assert without.is_firing[-1]  # the plateau would alarm for ever
    with_drop = _run(_adapting(drop=0.3, min_alert=30), errors)
    assert not with_drop.is_firing[-1]
    assert [e.state for e in with_drop.events] == ["raised", "resolved"]
    assert with_drop.thresholds[-1] == pytest.approx(2.0 * 3.0)


def test_floor_keeps_the_threshold_from_collapsing() -> None:
    quiet = np.r_[np.full(300, 0.01), np.ones(20)]  # a stuck sensor, then normal noise again
    assert _run(_adapting(), quiet).is_firing[-1]
    v = _run(_adapting(floor=0.5), quiet)
    assert not v.is_firing.any()
    assert v.thresholds.min() == pytest.approx(1.0)


def test_settings_round_trip() -> None:
    settings = DecisionSettings(3, 4, 2.5, Adaptation(7, (1.0, 2.0), 0.3, 30, 0.5))
    assert DecisionSettings.from_json(settings.to_json()) == settings


def test_split_batches_give_the_same_verdicts() -> None:
    errors = np.abs(np.random.default_rng(0).standard_normal(500)) * 1.5
    settings = _adapting(drop=0.3, min_alert=5)
    whole = _run(settings, errors)
    detector = Detector(Threshold(2.0, 0.01, 100, "quantile"), CHANNELS, settings)
    parts = [
        detector.decide(
            "asset", np.arange(i, min(i + 37, 500), dtype=float), _scores(errors[i : i + 37])
        )
        for i in range(0, 500, 37)
    ]
    np.testing.assert_array_equal(whole.is_firing, np.concatenate([p.is_firing for p in parts]))
    np.testing.assert_allclose(whole.thresholds, np.concatenate([p.thresholds for p in parts]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_window_error_alerts_once_and_does_not_blind_the_asset(bad: float) -> None:
    # A value so large the scaled window overflows gives a NaN or infinite error; it must
    # count as anomalous without poisoning the smoothed score for good.
    errors = np.array([1.0, bad, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0] + [1.0] * 60)
    settings = DecisionSettings(raise_after=1, resolve_after=2, smoothing_halflife=1.0)
    v = _run(settings, errors)
    assert np.isfinite(v.scores).all()
    assert v.is_anomalous[1]
    assert not v.is_firing[-1]
    raised = [e for e in v.events if e.state == "raised"]
    assert raised and all(np.isfinite([c for _, c in e.contributions]).all() for e in raised)


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=2500))
def test_the_running_alert_median_is_numpys(statistics: list[float]) -> None:
    """The in-alert median kept sorted as statistics come equals np.median of the span."""
    state = AssetState()
    for i, value in enumerate(statistics):
        state.note_alert(value)
        if i % 97 == 0 or i == len(statistics) - 1:
            assert state.in_alert is not None
            assert state.alert_median() == float(np.median(state.in_alert))
    assert len(state.in_alert_sorted) == min(len(statistics), 1000)


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    halflife=st.sampled_from([0.0, 1.0, 4.5]),
    adapt=st.sampled_from(["none", "plain", "drop", "floor"]),
    raise_after=st.integers(1, 3),
    resolve_after=st.integers(1, 3),
    n=st.integers(1, 600),
)
def test_runs_of_normal_windows_decide_as_one_window_at_a_time(
    *,
    seed: int,
    halflife: float,
    adapt: str,
    raise_after: int,
    resolve_after: int,
    n: int,
) -> None:
    """decide() takes runs of normal windows in one step; one window per call never does.

    Both must give the same decisions (scores and cuts up to rounding): errors with quiet
    stretches, faults of several lengths, lone spikes and a non-finite error or two.
    """
    rng = np.random.default_rng(seed)
    errors = np.abs(rng.normal(1.0, 0.3, n))
    for _ in range(rng.integers(0, 4)):
        at, length = rng.integers(0, n), rng.integers(1, 80)
        errors[at : at + length] *= rng.uniform(1.5, 12.0)
    if n > 10 and rng.random() < 0.3:
        errors[rng.integers(0, n)] = np.nan if rng.random() < 0.5 else np.inf
    adaptation = {
        "none": None,
        "plain": Adaptation(depth=40, seed=_seed(rng, 40)),
        "drop": Adaptation(depth=25, seed=_seed(rng, 10), drop=0.4, min_alert=6),
        "floor": Adaptation(depth=30, seed=_seed(rng, 30), floor=0.9),
    }[adapt]
    settings_ = DecisionSettings(raise_after, resolve_after, halflife, adaptation)
    threshold = Threshold(float(rng.uniform(1.6, 2.4)), 0.01, 100, "quantile")
    ends = np.arange(n, dtype=float)
    whole = Detector(threshold, CHANNELS, settings_).decide("asset", ends, _scores(errors))
    single = Detector(threshold, CHANNELS, settings_)
    one_by_one = [
        single.decide("asset", ends[i : i + 1], _scores(errors[i : i + 1])) for i in range(n)
    ]
    np.testing.assert_array_equal(
        whole.is_firing, np.concatenate([v.is_firing for v in one_by_one])
    )
    np.testing.assert_array_equal(
        whole.is_anomalous, np.concatenate([v.is_anomalous for v in one_by_one])
    )
    np.testing.assert_allclose(whole.scores, np.concatenate([v.scores for v in one_by_one]))
    np.testing.assert_allclose(whole.thresholds, np.concatenate([v.thresholds for v in one_by_one]))
    events = [e for v in one_by_one for e in v.events]
    assert [_fixed(e) for e in whole.events] == [_fixed(e) for e in events]
    for a, b in zip(whole.events, events, strict=True):
        assert (a.peak_score, a.threshold) == pytest.approx((b.peak_score, b.threshold))
        assert dict(a.contributions) == pytest.approx(dict(b.contributions))


def _seed(rng: np.random.Generator, n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in rng.uniform(0.8, 1.2, n))


def _fixed(event: AlertEvent) -> tuple[object, ...]:
    """What an event must state exactly; scores and cuts may differ by rounding."""
    return (event.alert_id, event.state, event.started_at, event.at, event.ended_at)


def test_many_assets_at_once_decide_as_each_alone() -> None:
    """decide_many over several assets' windows equals decide per asset, chunk by chunk."""
    rng = np.random.default_rng(3)
    settings_ = _adapting(drop=0.3, min_alert=5)
    threshold = Threshold(2.0, 0.01, 100, "quantile")
    errors = {a: np.abs(rng.standard_normal(300)) * 1.6 for a in ("p", "q", "r")}
    together = Detector(threshold, CHANNELS, settings_)
    alone = {a: Detector(threshold, CHANNELS, settings_) for a in errors}
    at = dict.fromkeys(errors, 0)
    for _ in range(40):
        assets = [str(a) for a in rng.permutation(list(errors))[: rng.integers(1, 4)]]
        counts = [int(rng.integers(0, 20)) for _ in assets]
        bounds = np.concatenate(([0], np.cumsum(counts)))
        parts = [errors[a][at[a] : at[a] + n] for a, n in zip(assets, counts, strict=True)]
        ends = [
            np.arange(at[a], at[a] + len(p), dtype=float)
            for a, p in zip(assets, parts, strict=True)
        ]
        both = together.decide_many(
            assets, bounds, np.concatenate(ends), _scores(np.concatenate(parts))
        )
        for g, asset in enumerate(assets):
            one = alone[asset].decide(asset, ends[g], _scores(parts[g]))
            mine = slice(bounds[g], bounds[g + 1])
            np.testing.assert_array_equal(both.is_firing[mine], one.is_firing)
            np.testing.assert_allclose(both.thresholds[mine], one.thresholds)
            assert [_fixed(e) for e in both.events if e.asset == asset] == [
                _fixed(e) for e in one.events
            ]
            at[asset] += len(parts[g])
    assert sum(at.values()) > 300
