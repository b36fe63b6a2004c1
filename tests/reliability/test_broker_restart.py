"""A broker killed and restarted mid-stream: the daemon reconnects, resubscribes and scores
on, alert for alert as offline scoring, losing no reading.

A real mosquitto restarted without persistence (sessions and retained messages gone) and
the daemon in-process, the plant and helpers of ``tests/shell/test_daemon.py``.
"""

from __future__ import annotations

import pytest

from ..shell.conftest import Broker
from ..shell.test_daemon import (
    Bench,
    Peer,
    _offline_events,
    _published_events,
    _rows,
    _running,
    _wait_scored,
    _wait_until,
    bench,  # noqa: F401  (the fixtures, for this test too)
    plant,  # noqa: F401
)
from .figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.broker]


def test_broker_restart_mid_stream(broker: Broker, bench: Bench) -> None:  # noqa: F811
    """The daemon reconnects, resubscribes and scores on as if the broker never went away."""
    noise, offline = bench.plant.noise, bench.plant.noise_offline
    watcher = Peer(broker, bench.outputs)
    publisher = Peer(broker)
    try:
        with _running(bench.config(broker), watcher) as daemon:
            publisher.publish(_rows(noise, 0, 200), bench.input_template)  # raised at row 146
            _wait_scored(daemon, 200)
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 1, "the alert raised")
            windows_before = daemon.pipeline.counts.windows

            since = len(watcher.received)
            broker.restart()  # no persistence: sessions and retained messages are gone
            _wait_until(lambda: "online" in watcher.statuses(bench.prefix, since), "online again")
            _wait_until(publisher.is_ready.is_set, "the publisher to reconnect")
            publisher.publish(_rows(noise, 200), bench.input_template)
            _wait_scored(daemon, len(noise.timestamps))
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 2, "the alert resolved")
    finally:
        publisher.close()
        watcher.close()

    assert daemon.counts.connects >= 2 and daemon.counts.disconnects >= 1
    assert daemon.pipeline.counts.windows == len(offline.window_end) > windows_before
    assert daemon.pipeline.counts.late == daemon.pipeline.counts.gaps == 0
    assert _published_events(watcher.alerts(bench.prefix)) == _offline_events(offline.events)
    record(
        "broker killed and restarted mid-stream (no persistence)",
        "reconnected and resubscribed; every reading scored; alerts as offline",
        rows_published=len(noise.timestamps),
        readings_received=daemon.intake.counts.readings,
        aligned=daemon.pipeline.counts.aligned,
        windows_scored=daemon.pipeline.counts.windows,
        windows_offline=len(offline.window_end),
        alert_events=len(watcher.alerts(bench.prefix)),
        alert_events_offline=len(offline.events),
        connects=daemon.counts.connects,
    )
