"""The journal under load and with assets gone quiet: a real mosquitto, an in-process daemon.

A full queue must not stop the flow: QoS 1 messages it has no room for wait
unacknowledged and are taken once there is room (MQTT 3.1.1, where mosquitto sends a
client at most 20 unacknowledged messages, so dropping them unacknowledged would stop all
delivery). And an asset that goes quiet must not hold every journal record behind its
last one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.daemon.journal import Journal
from aewatch.daemon.service import Daemon

from ..shell.conftest import Broker
from .conftest import WINDOW_LEN
from .figures import record
from .inprocess import TIMEOUT_S, running, simulated_rows, wait_until, write_config

pytestmark = [pytest.mark.reliability, pytest.mark.broker]


def test_a_full_queue_holds_messages_back_and_loses_none(
    broker: Broker, well_bundle: Path, tmp_path: Path
) -> None:
    """A burst of 4 000 readings through a queue of 8: every one is taken, none dropped."""
    config = _config(tmp_path, broker, well_bundle, protocol="3.1.1", queue_size=8)
    rows = simulated_rows(1000, seed=7)
    with _publisher(broker) as client, running(config) as daemon:
        _send(client, "well-1", rows)
        wait_until(
            lambda: daemon.intake.counts.readings == 4 * len(rows),
            lambda: f"every reading taken; intake {daemon.intake.counts.as_dict()}",
        )
        wait_until(
            lambda: daemon.pipeline.counts.windows == len(rows) - WINDOW_LEN + 1,
            lambda: f"every window scored; pipeline {daemon.pipeline.counts.as_dict()}",
        )
    assert daemon.counts.held > 0  # the queue was full: messages waited for room
    assert daemon.intake.counts.queue_full == 0
    assert daemon.pipeline.counts.aligned == 4 * len(rows)
    record(
        "a burst of QoS 1 readings through a queue of 8 (MQTT 3.1.1, state_dir set)",
        "messages waited for room; none dropped, every window scored",
        readings_sent=4 * len(rows),
        readings_taken=daemon.intake.counts.readings,
        times_held_back=daemon.counts.held,
        dropped_queue_full=daemon.intake.counts.queue_full,
        windows_scored=daemon.pipeline.counts.windows,
    )


def test_an_asset_gone_quiet_lets_the_journal_go(
    broker: Broker, well_bundle: Path, tmp_path: Path
) -> None:
    """well-2 stops while well-1 goes on: once well-2 has been quiet longer than the silence
    limit, the records behind its last ones are released; a restart replays only the
    rows well-1's next window needs."""
    config = _config(tmp_path, broker, well_bundle)
    rows = simulated_rows(320, seed=7)
    with _publisher(broker) as client, running(config) as daemon:
        _send(client, "well-2", rows[:50])
        _send(client, "well-1", rows[:50])
        _wait_windows(daemon, 2 * (50 - WINDOW_LEN + 1))
        _send(client, "well-1", rows[50:300])
        _wait_windows(daemon, 300 - WINDOW_LEN + 1 + 50 - WINDOW_LEN + 1)
        time.sleep(1.0)  # worker rounds: without the silence rule nothing is released
        assert _assets_held(daemon) == {"well-1", "well-2"}
        daemon.intake.clock = lambda: time.time() + 3600.0  # an hour on: well-2 is quiet
        _send(client, "well-1", rows[300:])
        _wait_windows(daemon, 320 - WINDOW_LEN + 1 + 50 - WINDOW_LEN + 1)
        wait_until(lambda: _assets_held(daemon) == {"well-1"}, lambda: str(_assets_held(daemon)))
    assert daemon.journal is not None
    replayed = [m for record in Journal(daemon.journal.folder).replay() for m in record.messages]
    assert not [topic for topic, _ in replayed if "/well-2/" in topic]
    # well-1's last rows, for its next window (a record may hold a few rows more).
    assert 0 < len(replayed) <= 4 * 2 * WINDOW_LEN


def _wait_windows(daemon: Daemon, windows: int) -> None:
    wait_until(
        lambda: daemon.pipeline.counts.windows == windows,
        lambda: f"{windows} windows scored; pipeline {daemon.pipeline.counts.as_dict()}",
    )


def _assets_held(daemon: Daemon) -> set[str]:
    """The assets of the journal records not yet released (the daemon's own marks)."""
    assert daemon.ledger is not None
    return daemon.ledger.marked_assets()


def _config(
    folder: Path, broker: Broker, bundle: Path, *, protocol: str = "5", queue_size: int = 100_000
) -> Path:
    return write_config(
        folder,
        broker,
        bundle,
        prefix="flow",
        client_id=f"aewatch-{folder.name}",
        more={"broker": {"protocol": protocol}, "limits": {"queue_size": queue_size}},
    )


@contextmanager
def _publisher(broker: Broker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(30), "the test's client did not connect"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def _send(client: mqtt.Client, asset: str, rows: list[tuple[float, dict[str, float]]]) -> None:
    """Publish ``rows`` of ``asset``, one QoS 1 message per channel; wait for the broker."""
    infos = [
        client.publish(f"flow/in/{asset}/{channel}", json.dumps({"ts": ts, "value": value}), qos=1)
        for ts, values in rows
        for channel, value in values.items()
    ]
    for info in infos:
        info.wait_for_publish(TIMEOUT_S)
