"""No secret is printed: a password written into the broker URL never reaches ``check-config``'s
output, an error message or ``aewatch run``'s log (against a real Mosquitto); the URL shows
as ``user:***@``, and a run with its password in ``broker.password`` logs none of it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from aewatch.cli import main
from aewatch.daemon.logs import JsonFormatter, TextFormatter
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.redaction import redact

from .conftest import Credentials, StartBroker

# '/' and '@' inside: a URL parser splits on them and used to quote the pieces it kept.
SECRET = "hunter2/Pa55@word"
TIMEOUT_S = 60.0  # generous: other work may share the CPUs


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("mqtts://user:secret@host:8883", "mqtts://user:***@host:8883"),
        (f'url = "mqtt://sensor:{SECRET}@h"', 'url = "mqtt://sensor:***@h"'),
        ("a mqtt://u:p@h and b http://token@h/x", "a mqtt://u:***@h and b http://***@h/x"),
        ("mqtt://broker:1883 is plain", "mqtt://broker:1883 is plain"),
    ],
)
def test_redact_hides_the_password_of_every_url(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_log_lines_are_redacted_in_both_formats() -> None:
    url = f"mqtt://sensor:{SECRET}@127.0.0.1:1883"
    try:
        raise ValueError(f"cannot reach {url}")
    except ValueError:
        record = logging.LogRecord(
            "aewatch", logging.ERROR, "x.py", 1, "lost %s", (url,), sys.exc_info()
        )
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert SECRET not in line and "hunter2" not in line
        assert line.count("mqtt://sensor:***@127.0.0.1:1883") == 2  # message and traceback
    assert json.loads(JsonFormatter().format(record))["message"].startswith("lost mqtt://")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtts://sensor:{SECRET}@127.0.0.1:8883", "mqtts://sensor:***@127.0.0.1:8883"),
        # Also wrong otherwise: a port out of range, and long enough for the value to be cut.
        (f"mqtt://sensor:{SECRET}{'x' * 80}@localhost:99999", "mqtt://sensor:***@localhost:99"),
    ],
)
def test_check_config_never_prints_a_password_in_the_url(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    url: str,
    shown: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = _write_config(tmp_path, {"url": url}, bundle=tmp_path / "absent.aew")
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    everything = out.out + out.err + caplog.text
    assert SECRET not in everything and "hunter2" not in everything
    assert f'broker.url = "{shown}' in out.err
    assert "broker.password" in out.err  # where the password goes instead


@pytest.mark.broker
def test_run_against_a_real_broker_never_prints_the_password(
    tmp_path: Path,
    start_broker: StartBroker,
    broker_credentials: Credentials,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In the URL: refused at start, the URL shown redacted. In ``broker.password``: the
    daemon connects, logs at DEBUG and stops on SIGTERM, and no line holds the password."""
    login = broker_credentials
    broker = start_broker(f"allow_anonymous false\npassword_file {login.password_file}")
    bundle = _tiny_bundle(tmp_path / "m.aew")
    in_url = f"mqtt://{login.username}:{login.password}@127.0.0.1:{broker.port}"
    caplog.set_level(logging.DEBUG)
    bad = _write_config(tmp_path / "in-url", {"url": in_url}, bundle=bundle)
    assert main(["run", "--config", str(bad)]) == 2
    out = capsys.readouterr()
    refused = out.out + out.err + caplog.text
    assert login.password not in refused
    assert f"mqtt://{login.username}:***@127.0.0.1:{broker.port}" in refused

    good = _write_config(
        tmp_path / "in-field",
        {"url": broker.url, "username": login.username, "password": {"env": "AEWATCH_TEST_PW"}},
        bundle=bundle,
    )
    log = _run_until_connected(good, tmp_path / "run.log", {"AEWATCH_TEST_PW": login.password})
    assert login.password not in log
    assert f"connected to {broker.url}" in log
    assert login.password not in broker.log.read_text()


def _write_config(folder: Path, broker: dict[str, Any], *, bundle: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "broker": {"client_id": "redaction", "reconnect_min_s": 1, "reconnect_max_s": 1, **broker},
        "inputs": [{"topic": "redaction/in/{asset}/{channel}", "payload": "json"}],
        "models": [{"path": str(bundle), "assets": "well-*", "name": "well"}],
        "outputs": {"topic_prefix": "redaction"},
        "metrics": {"port": 0},
        "logging": {"level": "DEBUG"},
    }
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _tiny_bundle(path: Path) -> Path:
    """A PCA bundle over three channels, trained in well under a second."""
    n = 400
    t = np.arange(n, dtype=np.float64) * 2.0 + 1.7e9
    base = np.sin(t / 40.0)
    noise = 0.05 * np.random.default_rng(0).standard_normal((n, 3))
    values = np.column_stack([base, 2 * base + 1, -base]) + noise
    table = Table("synthetic.csv", t, values, ("p", "q", "r"), None, None, np.arange(n) + 2)
    settings = TrainSettings(
        arch="pca", window_len=8, fpr=0.05, fit=FitSettings(epochs=1, show_progress=False)
    )
    train_bundle([table], settings).bundle.save(path)
    return path


def _run_until_connected(config: Path, log: Path, environ: dict[str, str]) -> str:
    """``aewatch run`` in a child process until it has connected, then SIGTERM; all it wrote."""
    command = [sys.executable, "-m", "aewatch", "run", "--config", str(config)]
    with log.open("wb") as out:
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **environ}
        )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "connected to" not in log.read_text() and child.poll() is None:
            assert time.monotonic() < deadline, f"no connection: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        assert child.wait(TIMEOUT_S) == 0, log.read_text()[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(TIMEOUT_S)
    return log.read_text()
