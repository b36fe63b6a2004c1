"""The demo's two child processes, a private mosquitto and the daemon, and how they end (shell).

Both start in their own session, so a Ctrl-C in the terminal reaches only the demo, which
then stops them in order: the daemon first (it drains and publishes ``stopped``), then the
broker. :meth:`Child.stop` sends SIGTERM by PID, waits, and kills after a timeout; it is
safe to call twice, so the demo calls it both on the normal path and in its ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aewatch.errors import AewatchError

__all__ = ["Child", "find_mosquitto", "start_broker", "start_daemon"]

SBIN_MOSQUITTO = Path("/usr/sbin/mosquitto")  # Debian installs it outside a user's PATH
_LISTEN_TIMEOUT_S = 10.0
_PORT_TRIES = 3  # another program may take the free port between our look and mosquitto's bind


@dataclass
class Child:
    """A child process started by the demo, with the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def is_running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; return the exit status."""
        if self.is_running:
            with contextlib.suppress(ProcessLookupError):  # it exited since the poll
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the process's output, for an error message."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as err:
            return f"(cannot read {self.log}: {err.strerror})"


def find_mosquitto() -> Path:
    """The mosquitto binary: on the PATH, or Debian's ``/usr/sbin/mosquitto``.

    Raises:
        AewatchError: there is none.
    """
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    if SBIN_MOSQUITTO.is_file():
        return SBIN_MOSQUITTO
    raise AewatchError(
        "the demo runs a private MQTT broker, but mosquitto is not installed (not on the "
        f"PATH, no {SBIN_MOSQUITTO}); install it with `apt-get install mosquitto` "
        "(or `make setup`, which does)"
    )


def start_broker(binary: Path, folder: Path) -> tuple[Child, int]:
    """Start mosquitto on a free loopback port with a config written to ``folder``.

    Returns the running broker and its port once it accepts connections.

    Raises:
        AewatchError: it exited or did not listen (the message holds its log).
    """
    config, log = folder / "mosquitto.conf", folder / "mosquitto.log"
    for _ in range(_PORT_TRIES):
        port = _free_port()
        config.write_text(_broker_config(port))
        broker = _spawn("mosquitto", [str(binary), "-c", str(config)], log)
        try:
            if _wait_listening(broker, port):
                return broker, port
        except BaseException:  # Ctrl-C while it starts: the caller has no handle to stop it
            broker.stop()
            raise
        broker.stop()
    raise AewatchError(
        f"mosquitto ({binary}) did not start on a free port of 127.0.0.1; its log "
        f"{log} ends:\n{broker.log_tail()}"
    )


def start_daemon(config: Path, log: Path) -> Child:
    """Start ``python -m aewatch run --config CONFIG``, its output going to ``log``."""
    command = [sys.executable, "-m", "aewatch", "run", "--config", str(config)]
    return _spawn("aewatch run", command, log)


def _spawn(name: str, command: list[str], log: Path) -> Child:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log)


def _broker_config(port: int) -> str:
    # max_queued_messages: the replay outruns the daemon for a while, and mosquitto's
    # default of 1000 queued messages per client would drop the rest.
    return (
        "# Written by `aewatch demo`: a private broker for one run, gone when it ends.\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 100000\n"
        "log_dest stdout\n"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(broker: Child, port: int) -> bool:
    deadline = time.monotonic() + _LISTEN_TIMEOUT_S
    while time.monotonic() < deadline and broker.is_running:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
