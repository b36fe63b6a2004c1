"""Outputs: a flush's alert events onto MQTT, through a client handed in (no broker).

A real pipeline scores one asset's normal rows, then a fault, and :class:`Outputs`
publishes what it decided through a client that records each publish. The broker tests
in ``test_daemon.py`` hold the same topics and payloads to what a subscriber receives.
"""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt
import pytest

from aewatch.config import Config, OutputConfig
from aewatch.core import messages
from aewatch.core.decode import Reading
from aewatch.core.pipeline import Pipeline, Scored
from aewatch.daemon.asset_errors import AssetErrors
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.mqtt import Will, make_client
from aewatch.daemon.outputs import Outputs
from aewatch.daemon.service import Daemon
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.state_key import StateKey
from aewatch.model.bundle import ModelBundle
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from tests.shell.test_asset_gauges import CHANNELS, _table

KEY = StateKey(b"k" * 32, source="a test")


class RecordingClient:
    """paho's ``publish`` as :class:`Outputs` calls it: records, and answers ``rc`` (or
    refuses the topics in ``refused``). Nothing is acknowledged until :meth:`ack_all`."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.refused = refused

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        info = mqtt.MQTTMessageInfo(len(self.infos) + 1)
        if topic in self.refused:
            info.rc = mqtt.MQTT_ERR_QUEUE_SIZE
        else:
            self.sent.append((topic, payload, qos, retain))
        self.infos.append(info)
        return info

    def ack_all(self) -> None:
        for info in self.infos:
            info._set_as_published()  # what paho's network thread does on PUBACK


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model, window 10, hop 1 (trains in well under a second)."""
    settings = TrainSettings(fit=FitSettings(show_progress=False))
    return train_bundle([_table(2000, 0)], settings).bundle


def _scored(bundle: ModelBundle, assets: tuple[str, ...]) -> list[Scored[ServedModel]]:
    """One flush of ``assets``' 80 rows, the last 40 with channel b far off: a raise."""
    pipe = Pipeline(Fleet([ServedModel.from_bundle(bundle, pattern="*", name="well")]))
    rows = _table(80, 1)
    values = rows.values.copy()
    values[40:, 1] += 5.0
    pipe.ingest(
        Reading(asset, channel, float(rows.timestamps[i]), float(values[i, j]))
        for asset in assets
        for i in range(len(values))
        for j, channel in enumerate(CHANNELS)
    )
    return pipe.flush()


def _outputs(client: RecordingClient, counts: ServiceCounts, errors: AssetErrors) -> Outputs:
    return Outputs(
        client,
        OutputConfig(),
        counts=counts,
        asset_errors=errors,
        asset_gauges=AssetGauges(),
        state_key=KEY,
        track_sent=True,
    )


def test_a_raise_goes_out_as_an_alert_and_a_signed_retained_state(bundle: ModelBundle) -> None:
    results = _scored(bundle, ("well-1",))
    (event,) = [e for scored in results for e in scored.events]
    assert event.state == "raised"
    client, counts = RecordingClient(), ServiceCounts()
    outputs = _outputs(client, counts, AssetErrors(logging.getLogger("test")))
    outputs.publish(results)
    config = OutputConfig()
    (alert_topic, alert, qos, retained), (state_topic, state, _, state_retained) = client.sent
    assert (alert_topic, qos, retained) == (config.alert_topic_for("well-1"), config.qos, False)
    assert json.loads(alert)["alert_id"] == event.alert_id
    assert (state_topic, state_retained) == (config.state_topic_for("well-1"), True)
    assert KEY.refusal(state) is None  # signed with the daemon's key
    assert (counts.alerts_raised, counts.published, counts.publish_failed) == (1, 2, 0)
    assert (outputs.active_alerts(), outputs.alerting_assets()) == (1, frozenset({"well-1"}))


def test_the_outputs_wait_for_the_broker_before_a_record_goes(bundle: ModelBundle) -> None:
    client = RecordingClient()
    outputs = _outputs(client, ServiceCounts(), AssetErrors(logging.getLogger("test")))
    outputs.publish(_scored(bundle, ("well-1",)))
    assert len(outputs.unacknowledged(hand_over=False)) == 2  # kept: not yet acknowledged
    handed = outputs.unacknowledged(hand_over=True)
    assert len(handed) == 2 and outputs.unacknowledged(hand_over=False) == []
    client.ack_all()
    assert all(info.is_published() for info in handed)


def test_a_refused_publish_stays_with_its_asset(bundle: ModelBundle) -> None:
    config = OutputConfig()
    client = RecordingClient(refused=frozenset({config.alert_topic_for("well-1")}))
    counts, errors = ServiceCounts(), AssetErrors(logging.getLogger("test"))
    outputs = _outputs(client, counts, errors)
    outputs.publish(_scored(bundle, ("well-1", "well-2")))
    topics = [topic for topic, *_ in client.sent]
    assert topics == [
        config.state_topic_for("well-1"),  # its state still goes
        config.alert_topic_for("well-2"),
        config.state_topic_for("well-2"),
    ]
    assert (counts.published, counts.publish_failed) == (3, 1)
    assert [(a, stage, n) for a, stage, n in errors.counts() if n] == [("well-1", "publish", 1)]
    assert outputs.unacknowledged(hand_over=False) == client.infos[1:]


def test_the_daemon_publishes_through_the_client_it_is_handed() -> None:
    config = Config.model_validate(
        {
            "broker": {"url": "mqtt://127.0.0.1:1", "client_id": "handed-in"},
            "inputs": [{"topic": "plant/{asset}/{channel}", "payload": "json"}],
            "models": [{"path": "unused.aew"}],
            "metrics": {"port": 0},
        }
    )
    will = Will(config.outputs.status_topic_name, messages.STATUS_OFFLINE, qos=1)
    client = make_client(config.broker, will=will, manual_ack=True)
    daemon = Daemon(config, fleet=Fleet([]), client=client)
    assert daemon.client is client and daemon.outputs.client is client
    assert client.on_message == daemon._on_message  # the daemon's callbacks, on it
