"""A real Mosquitto for the tests that need a broker: started on a free loopback port with a
config written for the test, stopped by its PID. Tests using it are marked ``broker``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Broker:
    """A running mosquitto: ``url`` to connect to, ``restart()`` for fault tests."""

    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.process = _start(self.config, self.log, self.port)


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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private, plain (no auth) mosquitto on a free loopback port."""
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n"
    )
    log = tmp_path / "mosquitto.log"
    running = Broker(port, config, log, _start(config, log, port))
    try:
        yield running
    finally:
        running.stop()
