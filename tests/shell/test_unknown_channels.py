"""Readings of a channel the asset's model does not have: counted, and said once in the log.

``aewatch run`` against a real Mosquitto (the daemon-as-a-subprocess fixtures of
``test_operate``): an asset's normal channels are scored while a channel the model never
saw is dropped as ``unknown_channel``, with one WARNING naming the asset, the channel and
the channels the model has, however many of its readings come.
"""

from __future__ import annotations

import json
import time

import pytest

from . import test_operate as operate
from .conftest import Broker
from .test_operate import CHANNELS, WINDOWS, Bundles, Launch, _connected_client, _is_settled

pytestmark = pytest.mark.broker

bundles, launch, prefix = operate.bundles, operate.launch, operate.prefix

UNKNOWN = 'aewatch_readings_dropped_total{reason="unknown_channel"}'
T0 = float(int(time.time()) - 86_400)


def test_an_unknown_channel_is_dropped_counted_and_logged_once(
    launch: Launch, bundles: Bundles, broker: Broker, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    client = _connected_client(broker)
    try:
        infos = []
        for i, row in enumerate(bundles.rows[:50]):
            for channel, value in (*zip(CHANNELS, row, strict=True), ("bogus_temp", 1.0)):
                payload = json.dumps({"ts": T0 + i, "value": float(value)})
                infos.append(client.publish(f"{prefix}/in/w1/{channel}", payload, qos=1))
        for info in infos:
            info.wait_for_publish(operate.WAIT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    samples = service.wait_for(
        "every reading accounted for",
        lambda m: _is_settled(m, len(infos)) and m[WINDOWS] == 50 - 10 + 1,
    )
    assert samples[UNKNOWN] == 50
    lines = [line for line in service.log_text().splitlines() if "bogus_temp" in line]
    assert len(lines) == 1, service.log_text()[-3000:]
    assert "WARNING" in lines[0]
    assert "asset w1: readings of channel 'bogus_temp' are dropped: model " in lines[0]
    assert f"(it has {', '.join(CHANNELS)})" in lines[0]


LATE = 'aewatch_readings_dropped_total{reason="late"}'


def test_a_channel_published_faster_than_the_period_is_logged_once(
    launch: Launch, bundles: Bundles, broker: Broker, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    client = _connected_client(broker)
    try:
        infos = []
        for i, row in enumerate(bundles.rows[:50]):
            for channel, value in zip(CHANNELS, row, strict=True):
                payload = json.dumps({"ts": T0 + i, "value": float(value)})
                infos.append(client.publish(f"{prefix}/in/w1/{channel}", payload, qos=1))
            again = json.dumps({"ts": T0 + i + 0.4, "value": float(row[0])})  # same slot
            infos.append(client.publish(f"{prefix}/in/w1/{CHANNELS[0]}", again, qos=1))
        for info in infos:
            info.wait_for_publish(operate.WAIT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    service.wait_for("every reading accounted for", lambda m: _is_settled(m, len(infos)))
    assert service.metrics()[LATE] > 0
    lines = [line for line in service.log_text().splitlines() if "more often" in line]
    assert len(lines) == 1, service.log_text()[-3000:]
    assert "WARNING" in lines[0]
    assert f"asset w1: channel '{CHANNELS[0]}' is published more often than model " in lines[0]
