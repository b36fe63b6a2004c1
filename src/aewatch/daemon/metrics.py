"""Prometheus metrics and the health endpoints (shell).

The stages keep plain counters (typed fields of ``PipelineCounts``, ``IntakeCounts``,
``ServiceCounts`` and ``SparkplugEvents``, each field written by one thread), so the hot
path pays one attribute increment per event. :class:`DaemonCollector` turns them into
metric families when Prometheus scrapes, from one :class:`MetricsSnapshot` the daemon
hands it (the collector knows no daemon); histograms are :class:`Buckets`, filled a whole
batch at a time with numpy. :class:`~aewatch.daemon.status.StatusServer` (kept importable
from here) serves ``/metrics`` (:func:`metrics_page`), ``/healthz`` (the process and its
scoring worker are alive) and ``/readyz`` (connected to the broker with models loaded).

Names follow Prometheus conventions: ``aewatch_`` prefix, base units (seconds), ``_total``
on counters. Only the four gauges of
:class:`~aewatch.daemon.asset_gauges.AssetGauges` have an ``asset`` label: one series each
per tracked asset, so at most ``limits.max_assets``; and ``aewatch_asset_errors_total``,
whose :class:`~aewatch.daemon.asset_errors.AssetErrors` names at most 100 assets and
counts the rest as ``other``. The journal's metrics (``aewatch_journal_*``) are exported
with or without ``state_dir``: 0 without, so a rule on them needs no second form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aewatch import __version__
from aewatch.core.decode import DECODE_REASONS
from aewatch.core.pipeline import PipelineCounts
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.connect_failures import CONNECT_FAILURE_REASONS, ConnectFailures
from aewatch.daemon.intake import IntakeCounts
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.sparkplug_input import SPARKPLUG_EVENTS, SparkplugEvents
from aewatch.daemon.state_key import IGNORED_REASONS
from aewatch.daemon.status import MetricsPage, StatusServer, registry_page

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS_S",
    "Buckets",
    "DaemonCollector",
    "JournalFigures",
    "MetricsPage",
    "MetricsSnapshot",
    "ModelFigures",
    "StatusServer",
    "metrics_page",
    "registry_for",
]

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

_EOF = b"# EOF\n"

# Readings dropped after decoding: where each Pipeline/Intake count goes.
_READING_DROPS = {
    "queue_full": "intake",
    "late": "pipeline",
    "outlier": "pipeline",
    "unknown_channel": "pipeline",
    "invalid": "pipeline",
    "no_model": "pipeline",
    "too_many_assets": "pipeline",
}


class Buckets:
    """A cumulative histogram filled many values at a time (one writer thread).

    >>> b = Buckets((0.1, 1.0))
    >>> b.observe([0.05, 0.5, 0.5, 3.0])
    >>> b.cumulative(), b.count, round(b.sum, 2)
    ([1, 3, 4], 4, 4.05)
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        if len(self.bounds) == 0 or np.any(np.diff(self.bounds) <= 0):
            raise ValueError(f"bucket bounds must increase strictly, got {list(bounds)}")
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self.sum = 0.0

    def observe(self, values: npt.ArrayLike) -> None:
        """Count each value in the first bucket whose upper bound is at least the value."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not len(v):
            return
        index = np.searchsorted(self.bounds, v, side="left")
        self._counts += np.bincount(index, minlength=len(self._counts))
        self.sum += float(v.sum())

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (the ``+Inf`` bucket)."""
        return [int(c) for c in np.cumsum(self._counts.copy())]

    @property
    def count(self) -> int:
        """Values observed."""
        return int(self._counts.sum())

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """This histogram as a Prometheus metric family."""
        counts = self.cumulative()
        edges = [*(f"{b:g}" for b in self.bounds), "+Inf"]
        return HistogramMetricFamily(
            name,
            documentation,
            buckets=list(zip(edges, counts, strict=True)),
            sum_value=self.sum,
        )


@dataclass(frozen=True, slots=True)
class JournalFigures:
    """The journal's state at a scrape (``state_dir`` set)."""

    records: int
    bytes: int
    dropped: int
    checkpoints: int = 0  # checkpoints written by this process
    checkpoint_failures: int = 0  # checkpoints that could not be written


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """One loaded model at a scrape."""

    name: str
    version: str
    pattern: str
    threshold: float


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the metrics show, read from the daemon's parts at one scrape.

    ``intake``, ``pipeline`` and ``own`` are copies of the stages' and the service's
    counters (``Intake.counts``, ``Pipeline.counts`` and ``Daemon.counts``);
    the histograms and per-asset gauges are the daemon's own objects, read as they stand.
    """

    intake: IntakeCounts
    pipeline: PipelineCounts
    own: ServiceCounts
    sparkplug_events: SparkplugEvents
    asset_errors: Sequence[tuple[str, str, int]]
    assets_tracked: int
    assets_warming: int
    batch_windows: Buckets
    inference_s: Buckets
    latency_s: Buckets
    alerts_active: int
    is_connected: bool
    connect_failures: ConnectFailures | None
    queue_readings: int
    queue_capacity: int
    last_reload_failed: bool
    journal: JournalFigures | None
    models: Sequence[ModelFigures]
    asset_gauges: AssetGauges
    alerting_assets: frozenset[str]


class DaemonCollector(Collector):
    """Turns the snapshot ``snapshot()`` gives at each scrape into metric families."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric family, computed from the daemon's current counts."""
        d = self.snapshot()
        intake, pipeline, own = d.intake, d.pipeline, d.own
        yield InfoMetricFamily("aewatch_build", "aewatch version.", value={"version": __version__})
        yield _counter(
            "aewatch_messages_received", "MQTT messages taken from the broker.", intake.messages
        )
        yield _counter(
            "aewatch_readings_received",
            "Readings decoded and queued for the scoring worker.",
            intake.readings,
        )
        messages_dropped = CounterMetricFamily(
            "aewatch_messages_dropped",
            "Messages dropped whole before decoding, by reason.",
            labels=["reason"],
        )
        messages_dropped.add_metric(["unknown_topic"], intake.unknown_topic)
        messages_dropped.add_metric(["no_model"], intake.no_model)
        messages_dropped.add_metric(["bad_asset_name"], intake.bad_asset_name)
        yield messages_dropped
        asset_errors = CounterMetricFamily(
            "aewatch_asset_errors",
            "Errors that stayed with one asset (its part skipped, the others went on), by "
            "asset (the first 100, then 'other') and stage.",
            labels=["asset", "stage"],
        )
        for asset, stage, errors in d.asset_errors:
            asset_errors.add_metric([asset, stage], errors)
        yield asset_errors
        decode_errors = CounterMetricFamily(
            "aewatch_decode_errors",
            "Payloads or payload parts that could not be decoded, by reason.",
            labels=["reason"],
        )
        for reason in DECODE_REASONS:
            decode_errors.add_metric([reason], intake.decode_errors[reason])
        yield decode_errors
        sparkplug = CounterMetricFamily(
            "aewatch_sparkplug_events",
            "Sparkplug B events, by kind: birth (NBIRTH or DBIRTH), death (NDEATH of the "
            "current session, or DDEATH), seq_gap (a node's messages lost), rebirth_request "
            "(NCMD asking a node for its births).",
            labels=["event"],
        )
        for event in SPARKPLUG_EVENTS:
            sparkplug.add_metric([event], getattr(d.sparkplug_events, event))
        yield sparkplug
        readings_dropped = CounterMetricFamily(
            "aewatch_readings_dropped",
            "Decoded readings dropped, by reason.",
            labels=["reason"],
        )
        for reason, stage in _READING_DROPS.items():
            counts = intake if stage == "intake" else pipeline
            readings_dropped.add_metric([reason], getattr(counts, reason))
        yield readings_dropped
        yield _counter(
            "aewatch_readings_aligned",
            "Readings placed on their asset's time grid.",
            pipeline.aligned,
        )
        yield _counter(
            "aewatch_slots_dropped",
            "Grid slots given up because a channel stayed missing too long.",
            pipeline.dropped_slots,
        )
        yield _counter(
            "aewatch_values_filled",
            "Missing channel values forward-filled on the grid.",
            pipeline.filled,
        )
        yield _counter(
            "aewatch_window_restarts",
            "Window restarts after a gap longer than max_gap_periods.",
            pipeline.gaps,
        )
        yield _gauge("aewatch_assets_tracked", "Assets with a grid and window.", d.assets_tracked)
        yield _gauge(
            "aewatch_assets_warming",
            "Tracked assets still filling their first window.",
            d.assets_warming,
        )
        yield _counter("aewatch_windows_scored", "Windows scored.", pipeline.windows)
        yield _counter(
            "aewatch_batches", "Forward passes (one per model and flush).", pipeline.batches
        )
        yield _counter(
            "aewatch_windows_outside_envelope",
            "Windows scored with a new reading outside the training envelope.",
            pipeline.outside_envelope,
        )
        yield d.batch_windows.family("aewatch_batch_size_windows", "Windows per forward pass.")
        yield d.inference_s.family(
            "aewatch_inference_duration_seconds", "Time of one flush: forward passes and decisions."
        )
        yield d.latency_s.family(
            "aewatch_decision_latency_seconds",
            "From a window's newest reading timestamp to its decision "
            "(includes sensor clock skew).",
        )
        alerts = CounterMetricFamily(
            "aewatch_alerts", "Alert events published, by state.", labels=["state"]
        )
        alerts.add_metric(["raised"], own.alerts_raised)
        alerts.add_metric(["resolved"], own.alerts_resolved)
        yield alerts
        yield _gauge("aewatch_alerts_active", "Alerts raised and not resolved.", d.alerts_active)
        yield _counter("aewatch_published", "Messages handed to the MQTT client.", own.published)
        yield _counter(
            "aewatch_publish_failures", "Messages the MQTT client refused.", own.publish_failed
        )
        ignored = CounterMetricFamily(
            "aewatch_retained_states_ignored",
            "Retained alert states a start did not resume, by reason: unsigned, bad_signature "
            "(not provably this daemon's) or unreadable.",
            labels=["reason"],
        )
        for reason in IGNORED_REASONS:
            ignored.add_metric([reason], own.state_ignored[reason])
        yield ignored
        yield _gauge(
            "aewatch_broker_connected",
            "1 while connected to the broker.",
            1.0 if d.is_connected else 0.0,
        )
        yield _counter("aewatch_broker_connects", "Successful connections.", own.connects)
        yield _counter("aewatch_broker_disconnects", "Connections lost or closed.", own.disconnects)
        yield _connect_failures(d.connect_failures)
        yield _gauge("aewatch_queue_readings", "Readings waiting for the worker.", d.queue_readings)
        yield _gauge(
            "aewatch_queue_capacity_readings",
            "Most readings the queue holds.",
            d.queue_capacity,
        )
        reloads = CounterMetricFamily(
            "aewatch_reloads", "Reloads (SIGHUP), by result.", labels=["result"]
        )
        reloads.add_metric(["ok"], own.reloads_ok)
        reloads.add_metric(["failed"], own.reloads_failed)
        yield reloads
        yield _gauge(
            "aewatch_config_last_reload_successful",
            "1 when the last reload succeeded (or none was tried), 0 after a failed one.",
            0.0 if d.last_reload_failed else 1.0,
        )
        yield _counter(
            "aewatch_internal_errors",
            "Bugs caught and survived (please report).",
            own.internal_error + intake.internal_error,
        )
        yield from _journal_families(d)
        info = InfoMetricFamily(
            "aewatch_model", "Loaded models.", labels=["model", "version", "assets"]
        )
        threshold = GaugeMetricFamily(
            "aewatch_model_threshold",
            "Calibrated ratio of each model; an asset's threshold in force is this times its "
            "drift baseline (aewatch_asset_threshold).",
            labels=["model"],
        )
        for model in d.models:
            info.add_metric([model.name, model.version, model.pattern], {})
            threshold.add_metric([model.name], model.threshold)
        yield info
        yield threshold


def metrics_page(snapshot: Callable[[], MetricsSnapshot]) -> MetricsPage:
    """What ``/metrics`` answers, from one ``snapshot()`` per scrape: every family of
    :func:`registry_for` in the format the scraper asks for (Prometheus text or
    OpenMetrics, by its ``Accept`` header), then the per-asset gauges, written straight as
    text (:meth:`AssetGauges.exposition`)."""

    def page(accept: str) -> tuple[bytes, str]:
        d = snapshot()
        body, content_type = registry_page(registry_for(lambda: d))(accept)
        assets = d.asset_gauges.exposition(d.alerting_assets)
        if body.endswith(_EOF):  # OpenMetrics: the page ends with the EOF line
            return body[: -len(_EOF)] + assets + _EOF, content_type
        return body + assets, content_type

    return page


def registry_for(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry holding the metrics of the daemon ``snapshot`` reads but the per-asset
    gauges (:func:`metrics_page` adds those), and the process's (once: no defaults twice
    in tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(snapshot))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _journal_families(d: MetricsSnapshot) -> Iterator[Metric]:
    """The journal of QoS 1 readings (``state_dir``): its state now and what it went through."""
    journal, own = d.journal, d.own
    yield _gauge(
        "aewatch_journal_enabled",
        "1 when state_dir is set: QoS 1 readings are journaled before they are acknowledged.",
        0.0 if journal is None else 1.0,
    )
    yield _gauge(
        "aewatch_journal_records",
        "Journal records not yet released by a checkpoint: what a start now would replay.",
        0 if journal is None else journal.records,
    )
    yield _gauge(
        "aewatch_journal_bytes",
        "Bytes of the journal's segments on disk.",
        0 if journal is None else journal.bytes,
    )
    yield _counter(
        "aewatch_journal_replayed_messages",
        "MQTT messages replayed from the journal at start (taken before, not yet done with).",
        own.replayed,
    )
    yield _counter(
        "aewatch_journal_failed_messages",
        "QoS 1 messages acknowledged without a journal record because writing it failed: a "
        "crash before they are scored loses them.",
        own.journal_failed,
    )
    yield _counter(
        "aewatch_journal_dropped_records",
        "Journal records dropped unreleased because the journal passed its size bound.",
        0 if journal is None else journal.dropped,
    )
    yield _counter(
        "aewatch_checkpoints_written",
        "Checkpoints of each asset's decisions' state written, so a restart goes on from them.",
        0 if journal is None else journal.checkpoints,
    )
    yield _counter(
        "aewatch_checkpoints_failed",
        "Checkpoints that could not be written (a full or read-only state_dir): the journal "
        "keeps every record since the last one.",
        0 if journal is None else journal.checkpoint_failures,
    )
    yield _counter(
        "aewatch_messages_held",
        "QoS 1 messages that found the reading queue full and waited, unacknowledged, for room.",
        own.held,
    )


def _connect_failures(failures: ConnectFailures | None) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "aewatch_broker_connect_failures",
        "Failed attempts to connect to the broker, by reason.",
        labels=["reason"],
    )
    for reason in CONNECT_FAILURE_REASONS:
        family.add_metric([reason], failures.counts[reason] if failures else 0)
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
