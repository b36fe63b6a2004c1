"""Clocks that jump (issue 13, item 11): ``aewatch run`` against a real Mosquitto.

The daemon runs as a subprocess with the default ``limits.clock_tolerance_s`` (600 s), fed
one asset's readings (1 s period, one JSON message per channel, QoS 1). A device clock set
back one hour is followed: the asset is scored on, not dropped as late for an hour, and the
step is logged with its size. One row stamped "now" inside a backfill is dropped as
``outlier`` readings and the rows after it are scored as if it had never come.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import paho.mqtt.client as mqtt
import pytest

from . import test_operate as operate
from .conftest import Broker
from .test_operate import (
    ALIGNED,
    CHANNELS,
    MESSAGES,
    WINDOWS,
    Bundles,
    Launch,
    _connected_client,
    _drops,
    _is_settled,
)

pytestmark = pytest.mark.broker

# The daemon-as-a-subprocess fixtures of test_operate, shared here.
bundles, launch, prefix = operate.bundles, operate.launch, operate.prefix

ASSET = "w1"
WINDOW_LEN = 10  # the trained bundle's: n consecutive rows make n - 9 windows
T0 = float(int(time.time()) - 86_400)  # a day ago: a backfill, never ahead of the daemon
HOUR_S = 3600.0
LATE = 'aewatch_readings_dropped_total{reason="late"}'
OUTLIER = 'aewatch_readings_dropped_total{reason="outlier"}'
RESTARTS = "aewatch_window_restarts_total"


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    client = _connected_client(broker)
    yield client
    client.loop_stop()
    client.disconnect()


def _publish(
    client: mqtt.Client,
    topic_prefix: str,
    rows: Sequence[tuple[float, ...]],
    timestamps: Sequence[float],
) -> int:
    """Publish each row at its timestamp, one QoS 1 message per channel; return how many."""
    infos = []
    for ts, row in zip(timestamps, rows, strict=True):
        for channel, value in zip(CHANNELS, row, strict=True):
            payload = json.dumps({"ts": ts, "value": value})
            infos.append(client.publish(f"{topic_prefix}/in/{ASSET}/{channel}", payload, qos=1))
    for info in infos:
        info.wait_for_publish(operate.WAIT_S)
        assert info.is_published(), "the broker did not acknowledge a reading"
    return len(infos)


def test_a_clock_set_back_an_hour_is_followed_and_logged(
    launch: Launch, bundles: Bundles, publisher: mqtt.Client, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    before, after = 200, 200
    sent = _publish(publisher, prefix, bundles.rows[:before], [T0 + i for i in range(before)])
    service.wait_for(
        "the rows before the step scored",
        lambda m: _is_settled(m, sent) and m[WINDOWS] == before - WINDOW_LEN + 1,
    )
    # The device's clock goes back one hour: its next rows are dated an hour before the last.
    stepped = [T0 + before + i - HOUR_S for i in range(after)]
    sent += _publish(publisher, prefix, bundles.rows[before : before + after], stepped)
    expected = (before - WINDOW_LEN + 1) + (after - WINDOW_LEN + 1)  # a new window at the step
    samples = service.wait_for(
        f"{expected} windows scored",
        lambda m: _is_settled(m, sent) and m[WINDOWS] >= expected,
        timeout_s=60.0,
    )
    assert samples[WINDOWS] == expected
    assert samples[ALIGNED] == sent == samples[MESSAGES]  # the old rule: 800 late
    assert samples[LATE] == samples[OUTLIER] == _drops(samples) == 0
    assert samples[RESTARTS] == 1
    steps = [line for line in service.log_text().splitlines() if "clock stepped" in line]
    assert len(steps) == 1, service.log_text()
    assert "WARNING" in steps[0]
    assert f"asset {ASSET}: its clock stepped back by 3600 s, to " in steps[0]
    assert steps[0].endswith("; following the new time")


def test_one_row_stamped_now_inside_a_backfill_is_dropped_as_outliers(
    launch: Launch, bundles: Bundles, publisher: mqtt.Client, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    rows = bundles.rows[:200]
    sent = _publish(publisher, prefix, rows[:100], [T0 + i for i in range(100)])
    # A publisher stamps one row with the wall clock (a day ahead of the backfill)...
    sent += _publish(publisher, prefix, [rows[100]], [float(int(time.time()))])
    # ...and the backfill goes on: none of it is late, the stray readings are dropped.
    sent += _publish(publisher, prefix, rows[100:], [T0 + i for i in range(100, 200)])
    expected = len(rows) - WINDOW_LEN + 1
    samples = service.wait_for(
        f"{expected} windows scored and the stray readings counted",
        lambda m: _is_settled(m, sent) and m[WINDOWS] >= expected,
        timeout_s=60.0,
    )
    assert samples[WINDOWS] == expected  # every row of the backfill scored
    assert samples[OUTLIER] == len(CHANNELS) == _drops(samples)
    assert samples[LATE] == samples[RESTARTS] == 0  # the old rule: every later reading late
    assert samples[ALIGNED] == sent - len(CHANNELS)
    assert "clock stepped" not in service.log_text()
