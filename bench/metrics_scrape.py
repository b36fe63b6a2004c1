"""What one ``/metrics`` scrape costs the daemon, by the number of tracked assets.

    .venv/bin/python bench/metrics_scrape.py [--assets 1000 10000] [--repeats 7]

A scrape renders the page in the daemon's process while holding the interpreter's lock,
so for that long the scoring worker and the network thread wait. Per asset count, the
page ``aewatch run`` serves (:func:`aewatch.daemon.metrics.metrics_page`: the counters
through prometheus_client, the four per-asset gauges written straight as text) is timed
side by side with the reference: the same series as prometheus_client metric families
rendered by its own ``generate_latest``, which is how the page was made before. Prints
the median milliseconds of each (both formats: Prometheus text and OpenMetrics) and their
ratio. Both pages are parsed back and must hold the same samples.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from aewatch.core.pipeline import PipelineCounts
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.intake import IntakeCounts
from aewatch.daemon.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS_S,
    Buckets,
    MetricsSnapshot,
    ModelFigures,
    metrics_page,
    registry_for,
)
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.sparkplug_input import SparkplugEvents

TEXT = "text/plain; version=0.0.4"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print("| assets | format | reference (prometheus_client) | aewatch page | ratio | page size |")
    print("|---|---|---|---|---|---|")
    for n in args.assets:
        _compare(n, args.repeats)


def _compare(n: int, repeats: int) -> None:
    """One table row per format for ``n`` assets."""
    snapshot = _snapshot(n)
    page = metrics_page(lambda: snapshot)
    registry = _reference(snapshot)
    for name, accept, render in (
        ("text 0.0.4", TEXT, generate_latest),
        ("OpenMetrics", OPENMETRICS, openmetrics_latest),
    ):
        ours = _median_ms(lambda accept=accept: page(accept), repeats)
        theirs = _median_ms(lambda render=render: render(registry), repeats)
        if name == "text 0.0.4":
            _same_samples(page(accept)[0], render(registry))
        size = len(page(accept)[0]) / 1e6
        print(
            f"| {n:,} | {name} | {theirs:.1f} ms | {ours:.1f} ms | "
            f"{ours / theirs:.2f} | {size:.2f} MB |"
        )


def _snapshot(n: int) -> MetricsSnapshot:
    """A daemon's snapshot with ``n`` tracked assets, a tenth of them alerting."""
    gauges = AssetGauges()
    gauges._newest = {
        f"site-{i % 40:02d}/pump-{i:05d}": ("pump", 0.01 * i + 0.123456789, 1.5, 0.0821 * (i % 13))
        for i in range(n)
    }
    return MetricsSnapshot(
        intake=IntakeCounts(messages=10 * n, readings=80 * n),
        pipeline=PipelineCounts(aligned=80 * n, windows=10 * n),
        own=ServiceCounts(alerts_raised=n // 10, connects=1),
        sparkplug_events=SparkplugEvents(),
        asset_errors=[],
        assets_tracked=n,
        assets_warming=0,
        batch_windows=Buckets(BATCH_BUCKETS),
        inference_s=Buckets(LATENCY_BUCKETS_S),
        latency_s=Buckets(LATENCY_BUCKETS_S),
        alerts_active=n // 10,
        is_connected=True,
        connect_failures=None,
        queue_readings=0,
        queue_capacity=1_000_000,
        last_reload_failed=False,
        journal=None,
        models=[ModelFigures("pump", "abc123", "site-*/pump-*", 1.5)],
        asset_gauges=gauges,
        alerting_assets=frozenset(a for i, a in enumerate(gauges._newest) if i % 10 == 0),
    )


class _AssetFamilies(Collector):
    """The per-asset gauges as prometheus_client families (the reference)."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        names = (
            "aewatch_asset_score",
            "aewatch_asset_threshold",
            "aewatch_asset_severity",
            "aewatch_asset_alert_active",
        )
        families = [GaugeMetricFamily(name, name, labels=["asset", "model"]) for name in names]
        for s in self.snapshot.asset_gauges.series(self.snapshot.alerting_assets):
            values = (s.score, s.threshold, s.severity, 1.0 if s.is_alerting else 0.0)
            for family, value in zip(families, values, strict=True):
                family.add_metric([s.asset, s.model], value)
        yield from families


def _reference(snapshot: MetricsSnapshot) -> CollectorRegistry:
    registry = registry_for(lambda: snapshot)
    registry.register(_AssetFamilies(snapshot))
    return registry


def _median_ms(render: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        render()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _same_samples(ours: bytes, theirs: bytes) -> None:
    """Both pages hold the same per-asset samples (the process's own figures move)."""

    def samples(page: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(page.decode())
            if family.name.startswith("aewatch_asset_")
            for s in family.samples
        }

    if samples(ours) != samples(theirs):
        raise SystemExit("the two pages differ in their per-asset samples")


if __name__ == "__main__":
    main()
