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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.config import load_config
from aewatch.daemon.journal import Journal
from aewatch.daemon.service import Daemon
from aewatch.sim.simulate import simulate

from ..shell.conftest import Broker
from .conftest import WINDOW_LEN

pytestmark = [pytest.mark.reliability, pytest.mark.broker]

PERIOD_S = 10.0
TIMEOUT_S = 120.0  # generous: other work may share the CPUs
T0 = 1_700_000_000.0


def test_a_full_queue_holds_messages_back_and_loses_none(
    broker: Broker, well_bundle: Path, tmp_path: Path
) -> None:
    """A burst of 4 000 readings through a queue of 8: every one is taken, none dropped."""
    config = _config(tmp_path, broker, well_bundle, protocol="3.1.1", queue_size=8)
    rows = _rows(1000)
    with _publisher(broker) as client, _running(config) as daemon:
        _send(client, "well-1", rows)
        _wait_until(
            lambda: daemon.intake.counts["readings"] == 4 * len(rows),
            lambda: f"every reading taken; intake {dict(daemon.intake.counts)}",
        )
        _wait_until(
            lambda: daemon.pipeline.counts["windows"] == len(rows) - WINDOW_LEN + 1,
            lambda: f"every window scored; pipeline {dict(daemon.pipeline.counts)}",
        )
    assert daemon.counts["held"] > 0  # the queue was full: messages waited for room
    assert daemon.intake.counts["queue_full"] == 0
    assert daemon.pipeline.counts["aligned"] == 4 * len(rows)


def test_an_asset_gone_quiet_lets_the_journal_go(
    broker: Broker, well_bundle: Path, tmp_path: Path
) -> None:
    """well-2 stops while well-1 goes on: once well-2 has been quiet longer than the silence
    limit, the records behind its last ones are released; a restart replays only the
    rows well-1's next window needs."""
    config = _config(tmp_path, broker, well_bundle)
    rows = _rows(320)
    with _publisher(broker) as client, _running(config) as daemon:
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
        _wait_until(lambda: _assets_held(daemon) == {"well-1"}, lambda: str(_assets_held(daemon)))
    assert daemon.journal is not None
    replayed = [m for record in Journal(daemon.journal.folder).replay() for m in record.messages]
    assert not [topic for topic, _ in replayed if "/well-2/" in topic]
    # well-1's last rows, for its next window (a record may hold a few rows more).
    assert 0 < len(replayed) <= 4 * 2 * WINDOW_LEN


def _wait_windows(daemon: Daemon, windows: int) -> None:
    _wait_until(
        lambda: daemon.pipeline.counts["windows"] == windows,
        lambda: f"{windows} windows scored; pipeline {dict(daemon.pipeline.counts)}",
    )


def _assets_held(daemon: Daemon) -> set[str]:
    """The assets of the journal records not yet released (the daemon's own marks)."""
    return {asset for mark in list(daemon._marks) for asset in mark.newest}


def _config(
    folder: Path, broker: Broker, bundle: Path, *, protocol: str = "5", queue_size: int = 100_000
) -> Path:
    data: dict[str, Any] = {
        "broker": {
            "url": broker.url,
            "client_id": f"aewatch-{folder.name}",
            "protocol": protocol,
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
        },
        "inputs": [{"topic": "flow/in/{asset}/{channel}", "payload": "json"}],
        "models": [{"path": str(bundle), "name": "well"}],
        "outputs": {"topic_prefix": "flow"},
        "limits": {"queue_size": queue_size},
        "metrics": {"port": 0},
        "state_dir": str(folder / "state"),
    }
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def _running(config_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(load_config(config_path))
    daemon.start()
    try:
        _wait_until(daemon.is_connected.is_set, "the daemon connected")
        time.sleep(0.5)  # subscribed just after connecting
        yield daemon
    except BaseException:
        daemon.stop()
        raise
    assert daemon.stop(), "the daemon did not drain within its stop timeout"


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


def _rows(n: int) -> list[tuple[float, dict[str, float]]]:
    stream = simulate("well", hours=n * PERIOD_S / 3600, period_s=PERIOD_S, seed=7)
    names = list(stream.channels)
    return [
        (T0 + i * PERIOD_S, {name: float(v) for name, v in zip(names, row, strict=True)})
        for i, row in enumerate(stream.values[:n])
    ]


def _wait_until(
    condition: Callable[[], object], what: str | Callable[[], str], timeout_s: float = TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            text = what if isinstance(what, str) else what()
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {text}")
        time.sleep(0.05)
