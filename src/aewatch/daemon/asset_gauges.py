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

These series are nearly all of a scrape (4 000 of its 4 260 lines with a thousand assets),
so they are written straight as exposition text (:meth:`AssetGauges.exposition`), each
asset's label text made once and kept: prometheus_client builds an object per sample and
formats it, about 40 µs an asset, where this takes about 4 µs (``bench/metrics_scrape.py``).
A scrape holds the interpreter's lock while it renders, so a slow one stalls the scoring
worker and the network thread too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container
from dataclasses import dataclass
from itertools import repeat

from aewatch.core.pipeline import Scored
from aewatch.daemon.fleet import ServedModel

__all__ = ["AssetGauges", "AssetSeries"]

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
        self._labels: dict[tuple[str, str], str] = {}  # exposition's label texts (readers')

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

    def series(self, alerting: Container[str] = frozenset()) -> list[AssetSeries]:
        """Every asset's four values, sorted by asset; ``alerting`` holds the assets with
        an open alert."""
        return [
            AssetSeries(asset, model, score, threshold, severity, asset in alerting)
            for asset, (model, score, threshold, severity) in sorted(dict(self._newest).items())
        ]

    def exposition(self, alerting: Container[str] = frozenset()) -> bytes:
        """The four gauge families as exposition text, one series per asset (sorted by
        asset): the same lines in Prometheus' text format 0.0.4 and in OpenMetrics (whose
        page ends with ``# EOF``, which the caller adds). ``alerting`` holds the assets
        with an open alert.
        """
        rows = sorted(dict(self._newest).items())
        if len(self._labels) > 2 * len(rows) + _LABEL_SLACK:
            self._labels = {}  # assets come and go: forget those long gone
        labels = self._labels
        texts: list[str] = []
        for asset, (model, *_) in rows:
            text = labels.get((asset, model))
            if text is None:
                text = labels[(asset, model)] = _label_text(asset, model)
            texts.append(text)
        columns = (
            [_number(score) for _, (_, score, _, _) in rows],
            [_number(threshold) for _, (_, _, threshold, _) in rows],
            [_number(severity) for _, (_, _, _, severity) in rows],
            ["1.0" if asset in alerting else "0.0" for asset, _ in rows],
        )
        lines: list[str] = []
        for (name, help_text), values in zip(_FAMILIES, columns, strict=True):
            lines.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            lines += [f"{name}{text}{value}\n" for text, value in zip(texts, values, strict=True)]
        return "".join(lines).encode()


@dataclass(frozen=True, slots=True)
class AssetSeries:
    """One asset's four gauge values, as a scrape shows them."""

    asset: str
    model: str
    score: float
    threshold: float
    severity: float
    is_alerting: bool


# Name and help of each family, in the order they are written. The help texts hold no
# backslash, newline or double quote, so both formats take them as they are.
_FAMILIES = (
    ("aewatch_asset_score", "Smoothed window error of each asset's newest window."),
    (
        "aewatch_asset_threshold",
        "Threshold in force for each asset's newest window (the score's units): the "
        "model's calibrated ratio times the asset's drift baseline.",
    ),
    (
        "aewatch_asset_severity",
        "Severity of each asset's newest window: the worst of score / threshold and "
        "each channel check's statistic / its limit; 1 or more is anomalous.",
    ),
    (
        "aewatch_asset_alert_active",
        "1 while the asset has an alert raised and not resolved, else 0.",
    ),
)
_LABEL_SLACK = 1024  # label texts kept for assets without series before they are forgotten


def _label_text(asset: str, model: str) -> str:
    """``{asset="...",model="..."} `` with the values escaped as both formats want."""
    return f'{{asset="{_escaped(asset)}",model="{_escaped(model)}"}} '


def _escaped(value: str) -> str:
    r"""A label value with backslash, double quote and newline escaped.

    >>> print(_escaped('a\\b"c\nd'))
    a\\b\"c\nd
    """
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """A sample value as both formats read it (Python's shortest repr where finite; the
    infinities and NaN spelled as Prometheus spells them).

    >>> _number(0.25), _number(float("inf")), _number(float("nan"))
    ('0.25', '+Inf', 'NaN')
    """
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
