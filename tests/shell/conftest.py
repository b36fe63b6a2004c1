"""A real Mosquitto for the tests that need a broker: started on a free loopback port with a
config written for the test (plain, password or TLS), stopped by its PID. Tests using it are
marked ``broker``.

``broker`` is a plain, anonymous broker; ``start_broker`` starts one with extra listener
settings (its ``Broker`` is stopped at the end of the test); ``broker_credentials`` and
``broker_certificates`` make a password file and a CA with server and client certificates.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest


@dataclass
class Broker:
    """A running mosquitto: ``url`` to connect to, ``restart()`` for fault tests."""

    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes]
    scheme: str = "mqtt"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.process = _start(self.config, self.log, self.port)


class StartBroker(Protocol):
    """The ``start_broker`` fixture's function."""

    def __call__(self, settings: str = ..., *, scheme: str = ...) -> Broker: ...


@dataclass(frozen=True)
class Credentials:
    """A mosquitto password file holding one user."""

    username: str
    password: str
    password_file: Path


@dataclass(frozen=True)
class Certificates:
    """PEM files of a test CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(config: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mosquitto did not listen on {port}: {log.read_text()[-2000:]}")


def _launch(folder: Path, settings: str, *, scheme: str) -> Broker:
    """Write a config with ``settings`` for a fresh listener in ``folder`` and start it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = folder / "mosquitto.conf"
    # Run as root, mosquitto would drop to the mosquitto user, which cannot read the
    # password and key files in the private test folder.
    user = ["user root"] if os.geteuid() == 0 else []
    log = folder / "mosquitto.log"
    # A log file, unlike stdout, is written line by line, so a test can read it as it runs;
    # what mosquitto prints before it opens the file also goes there (see _start).
    # mosquitto drops QoS 1 messages beyond 1000 queued for a client, online or not; tests
    # publish bursts of thousands, which a subscriber busy scoring may lag behind.
    limits = ["max_queued_messages 100000"]
    lines = [f"listener {port} 127.0.0.1", settings.strip(), *user, *limits, "persistence false"]
    config.write_text("\n".join([*lines, f"log_dest file {log}", ""]))
    return Broker(port, config, log, _start(config, log, port), scheme)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private, plain (no auth) mosquitto on a free loopback port."""
    running = _launch(tmp_path / "broker", "allow_anonymous true", scheme="mqtt")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    """``start_broker(settings, scheme="mqtt")``: a mosquitto with these listener settings.

    ``settings`` are mosquitto.conf lines that follow the ``listener`` line (e.g.
    ``allow_anonymous true``, ``password_file ...``, ``certfile ...``). Every broker started
    is stopped when the test ends.
    """
    started: list[Broker] = []

    def start(settings: str = "allow_anonymous true", *, scheme: str = "mqtt") -> Broker:
        running = _launch(tmp_path / f"broker-{len(started)}", settings, scheme=scheme)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


@pytest.fixture(scope="session")
def broker_credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """A password file for user ``sensor`` made with ``mosquitto_passwd -b``."""
    folder = tmp_path_factory.mktemp("credentials")
    password_file = folder / "passwords"
    password = "s3cret-Pa55word-not-in-logs"
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run(
        [binary, "-c", "-b", str(password_file), "sensor", password],
        check=True,
        capture_output=True,
    )
    return Credentials("sensor", password, password_file)


@pytest.fixture(scope="session")
def broker_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA and, signed by it, a server certificate for 127.0.0.1 and a client one."""
    folder = tmp_path_factory.mktemp("tls")
    ca = _issue(folder, "ca", "/CN=aewatch test CA", signer=None, extensions="")
    server = _issue(
        folder,
        "server",
        "/CN=127.0.0.1",
        signer=ca,
        extensions="subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client = _issue(
        folder, "client", "/CN=aewatch", signer=ca, extensions="extendedKeyUsage=clientAuth\n"
    )
    return Certificates(ca[1], server[1], server[0], client[1], client[0])


def _issue(
    folder: Path, name: str, subject: str, *, signer: tuple[Path, Path] | None, extensions: str
) -> tuple[Path, Path]:
    """A new EC key and its certificate (key, cert): self-signed, or signed by ``signer``."""
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    new_key = ["-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    new_key += ["-keyout", str(key), "-subj", subject]
    if signer is None:
        _openssl("req", "-x509", *new_key, "-out", str(cert), "-days", "2")
        return key, cert
    request, extfile = folder / f"{name}.csr", folder / f"{name}.ext"
    extfile.write_text(extensions)
    _openssl("req", *new_key, "-out", str(request))
    signed_by = ["-CAkey", str(signer[0]), "-CA", str(signer[1]), "-CAcreateserial"]
    output = ["-out", str(cert), "-days", "2"]
    _openssl("x509", "-req", "-in", str(request), *signed_by, "-extfile", str(extfile), *output)
    return key, cert


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run([binary, *args], check=True, capture_output=True)


@pytest.fixture
def daemon_log() -> Iterator[io.StringIO]:
    """Everything the ``aewatch`` loggers write during the test, down to DEBUG."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("aewatch")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
