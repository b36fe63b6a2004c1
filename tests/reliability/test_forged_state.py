"""Retained alert states planted by another client are not resumed; the daemon's own are.

A real mosquitto and the daemon in-process, with ``state_dir`` set (so its state key is
made there). Another client publishes retained ``firing`` states on the daemon's state
topics, one unsigned and one signed with another key: a start resumes neither (counted,
logged once per asset, exported), and normal readings afterwards resolve nothing. The
daemon's own state, from an alert it raised before a restart, is resumed under its id.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.core import messages
from aewatch.core.alerts import AlertEvent
from aewatch.daemon.service import Daemon
from aewatch.daemon.state_key import StateKey

from ..shell.conftest import Broker
from .conftest import WINDOW_LEN
from .figures import record
from .inprocess import T0, TIMEOUT_S, running, simulated_rows, wait_until, write_config

pytestmark = [pytest.mark.reliability, pytest.mark.broker]

PREFIX = "trust"


class Watcher:
    """A test-side client: publishes readings and planted states, collects alerts."""

    def __init__(self, broker: Broker) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/alerts/#", qos=1)
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        self.client = client
        assert ready.wait(30), "the test's client did not connect"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.alerts.append(json.loads(message.payload))

    def plant(self, asset: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``asset``'s state topic, as the daemon would."""
        topic = f"{PREFIX}/state/{asset}"
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(TIMEOUT_S)

    def send(self, asset: str, rows: list[tuple[float, dict[str, float]]]) -> None:
        infos = [
            self.client.publish(
                f"{PREFIX}/in/{asset}/{channel}", json.dumps({"ts": ts, "value": value}), qos=1
            )
            for ts, values in rows
            for channel, value in values.items()
        ]
        for info in infos:
            info.wait_for_publish(TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_planted_firing_state_is_not_resumed(
    broker: Broker, well_bundle: Path, tmp_path: Path, daemon_log: io.StringIO
) -> None:
    """Unsigned, or signed with another key: ignored, counted, logged once; nothing to resolve."""
    config = write_config(tmp_path, broker, well_bundle, prefix=PREFIX, client_id="aewatch-trust")
    watcher = Watcher(broker)
    phantom = _firing_state("well-1")
    try:
        watcher.plant("well-1", phantom)  # "signature": null
        watcher.plant("well-2", StateKey(b"k" * 32, source="the forger").sign(phantom))
        with running(config) as daemon:
            assert daemon.counts.resumed_alerts == 0
            assert daemon.outputs.active_alerts() == 0
            assert daemon.counts.state_ignored["unsigned"] == 1
            assert daemon.counts.state_ignored["bad_signature"] == 1
            metrics = _metrics(daemon)
            assert 'aewatch_retained_states_ignored_total{reason="unsigned"} 1.0' in metrics
            assert 'aewatch_retained_states_ignored_total{reason="bad_signature"} 1.0' in metrics
            normal = simulated_rows(60, seed=2)
            watcher.send("well-1", normal)  # a resumed phantom would be resolved by these
            wait_until(
                lambda: daemon.pipeline.counts.windows == len(normal) - WINDOW_LEN + 1,
                lambda: f"every window scored; pipeline {daemon.pipeline.counts.as_dict()}",
            )
            time.sleep(1.0)  # an alert published would be here by now
    finally:
        watcher.close()
    assert watcher.alerts == []
    log = daemon_log.getvalue()
    for asset, why in (("well-1", "not signed"), ("well-2", "its signature does not verify")):
        assert log.count(f"ignoring the retained state on {PREFIX}/state/{asset}: {why}") == 1
    record(
        "forged retained 'firing' states (one unsigned, one signed with another key)",
        "both ignored, counted and logged once; no phantom alert",
        states_planted=2,
        resumed=0,
        alerts_published=len(watcher.alerts),
        windows_scored=len(normal) - WINDOW_LEN + 1,
    )


def test_the_daemon_s_own_state_is_resumed_after_a_restart(
    broker: Broker, well_bundle: Path, tmp_path: Path, daemon_log: io.StringIO
) -> None:
    """An alert raised before a restart resumes under its id; a planted one beside it does not."""
    config = write_config(tmp_path, broker, well_bundle, prefix=PREFIX, client_id="aewatch-trust")
    watcher = Watcher(broker)
    try:
        with running(config):
            # The fault lasts to row 198 of 200 (10 s each), too few normal rows after it
            # to resolve the alert when the journal replays them after the restart.
            watcher.send(
                "well-1", simulated_rows(200, seed=2, faults="noise@0.15+0.40:vibration_mm_s")
            )
            wait_until(lambda: len(watcher.alerts) >= 1, "an alert raised")
        (raised,) = watcher.alerts
        assert raised["state"] == "raised"
        watcher.plant("well-2", _firing_state("well-2"))
        with running(config) as second:
            assert second.counts.resumed_alerts == 1
            assert second.outputs.alerting_assets() == {"well-1"}
            assert second.counts.state_ignored["unsigned"] == 1
    finally:
        watcher.close()
    assert f"ignoring the retained state on {PREFIX}/state/well-2: not signed" in (
        daemon_log.getvalue()
    )
    assert "resumed 1 open alerts" in daemon_log.getvalue()
    key = (tmp_path / "state" / "state-key").read_text().strip()
    assert key not in daemon_log.getvalue()


def _firing_state(asset: str) -> bytes:
    """A well-formed ``firing`` state as the daemon publishes it, but unsigned."""
    event = AlertEvent(
        f"{asset}@phantom", asset, "raised", T0, T0, None, 9.0, 1.0, (("vibration_mm_s", 1.0),)
    )
    return messages.encode(messages.state_message(event, model="well", model_version="x"))


def _metrics(daemon: Daemon) -> str:
    assert daemon.status_server is not None
    url = f"http://127.0.0.1:{daemon.status_server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
