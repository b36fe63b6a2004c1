"""``aewatch run`` operated as a service, as a subprocess against a real Mosquitto.

Metrics and health over real HTTP, SIGHUP reloads (a new bundle swaps in, a broken bundle
or config keeps the old one serving), SIGTERM mid-stream, systemd's notify protocol on a
socket the test binds, and refusing to start on a bad file. Each daemon gets its own
config in ``tmp_path``, a free metrics port, and topics under a prefix from the test's
name; every daemon started is killed at teardown if it still runs.
"""

from __future__ import annotations

import csv
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aewatch.cli import main
from aewatch.daemon.metrics import StatusServer
from aewatch.errors import ConfigError
from aewatch.model.bundle import ModelBundle

from .conftest import Broker

pytestmark = pytest.mark.broker

CHANNELS = ("flow_kg_s", "whp_bar", "wht_c", "vibration_mm_s")
MODEL_NAME = "well"
STOP_TIMEOUT_S = 5.0
EXIT_GRACE_S = 10.0  # interpreter teardown after the drain (torch unloads slowly)
START_TIMEOUT_S = 90.0  # importing torch on a busy 2-core machine
WAIT_S = 20.0
_POLL_S = 0.05
_FIRST_TS = float(int(time.time()) - 86_400)  # a day ago: never ahead of the daemon's clock


@dataclass(frozen=True)
class Bundles:
    """Two trained bundles with the same windows (``old`` and ``new``) and normal rows."""

    old: Path
    new: Path
    rows: tuple[tuple[float, ...], ...]

    @property
    def old_version(self) -> str:
        return ModelBundle.load(self.old).version

    @property
    def new_version(self) -> str:
        return ModelBundle.load(self.new).version


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """Train the default (pca) model twice, on streams from two seeds: two versions."""
    folder = tmp_path_factory.mktemp("bundles")
    paths = []
    for seed in (1, 2):
        data, model = folder / f"history-{seed}.csv", folder / f"well-{seed}.aew"
        simulate = ["simulate", "--scenario", "well", "--hours", "1", "--seed", str(seed)]
        assert main([*simulate, "--out", str(data)]) == 0
        train = ["train", "--data", str(data), "--out", str(model), "--name", MODEL_NAME]
        assert main([*train, "--quiet"]) == 0
        paths.append(model)
    with (folder / "history-1.csv").open(newline="") as fh:
        rows = tuple(tuple(float(row[c]) for c in CHANNELS) for row in csv.DictReader(fh))
    return Bundles(paths[0], paths[1], rows)


# -- the daemon as a subprocess ---------------------------------------------------------


@dataclass
class Service:
    """A running ``aewatch run``: its process, metrics port, config and log file."""

    process: subprocess.Popen[bytes]
    port: int
    config: Path
    bundle: Path
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the status server: (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed ``name{label="value",...}`` (labels sorted)."""
        status, text = self.get("/metrics")
        assert status == 200, text
        return parse_samples(text)

    def wait_for(
        self, what: str, is_met: Callable[[dict[str, float]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, float]:
        """Poll /metrics until ``is_met``; return those metrics."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_running()
            samples = self.metrics()
            if is_met(samples):
                return samples
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; metrics:\n{_brief(samples)}")
            time.sleep(_POLL_S)

    def wait_status(self, path: str, status: int, timeout_s: float = WAIT_S) -> str:
        """Poll ``path`` until it answers ``status``; return the body."""
        deadline = time.monotonic() + timeout_s
        last: tuple[int, str] | None = None
        while time.monotonic() < deadline:
            self.assert_running()
            try:
                last = self.get(path)
            except OSError:  # not listening yet
                last = None
            if last is not None and last[0] == status:
                return last[1]
            time.sleep(_POLL_S)
        pytest.fail(f"{path} never answered {status} within {timeout_s} s; last {last}")

    def wait_ready(self) -> None:
        """Wait until /readyz says ready (the daemon imported torch, loaded, connected)."""
        self.wait_status("/readyz", 200, START_TIMEOUT_S)

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"aewatch run exited with {self.process.returncode}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        self.assert_running()
        self.process.send_signal(signum)

    def reload(self, expect_ok: int, expect_failed: int) -> dict[str, float]:
        """SIGHUP, then wait until the reload counters reach the expected values."""
        self.send_signal(signal.SIGHUP)
        return self.wait_for(
            f"reloads ok={expect_ok} failed={expect_failed}",
            lambda m: (m[RELOADS_OK], m[RELOADS_FAILED]) == (expect_ok, expect_failed),
        )


RELOADS_OK = 'aewatch_reloads_total{result="ok"}'
RELOADS_FAILED = 'aewatch_reloads_total{result="failed"}'
MESSAGES = "aewatch_messages_received_total"
WINDOWS = "aewatch_windows_scored_total"
ALIGNED = "aewatch_readings_aligned_total"
Launch = Callable[..., Service]


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix built from the test's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)


@pytest.fixture
def launch(tmp_path: Path, broker: Broker, bundles: Bundles, prefix: str) -> Iterator[Launch]:
    """``launch(env=None)``: write a config and a bundle (the old one), run the daemon.

    Every process started is killed at teardown if it still runs.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str] | None = None) -> Service:
        folder = tmp_path / f"daemon-{len(started)}"
        folder.mkdir()
        bundle = folder / "model.aew"
        shutil.copyfile(bundles.old, bundle)
        port = _free_port()
        config = folder / "aewatch.yaml"
        config.write_text(_config_text(broker, prefix, port=port, bundle=bundle))
        log = folder / "aewatch.log"
        command = [sys.executable, "-m", "aewatch", "run", "--config", str(config)]
        command += ["--stop-timeout", str(STOP_TIMEOUT_S)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        started.append(process)
        return Service(process, port, config, bundle, log)

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def _config_text(broker: Broker, prefix: str, *, port: int, bundle: Path) -> str:
    return f"""\
broker:
  url: {broker.url}
  client_id: aewatch-{prefix}
  reconnect_min_s: 0.2
  reconnect_max_s: 1
inputs:
  - topic: "{prefix}/in/{{asset}}/{{channel}}"
    payload: json
models:
  - path: {bundle.name}
outputs:
  topic_prefix: {prefix}/out
metrics:
  port: {port}
"""


# -- MQTT helpers -------------------------------------------------------------------------


@dataclass
class Feed:
    """Publishes readings (QoS 1, JSON, one message per channel) and counts them."""

    broker: Broker
    prefix: str
    rows: tuple[tuple[float, ...], ...]
    sent: int = 0
    _next: dict[str, int] = field(default_factory=dict)
    _client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = _connected_client(self.broker)

    def send(self, asset: str, n_rows: int, *, pause_s: float = 0.0) -> None:
        """Publish the next ``n_rows`` rows of ``asset`` and wait until the broker has them."""
        infos = []
        for _ in range(n_rows):
            i = self._next.get(asset, 0)
            self._next[asset] = i + 1
            values = self.rows[i % len(self.rows)]
            for channel, value in zip(CHANNELS, values, strict=True):
                payload = f'{{"ts": {_FIRST_TS + i}, "value": {value}}}'
                topic = f"{self.prefix}/in/{asset}/{channel}"
                infos.append(self._client.publish(topic, payload, qos=1))
                self.sent += 1
            if pause_s:
                time.sleep(pause_s)
        for info in infos:
            info.wait_for_publish(WAIT_S)
            assert info.is_published(), "the broker did not acknowledge a reading"

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class Watch:
    """Every message on one topic, retained ones included, in arrival order."""

    broker: Broker
    topic: str
    got: list[str] = field(default_factory=list)
    _client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = subscribed_client(
            self.broker, self.topic, lambda _c, _u, msg: self.got.append(msg.payload.decode())
        )

    def wait_for(self, payload: str) -> None:
        _poll(f"{payload!r} on {self.topic} (got {self.got})", lambda: payload in self.got)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def subscribed_client(
    broker: Broker,
    topic: str,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None],
) -> mqtt.Client:
    """A client subscribed to ``topic`` (QoS 1) on ``broker``, its loop running, once the
    broker acknowledged the subscription; ``on_message`` takes each message."""
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert subscribed.wait(WAIT_S), f"subscription to {topic} not acknowledged"
    return client


def _connected_client(broker: Broker) -> mqtt.Client:
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert connected.wait(WAIT_S), "publisher could not connect"
    return client


# -- systemd's notify socket ----------------------------------------------------------------


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[str] = []  # every datagram, in order
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def expect(self, line: str, *, skip: tuple[str, ...] = ()) -> str:
        """The next datagram not made only of ``skip`` lines; it must hold ``line``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                datagram = self._sock.recv(4096).decode()
            except TimeoutError:
                break
            self.seen.append(datagram)
            if set(datagram.splitlines()) <= set(skip):
                continue
            assert line in datagram.splitlines(), f"expected {line}, got {self.seen}"
            return datagram
        pytest.fail(f"no {line} on the notify socket; got {self.seen}")

    def close(self) -> None:
        self._sock.close()


# -- the tests ----------------------------------------------------------------------------


def test_metrics_and_health_over_http(
    broker: Broker, bundles: Bundles, launch: Launch, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    feed = Feed(broker, prefix, bundles.rows)
    try:
        assert service.get("/healthz") == (200, "ok\n")
        feed.send("w1", 50)
        feed.send("w2", 50)
        service.wait_for(
            "every reading aligned and windows scored",
            lambda m: _is_settled(m, feed.sent) and m[WINDOWS] > 0,
        )
        status, text = service.get("/metrics")
        assert status == 200
        samples = parse_samples(text)
        assert samples[MESSAGES] == 400
        assert samples[ALIGNED] == 400
        assert samples["aewatch_broker_connected"] == 1
        labels = f'assets="*",model="{MODEL_NAME}",version="{bundles.old_version}"'
        assert samples[f"aewatch_model_info{{{labels}}}"] == 1
        for family in (
            "aewatch_batch_size_windows",
            "aewatch_inference_duration_seconds",
            "aewatch_decision_latency_seconds",
        ):
            assert f"# TYPE {family} histogram" in text
            assert samples[f"{family}_count"] > 0
            assert samples[f'{family}_bucket{{le="+Inf"}}'] == samples[f"{family}_count"]
        promtool = subprocess.run(
            [shutil.which("promtool") or "/usr/bin/promtool", "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert promtool.returncode == 0, promtool.stdout.decode() + promtool.stderr.decode()

        broker.stop()
        assert "not connected to" in service.wait_status("/readyz", 503)
        assert service.metrics()["aewatch_broker_connected"] == 0
        assert service.get("/healthz")[0] == 200  # alive, only not ready
        broker.restart()
        service.wait_status("/readyz", 200)
    finally:
        feed.close()


def test_broken_reload_keeps_serving_the_old_model(
    broker: Broker, bundles: Bundles, launch: Launch, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    good_config = service.config.read_bytes()
    feed = Feed(broker, prefix, bundles.rows)
    try:
        feed.send("w1", 40)
        scored = service.wait_for("windows scored", lambda m: m[WINDOWS] > 0)[WINDOWS]
        breakages = [
            ("bundle", "truncated"),
            ("bundle", "garbage"),
            ("config", "unknown key"),
            ("config", "invalid YAML"),
        ]
        for failed, (target, how) in enumerate(breakages, start=1):
            if target == "bundle":
                broken = _break_bundle(service, bundles, how)
            else:
                broken = _break_config(service, how)
            case = f"{how} {target}"
            samples = service.reload(expect_ok=0, expect_failed=failed)
            assert _model_versions(samples) == [bundles.old_version], case
            assert str(broken) in _reload_failures(service.log_text())[-1], case

            feed.send("w1", 5)
            scored = service.wait_for(
                f"scoring to go on after the {case}",
                _settled_with_more_windows(feed.sent, scored),
            )[WINDOWS]
            _replace(service.config, good_config)
            shutil.copyfile(bundles.old, service.bundle)
    finally:
        feed.close()
    assert _drops(service.metrics()) == 0


def test_systemd_lifecycle_with_a_new_bundle_and_sigterm_mid_stream(
    broker: Broker, bundles: Bundles, launch: Launch, prefix: str, tmp_path: Path
) -> None:
    """Start, swap in a new bundle under load, stop under load, as systemd sees it."""
    notify = NotifySocket(tmp_path / "notify")
    status = Watch(broker, f"{prefix}/out/status")
    feed = Feed(broker, prefix, bundles.rows)
    try:
        service = launch(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"})
        notify.expect("READY=1")
        notify.expect("WATCHDOG=1")
        status.wait_for("online")
        _reload_a_new_bundle_under_load(service, notify, feed, bundles)
        notify.expect("WATCHDOG=1")  # still pinging after the reload
        took_s = _stop_under_load(service, notify, feed)
        status.wait_for("stopped")
    finally:
        for closing in (feed, status, notify):
            closing.close()
    assert status.got[0] == "online"
    assert status.got[-1] == "stopped"
    assert "offline" not in status.got  # a clean stop, not the Last Will
    assert took_s < STOP_TIMEOUT_S
    assert "stopped" in service.log_text().splitlines()[-1]


def _reload_a_new_bundle_under_load(
    service: Service, notify: NotifySocket, feed: Feed, bundles: Bundles
) -> None:
    """Swap the configured bundle for the new one and SIGHUP while readings come in."""
    feed.send("w1", 50)
    before = service.wait_for("windows scored", lambda m: m[WINDOWS] > 0)
    assert _model_versions(before) == [bundles.old_version]
    _replace(service.bundle, bundles.new.read_bytes())

    publisher = threading.Thread(target=feed.send, args=("w1", 100), kwargs={"pause_s": 0.01})
    publisher.start()
    try:
        service.send_signal(signal.SIGHUP)
        reloading = notify.expect("RELOADING=1", skip=("WATCHDOG=1",))
        assert re.search(r"^MONOTONIC_USEC=\d+$", reloading, re.MULTILINE), reloading
        notify.expect("READY=1", skip=("WATCHDOG=1",))
    finally:
        publisher.join()
    reloaded = service.wait_for("the reload", lambda m: m[RELOADS_OK] == 1)
    assert reloaded[RELOADS_FAILED] == 0
    assert _model_versions(reloaded) == [bundles.new_version]

    feed.send("w1", 20)
    after = service.wait_for(
        "every reading aligned and more windows scored",
        lambda m: _is_settled(m, feed.sent) and m[WINDOWS] > reloaded[WINDOWS],
    )
    assert feed.sent == 170 * len(CHANNELS)
    assert _drops(after) == 0
    assert after["aewatch_window_restarts_total"] == 0  # the window survived the swap
    assert "assets kept 1, restarted 0, dropped 0" in service.log_text()


def _stop_under_load(service: Service, notify: NotifySocket, feed: Feed) -> float:
    """SIGTERM while a publisher sends; return the seconds until the process exited 0."""
    done = threading.Event()

    def publish() -> None:
        while not done.is_set():
            feed.send("w2", 5, pause_s=0.002)

    publisher = threading.Thread(target=publish)
    sent = feed.sent
    publisher.start()
    try:
        service.wait_for("readings to arrive", lambda m: m[MESSAGES] > sent)
        stopped_at = time.monotonic()
        service.send_signal(signal.SIGTERM)
        notify.expect("STOPPING=1", skip=("WATCHDOG=1",))
        returncode = service.process.wait(STOP_TIMEOUT_S + EXIT_GRACE_S)
        took_s = time.monotonic() - stopped_at
    finally:
        done.set()
        publisher.join(WAIT_S)
    assert returncode == 0, service.log_text()
    return took_s


def test_refuses_to_start_on_a_bad_config_or_a_missing_bundle(
    bundles: Bundles, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "broker:\n  url: mqtt://127.0.0.1:1\n"
        "inputs:\n  - topic: t/{asset}/{channel}\n    payload: json\n"
        "models:\n  - path: model.aew\n"
        "limits:\n  queue_sise: 10\n"
    )
    missing = tmp_path / "missing.yaml"
    missing.write_text(bad.read_text().replace("limits:\n  queue_sise: 10\n", ""))
    runs = {
        path: subprocess.Popen(
            [sys.executable, "-m", "aewatch", "run", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in (bad, missing)
    }
    try:
        outputs = {path: run.communicate(timeout=START_TIMEOUT_S) for path, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert runs[bad].returncode == 2
    bad_err = outputs[bad][1].decode()
    assert f"{bad}:9" in bad_err, bad_err
    assert "queue_sise" in bad_err
    assert runs[missing].returncode == 2
    missing_err = outputs[missing][1].decode()
    assert f"{tmp_path / 'model.aew'} does not exist" in missing_err, missing_err
    assert "Traceback" not in bad_err + missing_err


def test_a_taken_metrics_port_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}: .*metrics\.port"):
            StatusServer(
                "127.0.0.1",
                port,
                CollectorRegistry(),
                is_alive=lambda: (True, "ok"),
                is_ready=lambda: (True, "ready"),
            )


# -- helpers --------------------------------------------------------------------------------


def parse_samples(text: str) -> dict[str, float]:
    """Samples of a text exposition, keyed ``name{label="value",...}`` with sorted labels."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _model_versions(samples: dict[str, float]) -> list[str]:
    found = (
        re.search(r'version="([^"]*)"', key)
        for key in samples
        if key.startswith("aewatch_model_info{")
    )
    return [m.group(1) for m in found if m]


def _is_settled(samples: dict[str, float], sent: int) -> bool:
    """Every message sent was taken, and each of its readings was aligned or counted dropped."""
    taken = samples[MESSAGES] == sent
    return taken and samples[ALIGNED] + _drops(samples) == sent


def _settled_with_more_windows(sent: int, scored: float) -> Callable[[dict[str, float]], bool]:
    return lambda m: _is_settled(m, sent) and m[WINDOWS] > scored


_DROPPED = (
    "aewatch_readings_dropped_total",
    "aewatch_messages_dropped_total",
    "aewatch_decode_errors_total",
)


def _drops(samples: dict[str, float]) -> float:
    return sum(value for key, value in samples.items() if key.startswith(_DROPPED))


def _reload_failures(log: str) -> list[str]:
    return [line for line in log.splitlines() if "reload failed" in line] or [""]


def _break_bundle(service: Service, bundles: Bundles, how: str) -> Path:
    """Replace the configured bundle with a truncated copy or garbage; return its path."""
    data = bundles.old.read_bytes()
    _replace(service.bundle, data[: len(data) // 2] if how == "truncated" else b"\x00junk" * 9)
    return service.bundle


def _break_config(service: Service, how: str) -> Path:
    """Give the config an unknown key or make it invalid YAML; return its path."""
    text = service.config.read_text()
    if how == "unknown key":
        text += "limits:\n  queue_sise: 10\n"
    else:
        text = text.replace("inputs:\n", "inputs: [\n", 1)
    _replace(service.config, text.encode())
    return service.config


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, as a deployment would."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _poll(what: str, is_met: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_met():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(_POLL_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _brief(samples: dict[str, float]) -> str:
    return "\n".join(f"{k} {v}" for k, v in samples.items() if k.startswith("aewatch_"))
