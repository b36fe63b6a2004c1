"""systemd's notify protocol: ``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1`` (shell).

Messages go as datagrams to the socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract
socket when it starts with ``@``); without it every call does nothing, so the daemon runs
the same outside systemd. :func:`watchdog_interval_s` reads ``$WATCHDOG_USEC`` (honouring
``$WATCHDOG_PID``) and returns how often to send ``WATCHDOG=1``: half the timeout.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval_s"]

log = logging.getLogger("aewatch.notify")


class Notifier:
    """Sends state lines to systemd, or nothing when not started by it.

    >>> Notifier({}).send("READY=1")
    False
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address

    @property
    def is_enabled(self) -> bool:
        """True when a notify socket was given."""
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; True when it went out."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode())
        except OSError as err:
            log.warning("could not notify systemd at %s: %s", self.address, err)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up (or a reload) is complete."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """Tell systemd a reload has begun (with the monotonic time it asks for)."""
        return self.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> bool:
        """Tell systemd the service is stopping."""
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        """Pet the watchdog."""
        return self.send("WATCHDOG=1")


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half ``$WATCHDOG_USEC``), or None when off.

    >>> watchdog_interval_s({"WATCHDOG_USEC": "20000000"})
    10.0
    >>> watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    True
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
