"""Each tracked asset's newest decision as Prometheus gauges: what fires is what is shown (shell).

Four gauges per asset, labelled ``asset`` and ``model``: ``aewatch_asset_score`` (the
newest window's smoothed error), ``aewatch_asset_threshold`` (the threshold in force that
window was held to: the model's calibrated ratio times the asset's drift baseline, in the
score's units), ``aewatch_asset_severity`` (the worst of score / threshold and each
channel check's statistic / its limit; 1 or more means the window is anomalous) and
``aewatch_asset_alert_active`` (1 while the asset has an alert raised and not resolved:
what an Alertmanager route per asset or site keys on). The
scoring worker notes the newest window of each asset once per flush, not every window;
a scrape reads a copy. There is one series of each per tracked asset, so at most
``limits.max_assets``; an asset the pipeline no longer tracks, or that a reload moved to
another model, loses its series (:meth:`AssetGauges.keep_served`).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from itertools import repeat

from prometheus_client.core import GaugeMetricFamily

from aewatch.core.pipeline import Scored
from aewatch.daemon.fleet import ServedModel

__all__ = ["AssetGauges"]

_LABELS = ["asset", "model"]

# One asset's newest window: the name of the model that scored it, its score, threshold
# in force and severity. A plain tuple: zip builds them in C, for ~100 ns an asset.
_Newest = tuple[str, float, float, float]


class AssetGauges:
    """The newest score, threshold in force and severity of every tracked asset.

    One writer (the scoring worker) calls :meth:`note` and :meth:`keep_served`; any thread
    may call :meth:`families`. The writer replaces entries and swaps the whole table on a
    prune, and a reader copies it in one step, so neither needs a lock.
    """

    def __init__(self) -> None:
        self._newest: dict[str, _Newest] = {}

    def __len__(self) -> int:
        """Assets with series."""
        return len(self._newest)

    def note(self, scored: Scored[ServedModel]) -> None:
        """Keep the newest window of each asset in ``scored`` (one model's flush)."""
        newest = scored.bounds[1:] - 1  # each asset's windows are oldest first
        rows = zip(
            repeat(scored.model.name),
            scored.scores[newest].tolist(),
            scored.thresholds[newest].tolist(),
            scored.severity[newest].tolist(),
            strict=False,  # repeat() never ends; the three lists have one value per asset
        )
        self._newest.update(zip(scored.assets, rows, strict=True))

    def keep_served(self, model_for: Callable[[str], str | None]) -> None:
        """Drop the series of each asset no longer served by the model that scored it.

        ``model_for`` gives the name of the model serving an asset now (None: none does).
        Called after a reload: an asset it dropped loses its series, and so does one it
        moved to another model, until that model scores its first window.
        """
        self._newest = {
            asset: newest for asset, newest in self._newest.items() if model_for(asset) == newest[0]
        }

    def families(self, alerting: Container[str] = frozenset()) -> list[GaugeMetricFamily]:
        """The four gauge families, one series per asset (sorted by asset); ``alerting``
        holds the assets with an open alert."""
        score = GaugeMetricFamily(
            "aewatch_asset_score",
            "Smoothed window error of each asset's newest window.",
            labels=_LABELS,
        )
        threshold = GaugeMetricFamily(
            "aewatch_asset_threshold",
            "Threshold in force for each asset's newest window (the score's units): the "
            "model's calibrated ratio times the asset's drift baseline.",
            labels=_LABELS,
        )
        severity = GaugeMetricFamily(
            "aewatch_asset_severity",
            "Severity of each asset's newest window: the worst of score / threshold and "
            "each channel check's statistic / its limit; 1 or more is anomalous.",
            labels=_LABELS,
        )
        active = GaugeMetricFamily(
            "aewatch_asset_alert_active",
            "1 while the asset has an alert raised and not resolved, else 0.",
            labels=_LABELS,
        )
        for asset, (model, *values) in sorted(dict(self._newest).items()):
            labels = [asset, model]
            for family, value in zip((score, threshold, severity), values, strict=True):
                family.add_metric(labels, value)
            active.add_metric(labels, 1.0 if asset in alerting else 0.0)
        return [score, threshold, severity, active]
