"""The metrics collector reads one snapshot, never the daemon: a snapshot made by hand
scrapes as the daemon's would."""

from __future__ import annotations

from prometheus_client import generate_latest

from aewatch.core.pipeline import PipelineCounts
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.intake import IntakeCounts
from aewatch.daemon.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS_S,
    Buckets,
    JournalFigures,
    MetricsSnapshot,
    ModelFigures,
    registry_for,
)
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.sparkplug_input import SparkplugEvents


def _snapshot(**changes: object) -> MetricsSnapshot:
    latency = Buckets(LATENCY_BUCKETS_S)
    latency.observe([0.002, 0.004, 0.3])
    fields: dict[str, object] = {
        "intake": IntakeCounts(messages=7, readings=28, unknown_topic=1),
        "pipeline": PipelineCounts(aligned=28, windows=19),
        "own": ServiceCounts(alerts_raised=2, alerts_resolved=1, connects=1),
        "sparkplug_events": SparkplugEvents(birth=3),
        "asset_errors": [("well-1", "publish", 4)],
        "assets_tracked": 1,
        "assets_warming": 0,
        "batch_windows": Buckets(BATCH_BUCKETS),
        "inference_s": Buckets(LATENCY_BUCKETS_S),
        "latency_s": latency,
        "alerts_active": 1,
        "is_connected": True,
        "connect_failures": None,
        "queue_readings": 5,
        "queue_capacity": 100_000,
        "last_reload_failed": False,
        "journal": None,
        "models": [ModelFigures("well", "abc123", "well-*", 2.5)],
        "asset_gauges": AssetGauges(),
        "alerting_assets": frozenset({"well-1"}),
    }
    fields.update(changes)
    return MetricsSnapshot(**fields)  # type: ignore[arg-type]


def _scrape(snapshot: MetricsSnapshot) -> str:
    return generate_latest(registry_for(lambda: snapshot)).decode()


def test_a_snapshot_scrapes_as_the_daemon_s_counters() -> None:
    text = _scrape(_snapshot())
    for line in (
        "aewatch_messages_received_total 7.0",
        'aewatch_messages_dropped_total{reason="unknown_topic"} 1.0',
        'aewatch_messages_dropped_total{reason="no_model"} 0.0',  # not counted yet: 0
        "aewatch_windows_scored_total 19.0",
        'aewatch_alerts_total{state="raised"} 2.0',
        "aewatch_alerts_active 1.0",
        'aewatch_asset_errors_total{asset="well-1",stage="publish"} 4.0',
        'aewatch_sparkplug_events_total{event="birth"} 3.0',
        'aewatch_sparkplug_events_total{event="death"} 0.0',
        "aewatch_broker_connected 1.0",
        "aewatch_decision_latency_seconds_count 3.0",
        'aewatch_model_info{assets="well-*",model="well",version="abc123"} 1.0',
        'aewatch_model_threshold{model="well"} 2.5',
        "aewatch_journal_enabled 0.0",
        "aewatch_queue_readings 5.0",
    ):
        assert line in text, line


def test_the_journal_shows_when_it_is_kept() -> None:
    text = _scrape(_snapshot(journal=JournalFigures(records=3, bytes=4096, dropped=1)))
    for line in (
        "aewatch_journal_enabled 1.0",
        "aewatch_journal_records 3.0",
        "aewatch_journal_bytes 4096.0",
        "aewatch_journal_dropped_records_total 1.0",
    ):
        assert line in text, line
