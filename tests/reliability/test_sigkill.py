"""SIGKILL ``aewatch run`` at random moments while QoS 1 readings stream in: none is lost.

A real mosquitto, the real daemon (``python -m aewatch run``) with ``state_dir`` set, and
a publisher sending one QoS 1 JSON reading per channel at a steady rate. The daemon is
killed with SIGKILL at random moments (while starting, replaying its journal or
serving) and started again each time. The daemon publishes the reconstructed rows of
every window it scores (``outputs.denoised``), and a subscriber connected throughout
collects them: every row the broker took from the publisher must come back scored,
except the first window's first rows, which no window ends on. ``AEWATCH_RELIABILITY_KILLS``
sets the number of kills (``make reliability``: 20; ``make test``: 3); the figures are
printed (``pytest -s``) for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.sim.simulate import simulate

from ..shell.conftest import Broker
from .conftest import WINDOW_LEN
from .figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.broker]

KILLS = int(os.environ.get("AEWATCH_RELIABILITY_KILLS", "3"))
ROWS_PER_S = 40  # rows published per second, 4 QoS 1 messages each
PERIOD_S = 10.0
ASSET = "well-1"
START_TIMEOUT_S = 180.0  # a child imports torch first, on a shared machine
DRAIN_TIMEOUT_S = 300.0


class Watcher:
    """A test-side client connected throughout: publishes, and collects the outputs."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.prefix = prefix
        self.statuses: list[str] = []
        self.scored: Counter[float] = Counter()  # row time -> times it came back scored
        self.lock = threading.Lock()
        self.ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.on_connect = lambda c, *_: c.subscribe(
            [(f"{prefix}/denoised/#", 1), (f"{prefix}/status", 1)]
        )
        client.on_subscribe = lambda *_: self.ready.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        self.client = client
        assert self.ready.wait(30), "the test's client did not connect"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            if message.topic.endswith("/status"):
                self.statuses.append(message.payload.decode())
            else:
                self.scored.update(json.loads(message.payload)["ts"])

    def onlines(self) -> int:
        with self.lock:
            return self.statuses.count("online")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher(threading.Thread):
    """Sends ``rows`` as QoS 1 readings, ``ROWS_PER_S`` a second, until told to stop."""

    def __init__(
        self, client: mqtt.Client, rows: list[tuple[float, dict[str, float]]], template: str
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.client, self.rows, self.template = client, rows, template
        self.stopping = threading.Event()
        self.sent: list[tuple[float, list[mqtt.MQTTMessageInfo]]] = []

    def run(self) -> None:
        started = time.monotonic()
        for i, (ts, values) in enumerate(self.rows):
            if self.stopping.is_set():
                return
            infos = [
                self.client.publish(
                    self.template.format(asset=ASSET, channel=channel),
                    json.dumps({"ts": ts, "value": value}),
                    qos=1,
                )
                for channel, value in values.items()
            ]
            self.sent.append((ts, infos))
            time.sleep(max(0.0, started + (i + 1) / ROWS_PER_S - time.monotonic()))

    def delivered(self) -> list[float]:
        """The rows whose every reading the broker acknowledged, in order."""
        for _ts, infos in self.sent:
            for info in infos:
                info.wait_for_publish(60)
        return [ts for ts, infos in self.sent if all(info.is_published() for info in infos)]


class DaemonProcess:
    """``python -m aewatch run`` in a child process; its output appended to ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aewatch", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def sigkill(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"aewatch run exited early: {self.tail()}")
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def end(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def test_sigkill_at_random_moments_loses_no_reading(
    broker: Broker, well_bundle: Path, tmp_path: Path
) -> None:
    """Every reading delivered is scored, across ``KILLS`` SIGKILLs and restarts."""
    seed = int(os.environ.get("AEWATCH_RELIABILITY_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    prefix = "reliability"
    config = _config_file(tmp_path, broker, well_bundle, prefix)
    template = f"{prefix}/in/{{asset}}/{{channel}}"
    watcher = Watcher(broker, prefix)
    daemon = DaemonProcess(config, tmp_path / "aewatch.log")
    publisher = Publisher(watcher.client, _rows(hours=KILLS * 2.5 + 8), template)
    moments: list[str] = []
    try:
        daemon.start()
        _wait(lambda: watcher.onlines() >= 1, "the first start", daemon, START_TIMEOUT_S)
        publisher.start()
        onlines = 0  # the daemon's "online" messages before its latest start
        for kill in range(KILLS):
            if kill % 4 == 3:  # while starting: loading, replaying the journal, connecting
                delay = rng.uniform(0.0, 2.5)
                time.sleep(delay)
                moments.append(f"{delay:.2f} s after start")
            else:  # while serving

                def is_online(before: int = onlines) -> bool:
                    return watcher.onlines() > before

                _wait(is_online, "the daemon online", daemon, START_TIMEOUT_S)
                delay = rng.uniform(0.0, 2.0)
                time.sleep(delay)
                moments.append(f"{delay:.2f} s after online")
            daemon.sigkill()
            onlines = watcher.onlines()
            daemon.start()
        publisher.stopping.set()
        publisher.join(30)
        delivered = publisher.delivered()
        expected = set(delivered[WINDOW_LEN - 1 :])  # the first window's first rows end none

        def is_done() -> bool:
            with watcher.lock:
                return expected <= watcher.scored.keys()

        _wait(is_done, "every delivered row scored", daemon, DRAIN_TIMEOUT_S)
        assert daemon.stop() == 0, daemon.tail()
    finally:
        publisher.stopping.set()
        daemon.end()
        watcher.close()

    with watcher.lock:
        scored = dict(watcher.scored)
    lost = sorted(expected - scored.keys())
    repeated = sum(count - 1 for ts, count in scored.items() if ts in expected)
    figures = {
        "seed": seed,
        "kills": KILLS,
        "rows delivered": len(delivered),
        "readings delivered": 4 * len(delivered),
        "rows scored": len(expected & scored.keys()),
        "rows lost": len(lost),
        "rows scored more than once": sum(1 for ts in expected if scored.get(ts, 0) > 1),
        "repeated outputs": repeated,
    }
    print("reliability figures:", json.dumps(figures), "kill moments:", ", ".join(moments))
    record(
        f"SIGKILL at random moments ({KILLS} kills, QoS 1 readings, state_dir set)",
        "no delivered reading lost" if not lost else f"{len(lost)} rows lost",
        **{name.replace(" ", "_"): value for name, value in figures.items() if name != "seed"},
        seed=str(seed),
    )
    assert not lost, f"{len(lost)} delivered rows never scored (seed {seed}): {lost[:10]}"
    assert "replayed" in (tmp_path / "aewatch.log").read_text()


def _config_file(folder: Path, broker: Broker, bundle: Path, prefix: str) -> Path:
    data: dict[str, Any] = {
        "broker": {
            "url": broker.url,
            "client_id": "aewatch-reliability",
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
        },
        "inputs": [{"topic": f"{prefix}/in/{{asset}}/{{channel}}", "payload": "json"}],
        "models": [{"path": str(bundle), "name": "well"}],
        "outputs": {"topic_prefix": prefix, "denoised": True},
        "metrics": {"port": 0},
        "state_dir": str(folder / "state"),
    }
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _rows(*, hours: float) -> list[tuple[float, dict[str, float]]]:
    """A simulated normal stretch of the well, row by row: (time, channel -> value)."""
    stream = simulate("well", hours=hours, period_s=PERIOD_S, seed=5)
    names = list(stream.channels)
    return [
        (float(ts), {name: float(v) for name, v in zip(names, row, strict=True)})
        for ts, row in zip(stream.timestamps, stream.values, strict=True)
    ]


def _wait(
    condition: Callable[[], bool], what: str, daemon: DaemonProcess, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if daemon.process is not None and daemon.process.poll() is not None:
            raise AssertionError(f"aewatch run exited while waiting for {what}: {daemon.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"gave up after {timeout_s:.0f} s waiting for {what}: {daemon.tail()}"
            )
        time.sleep(0.05)
