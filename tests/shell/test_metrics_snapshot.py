"""The metrics collector reads one snapshot, never the daemon: a snapshot made by hand
scrapes as the daemon's would."""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families

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
    metrics_page,
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


def _scrape(snapshot: MetricsSnapshot, accept: str = "") -> str:
    return metrics_page(lambda: snapshot)(accept)[0].decode()


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
    figures = JournalFigures(records=3, bytes=4096, dropped=1, checkpoints=5, checkpoint_failures=2)
    text = _scrape(_snapshot(journal=figures))
    for line in (
        "aewatch_journal_enabled 1.0",
        "aewatch_journal_records 3.0",
        "aewatch_journal_bytes 4096.0",
        "aewatch_journal_dropped_records_total 1.0",
        "aewatch_checkpoints_written_total 5.0",
        "aewatch_checkpoints_failed_total 2.0",
    ):
        assert line in text, line


OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.mark.parametrize("accept", ["", "text/plain;version=0.0.4", OPENMETRICS])
def test_the_page_holds_the_asset_gauges_in_the_format_asked_for(accept: str) -> None:
    gauges = AssetGauges()
    # Odd names: a quote, a backslash and a newline must come back as they went in.
    odd = 'site "7"\\pump\nB'
    gauges._newest = {"well-1": ("well", 0.5, 2.0, 0.25), odd: ("pump", 1e-7, 3e6, float("inf"))}
    body, content_type = metrics_page(lambda: _snapshot(asset_gauges=gauges))(accept)
    text = body.decode()
    is_openmetrics = accept == OPENMETRICS
    wanted = "application/openmetrics-text" if is_openmetrics else "text/plain"
    assert content_type.startswith(wanted)
    parse = openmetrics if is_openmetrics else text_string_to_metric_families
    families = {f.name: f for f in parse(text)}  # the whole page parses
    assert text.endswith("# EOF\n") == is_openmetrics and text.count("# EOF") == is_openmetrics
    shown = {
        name: {(s.labels["asset"], s.labels["model"]): s.value for s in families[name].samples}
        for name in (
            "aewatch_asset_score",
            "aewatch_asset_threshold",
            "aewatch_asset_severity",
            "aewatch_asset_alert_active",
        )
    }
    assert all(families[name].type == "gauge" for name in shown)
    assert shown == {
        "aewatch_asset_score": {("well-1", "well"): 0.5, (odd, "pump"): 1e-7},
        "aewatch_asset_threshold": {("well-1", "well"): 2.0, (odd, "pump"): 3e6},
        "aewatch_asset_severity": {("well-1", "well"): 0.25, (odd, "pump"): float("inf")},
        # well-1 has an open alert in the snapshot
        "aewatch_asset_alert_active": {("well-1", "well"): 1.0, (odd, "pump"): 0.0},
    }
    assert "aewatch_messages_received" in families  # and the rest of the page with them
