"""deploy/systemd/aewatch.service, its reload helper and deploy/install.sh, checked for real.

``systemd-analyze verify`` runs on the unit file as committed, inside a scratch root that
holds the system's own units and stand-ins for the venv executables (the unit names
/opt/aewatch/venv/..., which this machine does not have); ``systemd-analyze security
--offline=true`` scores it. The reload helper runs against a stand-in daemon that serves
the reload counters and against a real ``aewatch run`` (marked ``broker``). install.sh
goes through ``bash -n`` and shellcheck. Running the unit under systemd needs a booted
systemd and root; docs/deployment.md says how that was done and what it showed.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from .conftest import Broker

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "aewatch.service"
HELPER = REPO / "deploy" / "systemd" / "aewatch_reload.py"
INSTALL = REPO / "deploy" / "install.sh"
EXAMPLE_CONFIG = REPO / "config" / "aewatch.example.yaml"
VENV = "/opt/aewatch/venv"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.5  # "OK" or better in systemd-analyze's words
START_TIMEOUT_S = 90.0  # importing torch on a busy 2-core machine
RELOAD_DELAY_S = 1.0  # the stand-in daemon's reload takes this long

_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    _ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


# -- the unit -----------------------------------------------------------------------------


def _settings(unit_text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, in order, keyed by name."""
    found: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _executables(unit_text: str) -> list[Path]:
    """The programs the unit's Exec*= lines run."""
    settings = _settings(unit_text)
    lines = [v for key, values in settings.items() if key.startswith("Exec") for v in values]
    return [Path(line.lstrip("-+!@:").split()[0]) for line in lines]


def _verify(unit_text: str, root: Path, *, with_executables: bool = True) -> str:
    """``systemd-analyze verify`` of ``unit_text`` installed under ``root``; its output."""
    assert _ANALYZE is not None
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    installed = unit_dir / "aewatch.service"
    installed.write_text(unit_text)
    # The targets it orders itself against (network-online.target, multi-user.target...).
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    for program in _executables(unit_text) if with_executables else []:
        stand_in = root / program.relative_to("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    done = subprocess.run(
        [_ANALYZE, "verify", "--man=no", f"--root={root}", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    return output if output or done.returncode == 0 else f"exit status {done.returncode}"


@needs_analyze
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    assert _verify(UNIT.read_text(), tmp_path) == ""


@needs_analyze
def test_verify_reports_a_misspelt_key_and_a_missing_program(tmp_path: Path) -> None:
    """The check above would catch these (it is not silently passing)."""
    misspelt = UNIT.read_text().replace("\nType=notify\n", "\nTpye=notify\n")
    assert "Unknown key 'Tpye'" in _verify(misspelt, tmp_path / "misspelt")
    missing = _verify(UNIT.read_text(), tmp_path / "missing", with_executables=False)
    assert "/opt/aewatch/venv/bin/aewatch is not executable" in missing


@needs_analyze
def test_exposure_is_ok_or_better() -> None:
    assert _ANALYZE is not None
    done = subprocess.run(
        [_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for aewatch\.service: (\d+\.\d+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    exposure, verdict = float(found[1]), found[2]
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} {verdict}:\n{done.stdout}"


def test_unit_runs_the_daemon_as_the_issue_asks() -> None:
    settings = _settings(UNIT.read_text())
    one = {key: values[-1] for key, values in settings.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == f"{VENV}/bin/aewatch run --config /etc/aewatch/aewatch.yaml"
    assert one["ExecReload"].startswith(
        f"{VENV}/bin/python /opt/aewatch/libexec/aewatch-reload --pid $MAINPID"
    )
    assert one["WatchdogSec"]
    assert one["LoadCredential"] == "mqtt-password:/etc/aewatch/mqtt-password"
    assert one["StateDirectory"] == "aewatch"
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert one[key] == value, key
    assert settings["SystemCallFilter"][0] == "@system-service"
    # PyTorch's oneDNN kernels (the conv models) need memory that becomes executable.
    assert "MemoryDenyWriteExecute" not in settings


def test_the_example_state_dir_is_a_folder_the_unit_may_write() -> None:
    """ProtectSystem=strict leaves only the StateDirectory= writable: the journal and the
    state key must live there, in a folder of their own beside the bundles."""
    one = {key: values[-1] for key, values in _settings(UNIT.read_text()).items()}
    assert "ReadWritePaths" not in one
    state_root = Path("/var/lib") / one["StateDirectory"]
    state_dir = Path(yaml.safe_load(EXAMPLE_CONFIG.read_text())["state_dir"])
    assert state_dir.parent == state_root, f"{state_dir} is not a folder in {state_root}"


# -- the reload helper ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def helper() -> ModuleType:
    """deploy/systemd/aewatch_reload.py as a module."""
    spec = importlib.util.spec_from_file_location("aewatch_reload", HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_helper_doctests(helper: ModuleType) -> None:
    assert doctest.testmod(helper, raise_on_error=True).attempted > 0


@pytest.mark.parametrize(
    ("metrics", "url"),
    [
        ("", "http://127.0.0.1:9108/metrics"),
        ("metrics: {port: 9200}", "http://127.0.0.1:9200/metrics"),
        ("metrics: {listen: 0.0.0.0, port: 9200}", "http://127.0.0.1:9200/metrics"),
        ("metrics: {listen: '::', port: 9200}", "http://[::1]:9200/metrics"),
        ("metrics: {listen: 10.0.0.5}", "http://10.0.0.5:9108/metrics"),
    ],
)
def test_metrics_url_from_the_config(
    helper: ModuleType, tmp_path: Path, metrics: str, url: str
) -> None:
    config = tmp_path / "aewatch.yaml"
    config.write_text(f"broker: {{url: 'mqtt://h'}}\n{metrics}\n")
    assert helper.metrics_url(config) == url


@pytest.mark.parametrize("text", ["metrics: {port: 0}", "metrics: {port: [", "metrics: {port: x}"])
def test_metrics_url_refuses_what_it_cannot_use(
    helper: ModuleType, tmp_path: Path, text: str
) -> None:
    config = tmp_path / "aewatch.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(config))):
        helper.metrics_url(config)


_STAND_IN = """\
import http.server, signal, sys, threading, time
result, port_file, hups_file = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {"ok": 0, "failed": 0}

def reload_later(*_):
    with open(hups_file, "a") as f:
        f.write("HUP\\n")
    if result != "never":
        threading.Timer(DELAY_S, lambda: counts.__setitem__(result, counts[result] + 1)).start()

class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "".join(
            f'aewatch_reloads_total{{result="{k}"}} {v}.0\\n' for k, v in counts.items()
        ).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass

signal.signal(signal.SIGHUP, reload_later)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
server.serve_forever()
""".replace("DELAY_S", repr(RELOAD_DELAY_S))


class StandIn:
    """A process that serves reload counters and bumps one a while after each SIGHUP."""

    def __init__(self, folder: Path, result: str) -> None:
        script, port_file = folder / "stand_in.py", folder / "port"
        self.hups = folder / "hups"
        script.write_text(_STAND_IN)
        self.process = subprocess.Popen(
            [sys.executable, str(script), result, str(port_file), str(self.hups)]
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert time.monotonic() < deadline, "the stand-in daemon did not start"
            time.sleep(0.02)
        self.config = folder / "aewatch.yaml"
        self.config.write_text(f"metrics:\n  port: {port_file.read_text()}\n")

    @property
    def hangups(self) -> int:
        return len(self.hups.read_text().splitlines()) if self.hups.exists() else 0

    @property
    def command(self) -> list[str]:
        """The helper's command line for this daemon."""
        pid, config = str(self.process.pid), str(self.config)
        return [sys.executable, str(HELPER), "--pid", pid, "--config", config]

    def reload(self, *extra: str) -> tuple[int, str, float]:
        """Run the helper on it: (exit status, its output, seconds it took)."""
        started = time.monotonic()
        done = subprocess.run(
            [*self.command, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr, time.monotonic() - started

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[type[StandIn]]:
    started: list[StandIn] = []

    class Started(StandIn):
        def __init__(self, folder: Path, result: str) -> None:
            super().__init__(folder, result)
            started.append(self)

    try:
        yield Started
    finally:
        for one in started:
            one.stop()


def test_helper_returns_once_the_reload_is_done(stand_in: type[StandIn], tmp_path: Path) -> None:
    daemon = stand_in(tmp_path, "ok")
    status, output, took_s = daemon.reload()
    assert (status, daemon.hangups) == (0, 1), output
    assert took_s >= RELOAD_DELAY_S  # it waited for the counter, not only for the signal
    assert "serves the new configuration" in output


def test_helper_fails_when_the_daemon_keeps_the_old_config(
    stand_in: type[StandIn], tmp_path: Path
) -> None:
    daemon = stand_in(tmp_path, "failed")
    status, output, _ = daemon.reload()
    assert (status, daemon.hangups) == (1, 1), output
    assert "keeps serving the old ones" in output


def test_helper_gives_up_after_its_timeout(stand_in: type[StandIn], tmp_path: Path) -> None:
    daemon = stand_in(tmp_path, "never")
    status, output, took_s = daemon.reload("--timeout", "1")
    assert (status, daemon.hangups) == (1, 1), output
    assert "no reload result" in output
    assert took_s < 10


def test_helper_does_not_signal_when_it_cannot_watch(
    stand_in: type[StandIn], tmp_path: Path
) -> None:
    daemon = stand_in(tmp_path, "ok")
    daemon.config.write_text(f"metrics:\n  port: {_free_port()}\n")  # nobody listens
    status, output, _ = daemon.reload()
    assert (status, daemon.hangups) == (1, 0), output
    assert "cannot read the daemon's reload counters" in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.broker
def test_helper_reloads_a_real_daemon(broker: Broker, tmp_path: Path) -> None:
    """The counters the helper reads are the ones ``aewatch run`` exports."""
    from aewatch.cli import main  # noqa: PLC0415  (imports torch)

    data, bundle = tmp_path / "history.csv", tmp_path / "well.aew"
    assert main(["simulate", "--scenario", "well", "--hours", "1", "--out", str(data)]) == 0
    assert main(["train", "--data", str(data), "--out", str(bundle), "--quiet"]) == 0
    port = _free_port()
    config = tmp_path / "aewatch.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            broker: {{url: "{broker.url}", client_id: test-systemd-helper}}
            inputs: [{{topic: "test-systemd/in/{{asset}}/{{channel}}", payload: json}}]
            models: [{{path: {bundle.name}}}]
            outputs: {{topic_prefix: test-systemd/out}}
            metrics: {{port: {port}}}
            """)
    )
    log = tmp_path / "aewatch.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "aewatch", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(port, daemon, log)
        helper = [sys.executable, str(HELPER), "--pid", str(daemon.pid), "--config", str(config)]
        done = subprocess.run(helper, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr + log.read_text()
        assert "reloaded: models" in log.read_text()
        config.write_text(config.read_text() + "no_such_key: 1\n")
        done = subprocess.run(helper, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1, done.stdout + log.read_text()
        assert "no_such_key" in log.read_text()
        metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert 'aewatch_reloads_total{result="ok"} 1.0' in metrics
        assert 'aewatch_reloads_total{result="failed"} 1.0' in metrics
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _wait_ready(port: int, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()
        try:
            _get(f"http://127.0.0.1:{port}/readyz")
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"aewatch run was not ready within {START_TIMEOUT_S} s:\n{log.read_text()}")


# -- install.sh -----------------------------------------------------------------------------


def test_install_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (apt-get install shellcheck)",
)
def test_install_script_passes_shellcheck() -> None:
    done = subprocess.run(
        ["shellcheck", "--severity=style", str(INSTALL)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_script_refuses_to_run_as_a_user_or_on_a_missing_package(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(INSTALL), str(tmp_path / "no-such.whl")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    expected = "run as root" if os.geteuid() != 0 else "no package at"
    assert expected in done.stderr


def _check_state_dir(config: Path) -> subprocess.CompletedProcess[str]:
    """install.sh's check_state_dir (with its STATE_ROOT) run on ``config``."""
    text = INSTALL.read_text()
    state_root = re.search(r"^readonly STATE_ROOT=.*$", text, re.MULTILINE)
    function = re.search(r"^check_state_dir\(\) \{\n.*?^\}\n", text, re.MULTILINE | re.DOTALL)
    assert state_root and function, "install.sh lost STATE_ROOT or check_state_dir"
    script = f"{state_root[0]}\nCONFIG_DIR={config.parent}\n{function[0]}check_state_dir\n"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("state_dir: /var/lib/aewatch/state", False),
        ("state_dir: '/var/lib/aewatch/journal'", False),
        ("state_dir: null", True),
        ("", True),
        ("# state_dir: /var/lib/aewatch/state", True),
        ("state_dir: /srv/aewatch/state", True),
        ("state_dir: state", True),
    ],
)
def test_install_script_says_when_the_kept_config_has_no_usable_state_dir(
    tmp_path: Path, line: str, says: bool
) -> None:
    config = tmp_path / "aewatch.yaml"
    config.write_text(f"broker:\n  url: mqtt://broker\n{line}\nlogging:\n  level: INFO\n")
    done = _check_state_dir(config)
    assert done.returncode == 0, done.stderr
    assert ("sets no state_dir under /var/lib/aewatch/" in done.stderr) is says, done.stderr


def test_install_script_is_silent_about_the_example_config_it_installs(tmp_path: Path) -> None:
    config = tmp_path / "aewatch.yaml"
    shutil.copy(EXAMPLE_CONFIG, config)
    done = _check_state_dir(config)
    assert (done.returncode, done.stderr) == (0, "")
