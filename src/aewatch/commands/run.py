"""``aewatch run``: the daemon, until SIGTERM or SIGINT (shell).

Loads and checks the configuration and every model bundle before connecting, so a bad
file refuses to start with exit status 2 and a message naming it. Then it runs until
signalled: SIGHUP reloads the config and bundles (a broken one keeps the old serving),
SIGTERM/SIGINT drain, publish ``stopped`` and exit 0. Under systemd (``$NOTIFY_SOCKET``)
it sends ``READY=1`` once serving, ``RELOADING=1``/``READY=1`` around a reload,
``STOPPING=1``, and ``WATCHDOG=1`` while the scoring worker is alive.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from aewatch.config import load_config
from aewatch.daemon.logs import setup_logging
from aewatch.daemon.notify import Notifier, watchdog_interval_s
from aewatch.daemon.service import Daemon

__all__ = ["register", "run"]

log = logging.getLogger("aewatch.run")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` verb."""
    p = sub.add_parser(
        "run",
        help="run the daemon: MQTT readings in, alerts out",
        description="Subscribe to the configured inputs, score every asset's windows with "
        "its model and publish alerts, until SIGTERM or SIGINT. Check the file first with "
        "`aewatch check-config FILE`.",
    )
    p.add_argument("--config", type=Path, required=True, metavar="FILE")
    p.add_argument("--device", default="cpu", help="torch device for scoring (default cpu)")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to drain the queue at stop (default %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until signalled; return 0 after a clean stop, 1 when the drain ran out of time."""
    config = load_config(args.config)
    setup_logging(config.logging.level, as_json=config.logging.as_json)
    daemon = Daemon(config, device=args.device, config_path=args.config)
    # torch, the models and the config live as long as the process: move them out of the
    # collector's sight, or every full collection walks them all (tens of ms, a latency
    # spike each time) while the readings churn through young objects.
    gc.freeze()
    notifier = Notifier()
    stopping, reloading, wake = threading.Event(), threading.Event(), threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("got %s; stopping", signal.Signals(signum).name)
        stopping.set()
        wake.set()

    def on_reload(_signum: int, _frame: FrameType | None) -> None:
        reloading.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    daemon.start()
    notifier.ready("serving")
    ping_s = watchdog_interval_s()
    tick_s = min(1.0, ping_s) if ping_s else 1.0

    def ping() -> None:
        """Pet systemd's watchdog, but only while the scoring worker is alive."""
        if ping_s and daemon.is_alive()[0]:
            notifier.watchdog()

    while not stopping.is_set():
        if reloading.is_set():
            reloading.clear()
            log.info("got SIGHUP; reloading %s", args.config)
            notifier.reloading()
            # Reload on a thread, so the watchdog keeps hearing from us while bundles load.
            reloader = threading.Thread(target=daemon.reload, name="aewatch-reload")
            reloader.start()
            while reloader.is_alive():
                ping()
                reloader.join(tick_s)
            notifier.ready("serving")
        ping()
        wake.wait(tick_s)
        wake.clear()
    notifier.stopping()
    drained = daemon.stop(args.stop_timeout)
    # What is left is freed at exit anyway. Freezing it spares the interpreter's final
    # collection over torch's object graph: seconds that systemd's TimeoutStopSec counts.
    gc.freeze()
    return 0 if drained else 1
