"""Readings of a channel the asset's model does not have: counted, and said once in the log.

``aewatch run`` against a real Mosquitto (the daemon-as-a-subprocess fixtures of
``test_operate``): an asset's normal channels are scored while a channel the model never
saw is dropped as ``unknown_channel``, with one WARNING naming the asset, the channel and
the channels the model has, however many of its readings come. A channel published more
often than the model's period is said once in the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pytest

from . import test_operate as operate
from .conftest import Broker
from .test_operate import CHANNELS, WINDOWS, Bundles, Launch, _connected_client, _is_settled

pytestmark = pytest.mark.broker

bundles, launch, prefix = operate.bundles, operate.launch, operate.prefix

UNKNOWN = 'aewatch_readings_dropped_total{reason="unknown_channel"}'
LATE = 'aewatch_readings_dropped_total{reason="late"}'
T0 = float(int(time.time()) - 86_400)


def test_an_unknown_channel_is_dropped_counted_and_logged_once(
    launch: Launch, bundles: Bundles, broker: Broker, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    sent = _publish(
        broker,
        (
            (f"{prefix}/in/w1/{channel}", T0 + i, float(value))
            for i, row in enumerate(bundles.rows[:50])
            for channel, value in (*zip(CHANNELS, row, strict=True), ("bogus_temp", 1.0))
        ),
    )
    samples = service.wait_for(
        "every reading accounted for",
        lambda m: _is_settled(m, sent) and m[WINDOWS] == 50 - 10 + 1,
    )
    assert samples[UNKNOWN] == 50
    lines = [line for line in service.log_text().splitlines() if "bogus_temp" in line]
    assert len(lines) == 1, service.log_text()[-3000:]
    assert "WARNING" in lines[0]
    assert "asset w1: readings of channel 'bogus_temp' are dropped: model " in lines[0]
    assert f"(it has {', '.join(CHANNELS)})" in lines[0]


def test_a_channel_published_faster_than_the_period_is_logged_once(
    launch: Launch, bundles: Bundles, broker: Broker, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    first = CHANNELS[0]
    topic = f"{prefix}/in/w1/"
    messages: list[tuple[str, float, float]] = []
    for i, row in enumerate(bundles.rows[:50]):
        messages += [(topic + c, T0 + i, float(v)) for c, v in zip(CHANNELS, row, strict=True)]
        messages.append((topic + first, T0 + i + 0.4, float(row[0]) + 0.01))  # its slot again
    sent = _publish(broker, messages)
    service.wait_for("every reading accounted for", lambda m: _is_settled(m, sent))
    assert service.metrics()[LATE] > 0
    lines = [line for line in service.log_text().splitlines() if "more often" in line]
    assert len(lines) == 1, service.log_text()[-3000:]
    assert "WARNING" in lines[0]
    assert f"asset w1: channel '{first}' is published more often than model " in lines[0]


def _publish(broker: Broker, messages: Iterable[tuple[str, float, float]]) -> int:
    """Publish ``(topic, ts, value)`` readings at QoS 1 and wait until each is out; how many."""
    client = _connected_client(broker)
    try:
        infos = [
            client.publish(topic, json.dumps({"ts": ts, "value": value}), qos=1)
            for topic, ts, value in messages
        ]
        for info in infos:
            info.wait_for_publish(operate.WAIT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(infos)
