"""AssetGauges: each asset's newest window as three gauges, and dropped with the asset.

A pipeline scores a few assets over several flushes; the gauges must hold, per asset, the
last window of that asset's own :meth:`Scored.per_asset` slice (an asset missing from a
flush keeps its value). The broker tests in ``test_daemon.py`` hold the served values to
offline scoring, the bound to ``limits.max_assets`` and the drop at a reload.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aewatch.core.decode import Reading
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle

T0 = 1_700_000_000.0
CHANNELS = ("a", "b", "c")
NAMES = ("aewatch_asset_score", "aewatch_asset_threshold", "aewatch_asset_severity")
ACTIVE = "aewatch_asset_alert_active"

Shown = dict[str, tuple[str, float, float, float]]  # asset -> model, score, threshold, severity


def _table(n: int, seed: int) -> Table:
    """``n`` rows one second apart of three related channels."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n, dtype=np.float64)
    base = np.sin(t / 30.0)
    values = np.column_stack([base, 0.5 * base + 1.0, -base]) + 0.05 * rng.standard_normal((n, 3))
    return Table("x.csv", t, values, CHANNELS, None, None, np.arange(n) + 2)


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model, window 10, hop 1 (trains in well under a second)."""
    settings = TrainSettings(fit=FitSettings(show_progress=False))
    return train_bundle([_table(2000, 0)], settings).bundle


def _readings(asset: str, rows: Table, start: int, stop: int) -> list[Reading]:
    return [
        Reading(asset, channel, float(rows.timestamps[i]), float(rows.values[i, j]))
        for i in range(start, stop)
        for j, channel in enumerate(CHANNELS)
    ]


def _shown(gauges: AssetGauges) -> Shown:
    """What a scrape gets, by asset, read back from the exposition text; the four families
    must name the same series, and say what :meth:`AssetGauges.series` holds."""
    families = list(text_string_to_metric_families(gauges.exposition().decode()))
    assert [f.name for f in families] == [*NAMES, ACTIVE]
    assert all(f.type == "gauge" for f in families)
    series = [[tuple(s.labels.values()) for s in f.samples] for f in families]
    assert series[0] == series[1] == series[2] == series[3]
    *values, active = families
    assert {s.value for s in active.samples} <= {0.0}  # no asset said to be alerting
    shown = {
        s.labels["asset"]: (s.labels["model"], s.value, t.value, v.value)
        for s, t, v in zip(*(f.samples for f in values), strict=True)
    }
    assert shown == {s.asset: (s.model, s.score, s.threshold, s.severity) for s in gauges.series()}
    return shown


def test_each_asset_shows_its_newest_window_across_flushes(bundle: ModelBundle) -> None:
    rows = {"w1": _table(60, 1), "w2": _table(60, 2), "w3": _table(60, 3)}
    pipe = Pipeline(
        Fleet([ServedModel.from_bundle(bundle, pattern="w*", name="well")]), max_late_s=1.0
    )
    gauges = AssetGauges()
    expected: Shown = {}
    # w1 in every flush, w2 in the first two, w3 only in the second: an asset left out of
    # a flush keeps what it showed.
    plan = [("w1", "w2"), ("w1", "w2", "w3"), ("w1",)]
    for flush, assets in enumerate(plan):
        for asset in assets:
            pipe.ingest(_readings(asset, rows[asset], 20 * flush, 20 * flush + 20))
        for scored in pipe.flush():
            gauges.note(scored)
            for one in scored.per_asset():
                (asset,) = one.assets
                last = (float(one.scores[-1]), float(one.thresholds[-1]), float(one.severity[-1]))
                expected[asset] = ("well", *last)
        assert _shown(gauges) == expected
    assert set(expected) == {"w1", "w2", "w3"} and len(gauges) == 3
    for _, score, threshold, severity in expected.values():
        assert score > 0 and threshold > 0
        assert severity >= score / threshold * (1 - 1e-6)


def _three_assets_scored(bundle: ModelBundle) -> AssetGauges:
    """Gauges that noted one flush of assets w1, w2 and w3, 20 rows each, served by "well"."""
    pipe = Pipeline(
        Fleet([ServedModel.from_bundle(bundle, pattern="w*", name="well")]), max_late_s=1.0
    )
    for asset in ("w1", "w2", "w3"):
        pipe.ingest(_readings(asset, _table(20, 1), 0, 20))
    gauges = AssetGauges()
    for scored in pipe.flush():
        gauges.note(scored)
    return gauges


def test_alert_active_is_1_for_the_alerting_assets_only(bundle: ModelBundle) -> None:
    gauges = _three_assets_scored(bundle)
    alerting = {"w2", "w9"}  # w9 alerting but not tracked: no series
    families = text_string_to_metric_families(gauges.exposition(alerting).decode())
    (active,) = (f for f in families if f.name == ACTIVE)
    shown = {(s.labels["asset"], s.labels["model"]): s.value for s in active.samples}
    assert shown == {("w1", "well"): 0.0, ("w2", "well"): 1.0, ("w3", "well"): 0.0}
    assert [s.is_alerting for s in gauges.series(alerting)] == [False, True, False]


def test_keep_served_drops_unserved_assets_and_those_moved_to_another_model(
    bundle: ModelBundle,
) -> None:
    gauges = _three_assets_scored(bundle)
    before = _shown(gauges)

    serving = {"w1": "well", "w2": "pump"}  # w2 moved to another model; w3 not served
    gauges.keep_served(serving.get)

    assert _shown(gauges) == {"w1": before["w1"]}
    assert len(gauges) == 1
