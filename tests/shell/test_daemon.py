"""``aewatch run`` against a real Mosquitto: alerts, restarts, bad payloads, auth and TLS.

A tiny PCA model is trained once per session on two simulated days of a well (10 s
samples). Each test replays a simulated 75-minute fault file through the broker and holds
what the daemon publishes to ``score_table``, the offline path over the same core.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from aewatch.commands.replay import publish_table
from aewatch.config import Config, load_config
from aewatch.core import messages
from aewatch.core.alerts import AlertEvent
from aewatch.daemon import checkpoint, service
from aewatch.daemon.mqtt import read_retained
from aewatch.daemon.service import Daemon
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table, read_table
from aewatch.model.fit import FitSettings
from aewatch.model.offline import TableScores, score_table
from aewatch.model.scorer import set_inference_threads as set_threads
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim.cli import write_csv
from aewatch.sim.simulate import parse_faults, simulate
from tests.polling import wait_until

from .conftest import Broker, Certificates, Credentials, StartBroker

pytestmark = pytest.mark.broker

ASSET = "well-1"
CHANNELS = 4
WINDOW_LEN = 10  # TrainSettings' default: n rows make n - 9 windows
ASSET_GAUGES = ("aewatch_asset_score", "aewatch_asset_threshold", "aewatch_asset_severity")
TIMEOUT_S = 60.0  # generous: other work may share the CPUs
START_TIMEOUT_S = 120.0  # a child process imports torch first
_COUNTING_RUN = Path(__file__).with_name("daemon_with_counts.py")

Event = tuple[str, str, str, str]  # alert_id, state, started_at, at (ISO text)


# -- the plant: a model and the files fed to it -------------------------------------------


@dataclass(frozen=True)
class Plant:
    """The bundle every daemon serves and two fault files with their offline scores.

    ``noise``: 450 rows, vibration noise from row 144 to 288: one long alert.
    ``spikes``: 450 rows, vibration spikes from row 180 to 270: two alerts.
    """

    bundle_path: Path
    noise: Table
    noise_offline: TableScores
    spikes: Table
    spikes_offline: TableScores


@pytest.fixture(scope="session")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Plant:
    """Train on two normal days; simulate the fault files; score them offline."""
    folder = tmp_path_factory.mktemp("plant")
    normal = _simulated(folder / "normal.csv", hours=48, faults="", seed=1)
    bundle_path = folder / "well.aew"
    settings = TrainSettings(name="well", fit=FitSettings(show_progress=False))
    train_bundle([normal], settings).bundle.save(bundle_path)
    bundle = ModelBundle.load(bundle_path)  # what the daemon loads
    assert bundle.window_len == WINDOW_LEN
    noise = _simulated(folder / "noise.csv", hours=1.25, faults="noise@0.4+0.4:vibration_mm_s")
    spikes = _simulated(
        folder / "spikes.csv",
        hours=1.25,
        faults="spikes@0.2+0.2:vibration_mm_s,spikes@0.8+0.2:vibration_mm_s",
        seed=3,
    )
    found = Plant(
        bundle_path,
        noise,
        score_table(bundle, noise, asset=ASSET),
        spikes,
        score_table(bundle, spikes, asset=ASSET),
    )
    # The tests build on these offline outcomes; check them once, here.
    assert [e.state for e in found.noise_offline.events] == ["raised", "resolved"]
    states = [e.state for e in found.spikes_offline.events]  # two alerts or more, each closed
    assert len(states) >= 4 and states == ["raised", "resolved"] * (len(states) // 2)
    return found


def _simulated(path: Path, *, hours: float, faults: str, seed: int = 2) -> Table:
    stream = simulate("well", hours=hours, period_s=10.0, faults=parse_faults(faults), seed=seed)
    write_csv(stream, path)
    return read_table(path)


def _rows(table: Table, start: int, stop: int | None = None) -> Table:
    """Rows ``start:stop`` of ``table``."""
    cut = slice(start, stop)
    return replace(
        table,
        timestamps=table.timestamps[cut],
        values=table.values[cut],
        labels=None,
        changepoints=None,
        lines=table.lines[cut],
    )


# -- one test's daemon configuration ------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """One test's plant, folder and topic prefix (made from the test's name)."""

    plant: Plant
    folder: Path
    prefix: str

    @property
    def input_template(self) -> str:
        return f"{self.prefix}/in/{{asset}}/{{channel}}"

    @property
    def outputs(self) -> list[str]:
        """Filters of everything the daemon publishes."""
        return [f"{self.prefix}/alerts/#", f"{self.prefix}/state/#", f"{self.prefix}/status"]

    def config_file(
        self,
        broker: Broker,
        *,
        client_id: str | None = None,
        broker_extra: dict[str, Any] | None = None,
        inputs: list[dict[str, Any]] | None = None,
        limits: dict[str, Any] | None = None,
        assets: str = "well-*",
        state_dir: Path | None = None,
    ) -> Path:
        """Write a daemon config for ``broker`` serving the plant's model to ``assets``."""
        client_id = client_id or self.prefix
        data = {
            "broker": {
                "url": broker.url,
                "client_id": client_id,
                "reconnect_min_s": 1,
                "reconnect_max_s": 1,
                **(broker_extra or {}),
            },
            "inputs": inputs or [{"topic": self.input_template, "payload": "json"}],
            "models": [{"path": str(self.plant.bundle_path), "assets": assets, "name": "well"}],
            "outputs": {"topic_prefix": self.prefix},
            "limits": limits or {},
            "metrics": {"port": 0},
            "state_dir": None if state_dir is None else str(state_dir),
        }
        path = self.folder / f"{client_id}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def config(self, broker: Broker, *, environ: dict[str, str] | None = None, **kw: Any) -> Config:
        """The loaded config of :meth:`config_file` (secrets from ``environ``)."""
        return load_config(self.config_file(broker, **kw), environ=environ or {})


@pytest.fixture
def bench(plant: Plant, tmp_path: Path, request: pytest.FixtureRequest) -> Bench:
    return Bench(plant, tmp_path, re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-"))


# -- MQTT from the test's side ------------------------------------------------------------


class Peer:
    """A test-side MQTT client: publishes, and records what arrives on ``filters``.

    It subscribes in ``on_connect`` and reconnects every second, so it follows a broker
    restart the way the daemon does.
    """

    def __init__(
        self,
        broker: Broker,
        filters: Sequence[str] = (),
        *,
        credentials: Credentials | None = None,
        certificates: Certificates | None = None,
        with_client_cert: bool = False,
    ) -> None:
        self.filters = tuple(filters)
        self.received: list[mqtt.MQTTMessage] = []  # appended on paho's thread
        self.is_ready = threading.Event()  # connected and subscribed
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if credentials is not None:
            client.username_pw_set(credentials.username, credentials.password)
        if certificates is not None:
            client.tls_set(
                ca_certs=str(certificates.ca_cert),
                certfile=str(certificates.client_cert) if with_client_cert else None,
                keyfile=str(certificates.client_key) if with_client_cert else None,
            )
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self.is_ready.set()
        client.on_disconnect = lambda *_: self.is_ready.clear()
        client.on_message = lambda _c, _u, message: self.received.append(message)
        self.client = client
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        _wait_until(self.is_ready.is_set, "the test client to connect")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, table: Table, template: str, *, speed: float = 0, asset: str = ASSET) -> int:
        """Publish every row of ``table`` as JSON, one QoS 1 message per channel."""
        return publish_table(
            self.client, table, asset=asset, template=template, per="channel", speed=speed, qos=1
        )

    def send(self, topic: str, payload: bytes | str) -> None:
        """Publish one QoS 1 message and wait for the broker to take it."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def on(self, topic_prefix: str, since: int = 0) -> list[mqtt.MQTTMessage]:
        """What arrived on topics starting with ``topic_prefix`` (from message ``since`` on)."""
        return [m for m in self.received[since:] if m.topic.startswith(topic_prefix)]

    def alerts(self, prefix: str) -> list[dict[str, Any]]:
        """The alert messages received, parsed."""
        return [json.loads(m.payload) for m in self.on(f"{prefix}/alerts/")]

    def statuses(self, prefix: str, since: int = 0) -> list[str]:
        """The status payloads received, in order."""
        return [m.payload.decode() for m in self.on(f"{prefix}/status", since)]

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object
    ) -> None:
        if reason.is_failure:
            return
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        else:
            self.is_ready.set()


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def _running(config: Config, watcher: Peer, *, config_path: Path | None = None) -> Iterator[Daemon]:
    """A started daemon, once ``watcher`` has seen it go ``online``; stopped afterwards.

    ``online`` is published after the subscriptions, so what is published from then on
    reaches the daemon. With ``config_path`` it can reload from that file.
    """
    since = len(watcher.received)
    daemon = Daemon(config, config_path=config_path)
    daemon.start()
    try:
        prefix = config.outputs.topic_prefix
        _wait_until(lambda: "online" in watcher.statuses(prefix, since), "the daemon online")
        yield daemon
    except BaseException:
        daemon.stop()
        raise
    assert daemon.stop(), "the daemon did not drain within its stop timeout"


_wait_until = functools.partial(wait_until, timeout_s=TIMEOUT_S, every_s=0.02)


def _wait_scored(daemon: Daemon, rows: int) -> None:
    """Wait until the windows of ``rows`` consecutive rows are scored."""
    windows = rows - WINDOW_LEN + 1
    _wait_until(
        lambda: daemon.pipeline.counts.windows >= windows,
        lambda: (
            f"{windows} windows; pipeline {daemon.pipeline.counts.as_dict()}, "
            f"intake {daemon.intake.counts.as_dict()}"
        ),
    )


def _asset_gauges(daemon: Daemon) -> dict[tuple[str, str, str], float]:
    """The per-asset gauges as ``/metrics`` serves them: ``(metric, asset, model)`` -> value."""
    assert daemon.status_server is not None
    url = f"http://127.0.0.1:{daemon.status_server.port}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        text = response.read().decode()
    return {
        (family.name, sample.labels["asset"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ASSET_GAUGES
        for sample in family.samples
    }


def _wait_gauges(
    daemon: Daemon, expected: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    """Wait until /metrics serves ``expected`` (to float32 rounding) and nothing else."""

    def is_shown() -> bool:
        shown = _asset_gauges(daemon)
        return shown.keys() == expected.keys() and shown == pytest.approx(expected, rel=1e-5)

    _wait_until(is_shown, lambda: f"the gauges {expected}, got {_asset_gauges(daemon)}")
    return _asset_gauges(daemon)


def _newest_offline(offline: TableScores, asset: str) -> dict[tuple[str, str, str], float]:
    """What the gauges of ``asset`` should show once ``offline``'s windows are scored."""
    newest = (offline.window_score[-1], offline.window_threshold[-1], offline.window_severity[-1])
    return {
        (name, asset, "well"): float(value)
        for name, value in zip(ASSET_GAUGES, newest, strict=True)
    }


def _offline_events(events: list[AlertEvent]) -> list[Event]:
    return [(e.alert_id, e.state, messages.iso(e.started_at), messages.iso(e.at)) for e in events]


def _published_events(alerts: list[dict[str, Any]]) -> list[Event]:
    return [(a["alert_id"], a["state"], a["started_at"], a["at"]) for a in alerts]


def _retained(config: Config, topic: str) -> bytes | None:
    """The retained message on ``topic``, read with a fresh client."""
    found = read_retained(config.broker, topic, client_id=f"{config.broker.client_id}-probe")
    assert found is not None, f"could not read retained messages from {config.broker.url}"
    return found.get(topic)


# -- the tests ----------------------------------------------------------------------------


def test_alert_end_to_end(broker: Broker, bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON readings on aewatch/in/{asset}/{channel} raise and resolve one alert (defaults)."""
    bench = replace(bench, prefix="aewatch")  # the documented default topics
    config = bench.config(broker, client_id="aewatch-e2e")
    expected = bench.plant.noise_offline.events
    watcher = Peer(broker, bench.outputs)
    # The inference threads are set in the thread that scores: torch keeps the count per
    # thread (in OpenMP), and a scoring thread that never set it used every core, its pool
    # thread spinning between passes.
    set_in: list[tuple[str, int]] = []
    monkeypatch.setattr(
        service,
        "set_inference_threads",
        lambda n: (set_in.append((threading.current_thread().name, n)), set_threads(n)),
    )
    try:
        with _running(config, watcher) as daemon:
            assert _retained(config, "aewatch/status") == b"online"
            watcher.publish(bench.plant.noise, "aewatch/in/{asset}/{channel}")
            _wait_until(
                lambda: len(watcher.alerts("aewatch")) == len(watcher.on("aewatch/state/")) == 2,
                "alerts and states raised and resolved",
            )
            state = _retained(config, f"aewatch/state/{ASSET}")
            assert set_in == [("aewatch-worker", config.limits.inference_threads)]
        assert _retained(config, "aewatch/status") == b"stopped"
        _wait_until(lambda: watcher.statuses("aewatch") == ["online", "stopped"], "stopped")
    finally:
        watcher.close()

    raised, resolved = watcher.alerts("aewatch")
    assert (raised["state"], resolved["state"]) == ("raised", "resolved")
    assert raised["alert_id"] == resolved["alert_id"] == expected[0].alert_id
    assert raised["ended_at"] is None and resolved["ended_at"] is not None
    for alert in (raised, resolved):
        assert alert["asset"] == ASSET
        assert alert["started_at"] == messages.iso(expected[0].started_at)
        assert alert["model"] == "well"
        assert alert["model_version"] == daemon.fleet.models[0].version
        assert alert["severity"] >= 1.0 and alert["threshold"] > 0
        if alert["kind"] == "reconstruction":  # else a channel check raised it
            assert alert["peak_score"] > alert["threshold"]
        shares = [c["share"] for c in alert["contributions"]]
        assert shares == sorted(shares, reverse=True)
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)
        if alert["kind"] == "reconstruction":
            assert alert["contributions"][0]["channel"] == "vibration_mm_s"
        else:  # the check names the channel; the window error may be normal at the peak
            assert alert["channels"][0]["channel"] == "vibration_mm_s"
    firing, normal = (json.loads(m.payload) for m in watcher.on(f"aewatch/state/{ASSET}"))
    assert (firing["state"], firing["alert_id"]) == ("firing", raised["alert_id"])
    assert (normal["state"], normal["alert_id"]) == ("normal", None)
    assert state is not None and json.loads(state) == normal
    assert daemon.counts.alerts_raised == daemon.counts.alerts_resolved == 1


def test_replay_matches_offline_scoring(broker: Broker, bench: Bench) -> None:
    """The same file scored offline and replayed over MQTT gives the same alerts, exactly."""
    offline = bench.plant.spikes_offline
    watcher = Peer(broker, bench.outputs)
    try:
        with _running(bench.config(broker), watcher) as daemon:
            sent = watcher.publish(bench.plant.spikes, bench.input_template)
            _wait_scored(daemon, len(bench.plant.spikes.timestamps))
            _wait_until(
                lambda: len(watcher.alerts(bench.prefix)) >= len(offline.events),
                f"{len(offline.events)} alert events",
            )
    finally:
        watcher.close()

    alerts = watcher.alerts(bench.prefix)
    assert _published_events(alerts) == _offline_events(offline.events)
    assert [a["peak_score"] for a in alerts] == pytest.approx(
        [e.peak_score for e in offline.events], rel=1e-5
    )
    assert sent == daemon.intake.counts.readings == daemon.pipeline.counts.aligned
    assert daemon.pipeline.counts.windows == len(offline.window_end)


def test_sigterm_and_restart_lose_no_reading(
    broker: Broker, bench: Bench, spawn: Callable[[Path, Path], DaemonProcess]
) -> None:
    """SIGTERM while readings flow; what came while down reaches the next run (same session)."""
    # The broker keeps what comes while the daemon is down: up to max_queued_messages
    # (100000 in these tests; mosquitto's default of 1000 would drop the rest).
    config_file = bench.config_file(broker)
    noise, template, total = bench.plant.noise, bench.input_template, bench.plant.noise.values.size
    watcher = Peer(broker, bench.outputs)
    publisher = Peer(broker)
    try:
        first = spawn(config_file, bench.folder / "run-1")
        first.start()
        _wait_until(
            lambda: watcher.statuses(bench.prefix) == ["online"],
            "the first run online",
            timeout_s=START_TIMEOUT_S,
        )
        # Rows 0-299 go out at 5 ms a row; the first run is stopped part way through them.
        sending = threading.Thread(
            target=publisher.publish, args=(_rows(noise, 0, 300), template), kwargs={"speed": 2e3}
        )
        sending.start()
        _wait_until(lambda: first.counts()["readings"] >= 100 * CHANNELS, "the first readings")
        assert first.stop() == 0
        sending.join(TIMEOUT_S)
        publisher.publish(_rows(noise, 300, 350), template)  # nobody is listening
        # The same client id again (here in this process): the session held the rest.
        with _running(load_config(config_file, environ={}), watcher) as second:
            publisher.publish(_rows(noise, 350), template)
            _wait_until(
                lambda: first.final["readings"] + second.intake.counts.readings >= total,
                "every reading",
            )
        expected = ["online", "stopped", "online", "stopped"]
        _wait_until(lambda: watcher.statuses(bench.prefix) == expected, "the second stop")
    finally:
        publisher.close()
        watcher.close()

    later = _flat(
        {"intake": second.intake.counts.as_dict(), "pipeline": second.pipeline.counts.as_dict()}
    )
    runs = (first.final, later)
    assert runs[0]["readings"] < 300 * CHANNELS  # stopped while readings still came
    assert runs[1]["readings"] > 100 * CHANNELS  # and got those sent while it was down
    assert sum(run["messages"] for run in runs) == sum(run["readings"] for run in runs) == total
    assert sum(run["aligned"] for run in runs) == total  # none twice (it would be late)
    assert sum(run["refused"] for run in runs) == 0


def test_restart_resumes_open_alert(
    broker: Broker, bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart while an alert is open raises nothing new; the resolve keeps the first id
    (the state is signed with the key in ``state_dir``, so the start believes it)."""
    config = bench.config(broker, state_dir=bench.folder / "state")
    noise, first_id = bench.plant.noise, bench.plant.noise_offline.events[0].alert_id
    watcher = Peer(broker, bench.outputs)
    note_file = bench.folder / "state" / "journal" / "checkpoint.json"
    try:
        with _running(config, watcher):
            watcher.publish(_rows(noise, 0, 200), bench.input_template)  # raised at row 146
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 1, "the alert raised")
        state = _retained(config, config.outputs.state_topic_for(ASSET))
        assert state is not None and json.loads(state)["state"] == "firing"
        # The stop's checkpoint noted the newest window it decided; the next start's replay
        # decides none up to it again.
        note = json.loads(note_file.read_text())
        (decided_s,) = note["decided"].values()
        assert note["assets"][ASSET]["state"]["alert"]["alert_id"] == first_id
        last_row = int(np.searchsorted(noise.timestamps, decided_s))
        assert noise.timestamps[last_row] == decided_s and last_row > 146
        with (
            caplog.at_level(logging.INFO, logger="aewatch.daemon"),
            _running(config, watcher) as second,
        ):
            assert json.loads(note_file.read_text()) == note  # kept until the next one
            assert "1 of 1 assets from their saved state" in caplog.text
            assert second.counts.resumed_alerts == 1
            watcher.publish(_rows(noise, 200), bench.input_template)  # the fault ends at 288
            _wait_scored(second, len(noise.timestamps) - 200)
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) >= 2, "the alert resolved")
    finally:
        watcher.close()

    assert second.pipeline.counts.windows == len(noise.timestamps) - 1 - last_row

    raised, resolved = watcher.alerts(bench.prefix)
    assert (raised["state"], resolved["state"]) == ("raised", "resolved")
    assert raised["alert_id"] == resolved["alert_id"] == first_id
    assert resolved["started_at"] == raised["started_at"]
    assert second.counts.alerts_raised == 0 and second.counts.alerts_resolved == 1
    # Going on from the state the stop saved, the two runs decide as offline scoring of
    # the whole stream does: the resolve comes when it would have without the restart.
    offline = _offline_events(bench.plant.noise_offline.events)
    assert _published_events([raised, resolved]) == offline


def test_a_restart_after_a_kill_goes_on_from_the_last_checkpoint(
    broker: Broker, bench: Bench, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker writes checkpoints while it runs; a run that ends without a last one
    (as a kill ends it: the stop's checkpoint is left out, and a stop releases nothing on
    disk by itself) is followed from the newest: its windows are not decided again, and
    the two runs raise and resolve what offline scoring of the whole stream does."""
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.2)
    monkeypatch.setattr(checkpoint, "MAX_EVERY_S", 0.5)  # once the readings stop, too
    config = bench.config(broker, state_dir=bench.folder / "state")
    noise, first_id = bench.plant.noise, bench.plant.noise_offline.events[0].alert_id
    watcher = Peer(broker, bench.outputs)
    note_file = bench.folder / "state" / "journal" / "checkpoint.json"
    last_s = float(noise.timestamps[199])

    def checkpointed() -> bool:
        return note_file.exists() and json.loads(note_file.read_text())["decided"] == {
            ASSET: last_s
        }

    try:
        with _running(config, watcher) as first:
            monkeypatch.setattr(first.checkpoints, "final", lambda: False)  # "killed"
            watcher.publish(_rows(noise, 0, 200), bench.input_template)  # raised at row 146
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 1, "the alert raised")
            _wait_until(checkpointed, "a checkpoint of row 199's window")
        note = json.loads(note_file.read_text())
        assert note["assets"][ASSET]["state"]["alert"]["alert_id"] == first_id
        with (
            caplog.at_level(logging.INFO, logger="aewatch.daemon"),
            _running(config, watcher) as second,
        ):
            assert "going on from the last checkpoint: 1 of 1 assets" in caplog.text
            watcher.publish(_rows(noise, 200), bench.input_template)  # the fault ends at 288
            _wait_scored(second, len(noise.timestamps) - 200)
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) >= 2, "the alert resolved")
            _wait_until(lambda: "replay ingested" in caplog.text, "the replay ingested")
    finally:
        watcher.close()

    assert second.pipeline.counts.windows == len(noise.timestamps) - 1 - 199
    raised, resolved = watcher.alerts(bench.prefix)
    assert raised["alert_id"] == resolved["alert_id"] == first_id
    assert second.counts.alerts_raised == 0 and second.counts.alerts_resolved == 1
    offline = _offline_events(bench.plant.noise_offline.events)
    assert _published_events([raised, resolved]) == offline


def test_asset_gauges_show_the_threshold_that_fires(broker: Broker, bench: Bench) -> None:
    """Mid-alert and after it, /metrics shows the newest window's score, threshold in force
    and severity exactly as offline scoring gives them; the alert names the same threshold."""
    noise = bench.plant.noise
    bundle = ModelBundle.load(bench.plant.bundle_path)
    watcher = Peer(broker, bench.outputs)
    seen: list[dict[tuple[str, str, str], float]] = []
    active: list[dict[str, float]] = []  # aewatch_asset_alert_active by asset, after each part
    try:
        with _running(bench.config(broker), watcher) as daemon:
            for start, stop in ((0, 200), (200, len(noise.timestamps))):  # raised at row 146
                watcher.publish(_rows(noise, start, stop), bench.input_template)
                offline = score_table(bundle, _rows(noise, 0, stop), asset=ASSET)
                expected = _newest_offline(offline, ASSET)
                seen.append(_wait_gauges(daemon, expected))
                series = daemon.asset_gauges.series(daemon.outputs.alerting_assets())
                active.append({s.asset: float(s.is_alerting) for s in series})
            model_ratio = daemon.fleet.models[0].bundle.threshold.value
    finally:
        watcher.close()

    during, after = seen
    assert [a[ASSET] for a in active] == [1.0, 0.0]  # aewatch_asset_alert_active
    raised, resolved = watcher.alerts(bench.prefix)
    threshold = ("aewatch_asset_threshold", ASSET, "well")
    severity = ("aewatch_asset_severity", ASSET, "well")
    assert during[severity] >= 1.0 > after[severity]
    # The baseline holds still while an alert is open: the alert's threshold is the gauge's.
    assert raised["threshold"] == resolved["threshold"] == pytest.approx(during[threshold])
    assert raised["severity"] >= 1.0
    # And it is not the model's calibrated ratio, which is what used to be shown.
    assert during[threshold] != pytest.approx(model_ratio, rel=0.01)


def test_asset_series_are_bounded_and_go_with_their_asset(broker: Broker, bench: Bench) -> None:
    """At most limits.max_assets assets get series; a reload that stops serving one drops
    its series and keeps the others."""
    rows = 30  # 21 windows each
    table = _rows(bench.plant.spikes, 0, rows)
    offline = score_table(ModelBundle.load(bench.plant.bundle_path), table, asset=ASSET)
    tracked = {**_newest_offline(offline, "well-1"), **_newest_offline(offline, "well-2")}
    config_file = bench.config_file(broker, limits={"max_assets": 2})
    config = load_config(config_file, environ={})
    watcher = Peer(broker, bench.outputs)
    try:
        with _running(config, watcher, config_path=config_file) as daemon:
            for asset in ("well-1", "well-2", "well-3"):  # well-3 finds two assets tracked
                watcher.publish(table, bench.input_template, asset=asset)
            _wait_until(
                lambda: daemon.pipeline.counts.too_many_assets == rows * CHANNELS,
                lambda: f"well-3's readings refused; pipeline {daemon.pipeline.counts.as_dict()}",
            )
            bounded = _wait_gauges(daemon, tracked)

            bench.config_file(broker, limits={"max_assets": 2}, assets="well-1")
            assert daemon.reload()
            served = _asset_gauges(daemon)
    finally:
        watcher.close()

    assert served == {key: value for key, value in bounded.items() if key[1] == "well-1"}
    assert len(daemon.asset_gauges) == 1


def test_bad_payloads_are_counted_and_scoring_goes_on(broker: Broker, bench: Bench) -> None:
    """Every kind of bad message is counted under its reason; good readings still score."""
    prefix = bench.prefix
    raw = f"{prefix}/raw/{{asset}}/{{channel}}"
    config = bench.config(
        broker,
        inputs=[
            {"topic": bench.input_template, "payload": "json"},
            {"topic": raw, "payload": "float32_le"},
        ],
        limits={"max_payload_bytes": 512},
    )
    ts = float(bench.plant.noise.timestamps[0])
    good = f'{{"ts": {ts}, "value": 1}}'
    flow, raw_flow = f"{prefix}/in/{ASSET}/flow_kg_s", f"{prefix}/raw/{ASSET}/flow_kg_s"
    bad: list[tuple[str, bytes | str, str]] = [
        (flow, b"{not json", "decode_error:not_json"),
        (flow, b'{"ts": 1, "value": \xff\xfe}', "decode_error:not_utf8"),
        (flow, f'{{"ts": {ts}, "value": NaN}}', "decode_error:non_finite"),
        (flow, f'{{"ts": {ts}, "value": Infinity}}', "decode_error:non_finite"),
        (flow, f'{{"ts": {ts}, "value": "-inf"}}', "decode_error:non_finite"),
        (flow, f'{{"ts": {ts}, "value": "twelve"}}', "decode_error:not_number"),
        (flow, f'{{"ts": {ts}, "value": true}}', "decode_error:not_number"),
        (flow, f'{{"ts": {ts}, "value": 1e39}}', "decode_error:out_of_range"),
        (flow, f'{{"ts": {ts}}}', "decode_error:missing_key"),
        (flow, '{"value": 12.5}', "decode_error:missing_key"),
        (flow, f"[{ts}, 12.5]", "decode_error:bad_shape"),
        (flow, '"12.5"', "decode_error:bad_shape"),
        (flow, '{"ts": "yesterday", "value": 12.5}', "decode_error:bad_timestamp"),
        (flow, f'{{"ts": {time.time() + 3600}, "value": 1}}', "decode_error:future_timestamp"),
        (flow, json.dumps({"ts": ts, "value": 1, "pad": "x" * 600}), "decode_error:too_large"),
        (raw_flow, b"\x00" * 5, "decode_error:bad_shape"),
        (raw_flow, struct.pack("<f", math.nan), "decode_error:non_finite"),
        (f"{prefix}/in//flow_kg_s", good, "unknown_topic"),
        (f"{prefix}/in/pump-1/flow_kg_s", good, "no_model"),
        (f"{prefix}/in/{ASSET}/bogus", good, "pipeline:unknown_channel"),
    ]
    rows = 100
    watcher = Peer(broker, bench.outputs)
    try:
        with _running(config, watcher) as daemon:
            for topic, payload, _ in bad:
                watcher.send(topic, payload)
            sent = watcher.publish(_rows(bench.plant.noise, 0, rows), bench.input_template)
            _wait_until(lambda: daemon.intake.counts.messages == len(bad) + sent, "messages")
            _wait_scored(daemon, rows)
    finally:
        watcher.close()

    expected = Counter(reason for _, _, reason in bad)
    intake, pipeline = daemon.intake.counts.as_dict(), daemon.pipeline.counts.as_dict()
    refused = {k: n for k, n in intake.items() if n and k not in ("messages", "readings")}
    assert refused == {k: n for k, n in expected.items() if not k.startswith("pipeline:")}
    assert pipeline["unknown_channel"] == 1
    assert pipeline["aligned"] == sent == intake["readings"] - 1
    assert pipeline["late"] == pipeline["invalid"] == pipeline["no_model"] == 0
    assert pipeline["windows"] == rows - WINDOW_LEN + 1
    assert daemon.counts.internal_error == 0


def test_password_from_env_connects_and_stays_secret(
    start_broker: StartBroker,
    broker_credentials: Credentials,
    bench: Bench,
    daemon_log: io.StringIO,
) -> None:
    """With the right password (from the environment) the daemon connects and scores."""
    secret = broker_credentials
    broker = start_broker(f"allow_anonymous false\npassword_file {secret.password_file}")
    config = bench.config(
        broker,
        broker_extra={"username": secret.username, "password": {"env": "AEWATCH_TEST_PASSWORD"}},
        environ={"AEWATCH_TEST_PASSWORD": secret.password},
    )
    watcher = Peer(broker, bench.outputs, credentials=secret)
    try:
        with _running(config, watcher) as daemon:
            watcher.publish(_rows(bench.plant.noise, 0, 50), bench.input_template)
            _wait_scored(daemon, 50)
    finally:
        watcher.close()
    assert daemon.counts.connects == 1
    assert secret.password not in daemon_log.getvalue()
    assert secret.password not in repr(config) + str(config)


def test_wrong_password_keeps_retrying_without_crashing(
    start_broker: StartBroker,
    broker_credentials: Credentials,
    bench: Bench,
    daemon_log: io.StringIO,
) -> None:
    """A refused login is logged (without the password) and retried; stop() still works."""
    secret = broker_credentials
    broker = start_broker(f"allow_anonymous false\npassword_file {secret.password_file}")
    wrong = "wrong-Pa55word-also-secret"
    (bench.folder / "password").write_text(wrong + "\n")
    config = bench.config(
        broker, broker_extra={"username": secret.username, "password": {"file": "password"}}
    )
    daemon = Daemon(config)
    daemon.start()  # reading the retained states is refused too; it gives up after 5 s
    try:
        refused = broker.log.read_text().count("not authorised")
        _wait_until(
            lambda: broker.log.read_text().count("not authorised") >= refused + 2,
            "two more refused logins",
        )
        assert not daemon.is_connected.is_set()
        assert daemon.counts.connects == 0
    finally:
        is_drained = daemon.stop(timeout_s=5.0)
    assert is_drained
    log_text = daemon_log.getvalue()
    assert "refused the connection" in log_text
    assert wrong not in log_text and secret.password not in log_text


@pytest.mark.parametrize("mode", ["server", "mutual"])
def test_tls(
    start_broker: StartBroker, broker_certificates: Certificates, bench: Bench, mode: str
) -> None:
    """Over mqtts:// with the test CA (and, for mutual TLS, a client certificate) alerts flow."""
    certs = broker_certificates
    settings = [f"cafile {certs.ca_cert}", f"certfile {certs.server_cert}"]
    settings += [f"keyfile {certs.server_key}", "allow_anonymous true"]
    tls: dict[str, Any] = {"ca_file": str(certs.ca_cert)}
    is_mutual = mode == "mutual"
    if is_mutual:
        settings.append("require_certificate true")
        tls |= {"cert_file": str(certs.client_cert), "key_file": str(certs.client_key)}
    broker = start_broker("\n".join(settings), scheme="mqtts")
    config = bench.config(broker, broker_extra={"tls": tls})
    watcher = Peer(broker, bench.outputs, certificates=certs, with_client_cert=is_mutual)
    try:
        with _running(config, watcher) as daemon:
            watcher.publish(bench.plant.noise, bench.input_template)
            _wait_until(lambda: len(watcher.alerts(bench.prefix)) == 2, "raised and resolved")
    finally:
        watcher.close()
    expected = _offline_events(bench.plant.noise_offline.events)
    assert _published_events(watcher.alerts(bench.prefix)) == expected
    assert daemon.counts.connects == 1


# -- a daemon in its own process ----------------------------------------------------------


class DaemonProcess:
    """``aewatch run --config FILE`` in a child process that reports its counts.

    The child imports everything first, then waits for :meth:`start`. :meth:`counts` and
    :attr:`final` flatten its reports: the intake's and the pipeline's counts by name,
    plus ``refused`` (every intake count but messages and readings).
    """

    def __init__(self, config_file: Path, folder: Path) -> None:
        folder.mkdir()
        self.counts_file = folder / "counts.json"
        self.log = folder / "aewatch.log"
        command = [sys.executable, str(_COUNTING_RUN), str(self.counts_file)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "run", "--config", str(config_file)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.final: dict[str, int] = {}

    def start(self) -> None:
        """Let the child run the daemon."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()

    def counts(self) -> dict[str, int]:
        """The latest counts the child wrote (no readings before its first report)."""
        if self.process.poll() is not None:
            raise AssertionError(f"aewatch run exited: {self.log.read_text()[-3000:]}")
        if not self.counts_file.exists():
            return {"readings": 0}
        return _flat(json.loads(self.counts_file.read_text()))

    def stop(self) -> int:
        """SIGTERM, wait for the exit; return the exit status and keep the final counts."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(TIMEOUT_S)
        self.final = _flat(json.loads(self.counts_file.read_text()))
        return status

    def kill(self) -> None:
        """End the child if it still runs (a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)
        if self.process.stdin is not None:
            self.process.stdin.close()


@pytest.fixture
def spawn() -> Iterator[Callable[[Path, Path], DaemonProcess]]:
    """``spawn(config_file, folder)``: a DaemonProcess, killed at the end if still running."""
    spawned: list[DaemonProcess] = []

    def start(config_file: Path, folder: Path) -> DaemonProcess:
        spawned.append(DaemonProcess(config_file, folder))
        return spawned[-1]

    try:
        yield start
    finally:
        for child in spawned:
            child.kill()


def _flat(report: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    intake, pipeline = report["intake"], report["pipeline"]
    refused = sum(n for name, n in intake.items() if name not in ("messages", "readings"))
    return {**intake, **pipeline, "refused": refused}
