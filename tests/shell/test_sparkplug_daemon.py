"""``payload: sparkplug_b`` end to end: real Sparkplug B payloads through a real Mosquitto.

The test plays an edge node (``gw1``) with one device (``well-1``, the plant's asset of
test_daemon): NBIRTH, a DBIRTH declaring four Double metrics with aliases (one of them
under an Ignition-style name that ``channels`` renames), then one DDATA per row by
alias, at QoS 0 as Sparkplug sends them. The daemon must score the device exactly as the
offline path scores the same rows, ask for a rebirth (an NCMD it publishes, decoded here)
when a sequence number is skipped or data comes before any birth, count those, and, from
a journal replayed at start, ask as soon as it is connected.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aewatch.daemon.journal import Journal
from aewatch.daemon.service import Daemon
from aewatch.daemon.sparkplug import REBIRTH_METRIC
from aewatch.daemon.sparkplug_schema import Payload
from aewatch.model.dataset import Table

from . import test_daemon
from .conftest import Broker
from .test_daemon import ASSET, Bench, Peer, _offline_events, _published_events, _wait_until

pytestmark = pytest.mark.broker

plant, bench = test_daemon.plant, test_daemon.bench  # the trained model and its fault files

NODE = "gw1"
FLOW_TAG = "Well/Flow"  # the flow meter's Ignition tag path; the model calls it flow_kg_s
DOUBLE, INT64, BOOLEAN = 10, 4, 11
WAIT_S = 60.0


@dataclass
class EdgeNode:
    """A Sparkplug B edge node with one device, publishing through ``peer`` at QoS 0."""

    peer: Peer
    group: str
    table: Table
    seq: int = 0

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{self.group}/{kind}/{NODE}" + (f"/{device}" if device else "")

    def births(self) -> None:
        """NBIRTH (bdSeq 0, the rebirth control) and the device's DBIRTH with row 0."""
        self.seq = 0
        birth = Payload(timestamp=self._ms(0), seq=self._next())
        birth.metrics.add(name="bdSeq", datatype=INT64, long_value=0)
        birth.metrics.add(name=REBIRTH_METRIC, datatype=BOOLEAN, boolean_value=False)
        self._send(self.topic("NBIRTH"), birth)
        device = Payload(timestamp=self._ms(0), seq=self._next())
        for alias, (channel, value) in enumerate(self._row(0), start=1):
            device.metrics.add(name=channel, alias=alias, datatype=DOUBLE, double_value=value)
        self._send(self.topic("DBIRTH", ASSET), device)

    def data(self, rows: range, *, skip: int = 0) -> mqtt.MQTTMessageInfo:
        """One DDATA per row, every metric by alias; ``skip`` sequence numbers left out first."""
        self.seq = (self.seq + skip) % 256
        info = None
        for row in rows:
            message = Payload(timestamp=self._ms(row), seq=self._next())
            for alias, (_, value) in enumerate(self._row(row), start=1):
                message.metrics.add(alias=alias, double_value=value)
            info = self._send(self.topic("DDATA", ASSET), message)
        assert info is not None
        return info

    def _row(self, row: int) -> list[tuple[str, float]]:
        names = [FLOW_TAG if c == "flow_kg_s" else c for c in self.table.channels]
        return list(zip(names, map(float, self.table.values[row]), strict=True))

    def _ms(self, row: int) -> int:
        return round(float(self.table.timestamps[row]) * 1000)

    def _next(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def _send(self, topic: str, message: Any) -> mqtt.MQTTMessageInfo:
        info = self.peer.client.publish(topic, message.SerializeToString(), qos=0)
        info.wait_for_publish(WAIT_S)
        return info


@pytest.fixture
def group(bench: Bench) -> str:
    return bench.prefix  # each test its own Sparkplug group


@pytest.fixture
def watcher(broker: Broker, bench: Bench, group: str) -> Iterator[Peer]:
    """Everything the daemon publishes, and the commands sent to the group's nodes."""
    peer = Peer(broker, [*bench.outputs, f"spBv1.0/{group}/NCMD/#"])
    try:
        yield peer
    finally:
        peer.close()


def sparkplug_config(bench: Bench, broker: Broker, group: str, **kw: Any) -> Any:
    source = {
        "payload": "sparkplug_b",
        "sparkplug": {
            "group": group,
            "device_asset": "{device}",
            "channels": {FLOW_TAG: "flow_kg_s"},
        },
    }
    return bench.config(broker, inputs=[source], **kw)


def rebirth_requests(watcher: Peer, group: str) -> list[list[tuple[str, bool]]]:
    """The NCMDs received for ``gw1``, each as its metrics (name, boolean value)."""
    found = watcher.on(f"spBv1.0/{group}/NCMD/{NODE}")
    for message in found:
        assert (message.qos, message.retain) == (0, False)
    return [
        [(m.name, m.boolean_value) for m in Payload.FromString(message.payload).metrics]
        for message in found
    ]


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """One sample of the daemon's /metrics, fetched over HTTP."""
    assert daemon.status_server is not None
    url = f"http://127.0.0.1:{daemon.status_server.port}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def running(config: Any, watcher: Peer) -> Any:
    return test_daemon._running(config, watcher)


def test_a_device_is_scored_as_offline_and_a_gap_asks_for_a_rebirth(
    broker: Broker, bench: Bench, group: str, watcher: Peer
) -> None:
    noise, offline = bench.plant.noise, bench.plant.noise_offline
    rows = len(noise.timestamps)
    edge = EdgeNode(Peer(broker), group, noise)
    try:
        with running(sparkplug_config(bench, broker, group), watcher) as daemon:
            edge.births()
            edge.data(range(1, rows))
            _wait_until(
                lambda: daemon.pipeline.counts.windows == len(offline.window_end),
                lambda: (
                    f"every window; {daemon.pipeline.counts.as_dict()} "
                    f"{daemon.intake.counts.as_dict()}"
                ),
                timeout_s=WAIT_S,
            )
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 2, "raised and resolved")
            assert rebirth_requests(watcher, group) == []
            edge.data(range(rows - 3, rows), skip=4)  # four messages lost on the way
            _wait_until(lambda: rebirth_requests(watcher, group), "a rebirth request")
            # The request goes out on the first message after the gap: wait for the others.
            _wait_until(
                lambda: daemon.intake.counts.readings == rows * len(noise.channels) + 3 * 4,
                lambda: f"every reading taken; intake {daemon.intake.counts.as_dict()}",
            )
            seq_gaps = metric(daemon, "aewatch_sparkplug_events_total", event="seq_gap")
            births = metric(daemon, "aewatch_sparkplug_events_total", event="birth")
            requests = metric(daemon, "aewatch_sparkplug_events_total", event="rebirth_request")
    finally:
        edge.peer.close()

    assert _published_events(watcher.alerts(bench.prefix)) == _offline_events(offline.events)
    assert {alert["asset"] for alert in watcher.alerts(bench.prefix)} == {ASSET}
    assert daemon.intake.counts.readings == rows * len(noise.channels) + 3 * 4
    assert rebirth_requests(watcher, group) == [[(REBIRTH_METRIC, True)]]
    assert (births, seq_gaps, requests) == (2, 1, 1)
    errors = {
        k: v
        for k, v in daemon.intake.counts.as_dict().items()
        if k.startswith("decode_error") and v
    }
    assert errors == {}


def test_data_before_any_birth_is_counted_and_the_rebirth_it_asks_for_is_read(
    broker: Broker, bench: Bench, group: str, watcher: Peer
) -> None:
    """The daemon (re)started while the node kept sending: DDATA by alias it cannot read.
    It counts them (no_birth) and asks once; the node answers with its births, and the
    data that follows is scored."""
    noise = bench.plant.noise
    edge = EdgeNode(Peer(broker), group, noise)
    try:
        with running(sparkplug_config(bench, broker, group), watcher) as daemon:
            edge.seq = 17  # the node's session is older than the daemon's
            edge.data(range(0, 5))
            _wait_until(lambda: rebirth_requests(watcher, group), "a rebirth request")
            _wait_until(lambda: daemon.intake.counts.decode_errors["no_birth"] == 5, "5 no_birth")
            no_birth = metric(daemon, "aewatch_decode_errors_total", reason="no_birth")
            edge.births()  # what an edge node does on Node Control/Rebirth
            edge.data(range(1, 60))
            _wait_until(
                lambda: daemon.pipeline.counts.windows == 60 - test_daemon.WINDOW_LEN + 1,
                lambda: f"the windows of 60 rows; {daemon.pipeline.counts.as_dict()}",
                timeout_s=WAIT_S,
            )
    finally:
        edge.peer.close()
    assert no_birth == 5
    assert rebirth_requests(watcher, group) == [[(REBIRTH_METRIC, True)]]  # once per 30 s
    assert daemon.intake.counts.readings == 60 * len(noise.channels)


def test_a_replayed_journal_without_births_asks_for_a_rebirth_once_connected(
    broker: Broker, bench: Bench, group: str, watcher: Peer
) -> None:
    """QoS 1 DDATA left in the journal by an earlier run is replayed before the daemon
    connects: it cannot be read without the births, so it is counted and the rebirth
    request it causes goes out as soon as the daemon is connected."""
    state_dir = bench.folder / "state"
    state_dir.mkdir(mode=0o700)
    edge = EdgeNode(Peer(broker), group, bench.plant.noise)
    message = Payload(timestamp=edge._ms(0), seq=9)
    message.metrics.add(alias=1, double_value=1.0)
    journal = Journal(state_dir / "journal")
    journal.append(
        [(edge.topic("DDATA", ASSET), message.SerializeToString())], arrival_s=time.time()
    )
    journal.close()
    try:
        with running(
            sparkplug_config(bench, broker, group, state_dir=state_dir), watcher
        ) as daemon:
            _wait_until(lambda: rebirth_requests(watcher, group), "a rebirth request")
    finally:
        edge.peer.close()
    assert daemon.counts.replayed == 1
    assert daemon.intake.counts.decode_errors["no_birth"] == 1
    assert rebirth_requests(watcher, group) == [[(REBIRTH_METRIC, True)]]
