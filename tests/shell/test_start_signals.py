"""Signals at every stage of ``aewatch run`` (issue 13, item 8), against a real Mosquitto.

A SIGHUP while the daemon is still starting used to end it (the default action of SIGHUP,
before the handler was installed after the models had loaded). Now the handlers are in
place before torch is even imported: SIGHUPs sent all through start-up wait, and one
reload follows once the daemon serves; a SIGTERM while starting stops it with exit 0
before it connects; a SIGTERM during a reload stops it cleanly too. The daemon runs as a
subprocess (``test_operate``'s fixtures); the tests read ``/proc/PID`` to see when the
handlers are in place and whether torch is loaded yet.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from . import test_operate as operate
from .test_operate import (
    EXIT_GRACE_S,
    RELOADS_FAILED,
    RELOADS_OK,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Launch,
    Service,
)

pytestmark = pytest.mark.broker

bundles, launch, prefix = operate.bundles, operate.launch, operate.prefix  # shared fixtures


def _is_caught(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # exited
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def _has_torch(pid: int) -> bool:
    """Whether torch's library is mapped into process ``pid`` yet."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _handlers_in_place(service: Service) -> None:
    """Wait until the starting daemon catches SIGHUP; check torch is not loaded yet."""
    pid = service.process.pid
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _is_caught(pid, signal.SIGHUP):
        service.assert_running()
        assert time.monotonic() < deadline, "the daemon never installed its handlers"
        time.sleep(0.002)
    assert not _has_torch(pid), "the handlers came only after torch had loaded"


def test_sighups_while_starting_wait_and_reload_once_serving(launch: Launch) -> None:
    service = launch()
    _handlers_in_place(service)
    sent = 0
    while True:  # SIGHUP every 50 ms until the daemon is ready
        service.send_signal(signal.SIGHUP)
        sent += 1
        try:
            if service.get("/readyz")[0] == 200:
                break
        except OSError:  # not listening yet: still importing or loading
            pass
        time.sleep(0.05)
    assert sent >= 5, f"only {sent} SIGHUPs went out while starting"
    samples = service.wait_for("the deferred reload", lambda m: m[RELOADS_OK] >= 1)
    assert samples[RELOADS_FAILED] == 0
    service.assert_running()
    log = service.log_text()
    assert "got SIGHUP while starting; reloading now that the daemon serves" in log, log
    assert "Traceback" not in log


def test_sigterm_while_starting_stops_cleanly_before_connecting(launch: Launch) -> None:
    service = launch()
    _handlers_in_place(service)
    service.send_signal(signal.SIGTERM)
    assert service.process.wait(START_TIMEOUT_S) == 0, service.log_text()
    log = service.log_text()
    assert "got SIGTERM while starting; stopping before serving" in log, log
    assert "starting: broker" not in log  # it never connected
    assert "Traceback" not in log


def test_sigterm_during_a_reload_stops_cleanly(launch: Launch) -> None:
    service = launch()
    service.wait_ready()
    service.send_signal(signal.SIGHUP)
    service.send_signal(signal.SIGTERM)
    assert service.process.wait(STOP_TIMEOUT_S + EXIT_GRACE_S) == 0, service.log_text()
    log = service.log_text()
    assert log.splitlines()[-1].endswith("stopped"), log
    assert "Traceback" not in log
