"""``aewatch replay`` against a real Mosquitto: every row arrives, in order, as JSON."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aewatch.cli import main

from .conftest import Broker

pytestmark = pytest.mark.broker


def _collect(
    broker: Broker, topic: str
) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], threading.Event]:
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, msg: got.append(msg)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert ready.wait(10), "subscription not acknowledged"
    return client, got, ready


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "well-7.csv"
    rows = "".join(f"2026-01-01T00:00:{i:02d}Z,{i}.5,{-i}\n" for i in range(20))
    path.write_text("timestamp,flow,whp\n" + rows)
    return path


@pytest.mark.parametrize("per", ["channel", "row"])
def test_replay_publishes_every_row(broker: Broker, tmp_path: Path, per: str) -> None:
    template = f"test/{per}/{{asset}}" + ("/{channel}" if per == "channel" else "")
    client, got, _ = _collect(broker, f"test/{per}/#")
    try:
        assert (
            main(
                [
                    "replay",
                    str(_csv(tmp_path)),
                    "--broker",
                    broker.url,
                    "--topic-template",
                    template,
                    "--per",
                    per,
                ]
            )
            == 0
        )
        expected = 40 if per == "channel" else 20
        for _ in range(100):
            if len(got) >= expected:
                break
            threading.Event().wait(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert len(got) == expected
    first = json.loads(got[0].payload)
    if per == "channel":
        assert got[0].topic == "test/channel/well-7/flow"
        assert first == {"ts": 1767225600.0, "value": 0.5}
    else:
        assert got[0].topic == "test/row/well-7"
        assert first == {"ts": 1767225600.0, "values": {"flow": 0.5, "whp": 0.0}}
    stamps = [json.loads(m.payload)["ts"] for m in got]
    assert stamps == sorted(stamps)


def test_unreachable_broker_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(_csv(tmp_path)), "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "cannot reach MQTT broker" in capsys.readouterr().err
