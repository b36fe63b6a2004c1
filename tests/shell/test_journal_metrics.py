"""The journal's metrics: at 0 without ``state_dir``, read from the journal and the daemon's
counts with it, and moved by a real start's replay and by real failed writes.

The failed writes are real ones: ``aewatch run`` runs with a file size limit
(``RLIMIT_FSIZE``), so its journal segment stops growing and every further write fails with
``EFBIG``, as a full disk fails with ``ENOSPC``. Python ignores ``SIGXFSZ``, so the write
raises instead of killing the process.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import generate_latest

from aewatch.config import Config, load_config
from aewatch.daemon.fleet import Fleet
from aewatch.daemon.journal import Journal
from aewatch.daemon.metrics import registry_for
from aewatch.daemon.service import Daemon
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import read_table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim.cli import write_csv
from aewatch.sim.simulate import simulate
from tests.polling import wait_until

from .conftest import Broker

JOURNAL_METRICS = (
    "aewatch_journal_enabled",
    "aewatch_journal_records",
    "aewatch_journal_bytes",
    "aewatch_journal_replayed_messages_total",
    "aewatch_journal_failed_messages_total",
    "aewatch_journal_dropped_records_total",
    "aewatch_checkpoints_written_total",
    "aewatch_checkpoints_failed_total",
    "aewatch_messages_held_total",
)
CHANNELS = ("flow_kg_s", "whp_bar", "wht_c", "vibration_mm_s")
FILE_LIMIT_BYTES = 4096  # a journal segment stops growing here
WAIT_S = 90.0  # importing torch on a busy machine


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PCA model of a simulated well (10 s samples), trained on a normal day."""
    folder = tmp_path_factory.mktemp("journal-metrics-model")
    stream = simulate("well", hours=24, period_s=10.0, faults=[], seed=1)
    assert tuple(stream.channels) == CHANNELS
    write_csv(stream, folder / "normal.csv")
    settings = TrainSettings(name="well", fit=FitSettings(show_progress=False))
    path = folder / "well.aew"
    train_bundle([read_table(folder / "normal.csv")], settings).bundle.save(path)
    return path


def test_every_journal_metric_is_exported_at_0_without_state_dir() -> None:
    daemon = Daemon(_config(state_dir=None), fleet=Fleet([]))
    assert _exported(daemon) == dict.fromkeys(JOURNAL_METRICS, 0.0)


def test_the_journal_metrics_read_the_journal_and_the_daemons_counts(tmp_path: Path) -> None:
    daemon = Daemon(_config(state_dir=tmp_path / "state"), fleet=Fleet([]))
    journal = daemon.journal
    assert journal is not None
    for i in range(3):
        journal.append([(f"plant/w{i}/flow", b"1.5"), (f"plant/w{i}/rpm", b"1480")], arrival_s=i)
    journal.release(0)
    journal.checkpoint({}, 0)  # lets record 0 go
    daemon.counts.replayed, daemon.counts.journal_failed, daemon.counts.held = 7, 5, 3
    journal.dropped = 2
    try:
        exported = _exported(daemon)
    finally:
        journal.close()
    assert exported == {
        "aewatch_journal_enabled": 1.0,
        "aewatch_journal_records": 2.0,
        "aewatch_journal_bytes": float(journal.bytes_kept()),
        "aewatch_journal_replayed_messages_total": 7.0,
        "aewatch_journal_failed_messages_total": 5.0,
        "aewatch_journal_dropped_records_total": 2.0,
        "aewatch_checkpoints_written_total": 0.0,
        "aewatch_checkpoints_failed_total": 0.0,
        "aewatch_messages_held_total": 3.0,
    }
    assert journal.bytes_kept() > 0


@pytest.mark.broker
def test_a_start_exports_the_messages_it_replayed(
    broker: Broker, bundle: Path, tmp_path: Path
) -> None:
    """Records a killed daemon left are replayed at start and counted, message by message."""
    state_dir = tmp_path / "state"
    left = Journal(state_dir / "journal")
    for ts in (1_700_000_000, 1_700_000_010, 1_700_000_020):
        left.append(_row("replay", ts), arrival_s=float(ts))
    left.close()
    config = load_config(_config_file(tmp_path, broker, bundle, "replay", port=0), environ={})
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.status_server is not None
        exported = _scraped(daemon.status_server.port)
    finally:
        daemon.stop()
    assert exported["aewatch_journal_enabled"] == 1.0
    assert exported["aewatch_journal_replayed_messages_total"] == 3 * len(CHANNELS)
    assert exported["aewatch_journal_failed_messages_total"] == 0.0


@pytest.mark.broker
def test_a_checkpoint_that_does_not_fit_starts_its_assets_afresh(
    broker: Broker, bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A saved state of the serving model that does not fit it is refused, once in the
    log for all; one saved under another model is passed over; the stop writes its own."""
    version = ModelBundle.load(bundle).version
    left = Journal(tmp_path / "state" / "journal")
    saved = {
        "well-1": {"model": version, "state": {"smoothed": 1.0}},
        "well-2": {"model": "another model", "state": {}},
    }
    left.checkpoint({"decided": {"well-1": 1_700_000_000.0}, "assets": saved}, -1)
    left.close()
    config = load_config(_config_file(tmp_path, broker, bundle, "note", port=0), environ={})
    daemon = Daemon(config)
    with caplog.at_level(logging.INFO, logger="aewatch.daemon"):
        daemon.start()
        daemon.stop()
    assert (
        "1 assets start afresh: their saved state does not fit their model, e.g. well-1 "
        "(not a detector state" in caplog.text
    )
    assert "going on from the last checkpoint: 0 of 2 assets from their saved state" in caplog.text
    note = json.loads((tmp_path / "state" / "journal" / "checkpoint.json").read_text())
    assert note == {"decided": {}, "assets": {}, "released": -1}  # the stop's: none tracked


@pytest.mark.broker
def test_failed_journal_writes_are_counted_logged_and_scoring_goes_on(
    broker: Broker, bundle: Path, tmp_path: Path
) -> None:
    """A journal that cannot grow: every message is still taken, those without a record
    are counted in aewatch_journal_failed_messages_total and the reason is logged."""
    port = _free_port()
    config_file = _config_file(tmp_path, broker, bundle, "full", port=port)
    rows = 50
    with _daemon_limited_to(config_file, FILE_LIMIT_BYTES) as daemon:
        _wait_until(lambda: _is_ready(port, daemon.process), "the daemon to be ready")
        with _publisher(broker) as client:
            for i in range(rows):
                for topic, payload in _row("full", 1_700_000_000 + 10 * i):
                    client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
        taken = f"aewatch_readings_received_total {float(rows * len(CHANNELS))}"
        _wait_until(lambda: taken in _get(port), "every reading taken")
        exported = _scraped(port)
    failed = exported["aewatch_journal_failed_messages_total"]
    assert 0 < failed < rows * len(CHANNELS), exported
    assert exported["aewatch_journal_bytes"] <= FILE_LIMIT_BYTES
    assert daemon.returncode == 0, daemon.log
    assert "could not write the journal" in daemon.log
    assert "File too large" in daemon.log


class LimitedDaemon:
    """``aewatch run`` in a child process with a file size limit; its log once it ended."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.log = ""
        self.returncode: int | None = None


# Sets the limit in the child's own interpreter, then runs `aewatch ARGS...` there.
_LIMITED_RUN = """\
import resource, runpy, sys
limit_bytes = int(sys.argv.pop(1))
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
sys.argv[0] = "aewatch"
runpy.run_module("aewatch", run_name="__main__", alter_sys=True)
"""


@contextmanager
def _daemon_limited_to(config_file: Path, limit_bytes: int) -> Iterator[LimitedDaemon]:
    command = [sys.executable, "-c", _LIMITED_RUN, str(limit_bytes)]
    process = subprocess.Popen(
        [*command, "run", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    daemon = LimitedDaemon(process)
    # The log goes to a pipe (a log file would meet the limit too); read it as it comes,
    # so a full pipe never blocks the daemon.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()))
    reader.start()
    try:
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            daemon.returncode = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            daemon.returncode = process.wait(10)
        reader.join(10)
        process.stdout.close()
        daemon.log = "".join(lines)


def _config(*, state_dir: Path | None) -> Config:
    return Config.model_validate(
        {
            "broker": {"url": "mqtt://127.0.0.1:1", "client_id": "journal-metrics"},
            "inputs": [{"topic": "plant/{asset}/{channel}", "payload": "number"}],
            "models": [{"path": "/nonexistent/well.aew"}],
            "state_dir": None if state_dir is None else str(state_dir),
        }
    )


def _config_file(folder: Path, broker: Broker, bundle: Path, prefix: str, *, port: int) -> Path:
    data: dict[str, Any] = {
        "broker": {"url": broker.url, "client_id": f"journal-metrics-{prefix}"},
        "inputs": [{"topic": f"{prefix}/in/{{asset}}/{{channel}}", "payload": "json"}],
        "models": [{"path": str(bundle), "name": "well"}],
        "outputs": {"topic_prefix": f"{prefix}/out"},
        "metrics": {"port": port},
        "state_dir": str(folder / "state"),
    }
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _row(prefix: str, ts: int) -> list[tuple[str, bytes]]:
    """One reading of each channel of asset well-1, as the sensors publish them."""
    return [
        (f"{prefix}/in/well-1/{channel}", json.dumps({"ts": ts, "value": 1.0 + i}).encode())
        for i, channel in enumerate(CHANNELS)
    ]


def _exported(daemon: Daemon) -> dict[str, float]:
    """The journal's metrics as a scrape of ``daemon`` shows them."""
    text = generate_latest(registry_for(daemon.metrics_snapshot)).decode()
    return _journal_samples(text)


def _scraped(port: int) -> dict[str, float]:
    return _journal_samples(_get(port))


def _journal_samples(exposition: str) -> dict[str, float]:
    samples = dict(
        line.rsplit(" ", 1) for line in exposition.splitlines() if line and line[0] != "#"
    )
    return {name: float(samples[name]) for name in JOURNAL_METRICS if name in samples}


@contextmanager
def _publisher(broker: Broker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def _is_ready(port: int, process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, "aewatch run ended before it was ready"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
            return True
    except OSError:
        return False


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_wait_until = functools.partial(wait_until, timeout_s=WAIT_S, every_s=0.1)
