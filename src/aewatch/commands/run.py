"""``aewatch run``: the daemon, until SIGTERM or SIGINT (shell).

Loads and checks the configuration and every model bundle before connecting, so a bad
file refuses to start with exit status 2 and a message naming it. The signal handlers are
in place before any of that: a SIGHUP while starting waits and reloads once the daemon
serves, a SIGTERM or SIGINT while starting ends it before it connects, with exit 0. Then
it runs until signalled: SIGHUP reloads the config and bundles (a broken one keeps the old
serving), SIGTERM/SIGINT drain, publish ``stopped`` and exit 0. Under systemd (``$NOTIFY_SOCKET``)
it sends ``READY=1`` once serving, ``RELOADING=1``/``READY=1`` around a reload,
``STOPPING=1``, and ``WATCHDOG=1`` while the scoring worker is alive.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aewatch.daemon.notify import Notifier
    from aewatch.daemon.service import Daemon

__all__ = ["register", "run"]

log = logging.getLogger("aewatch.run")


@dataclass
class _Signals:
    """What the handlers saw; the main thread acts on it (nothing is logged in a handler)."""

    stopping: threading.Event = field(default_factory=threading.Event)
    reloading: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    stop_signal: str = ""

    def install(self) -> dict[signal.Signals, Any]:
        """Take SIGTERM, SIGINT and SIGHUP from now on; return the handlers they had."""
        handlers = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGHUP: self._on_reload,
        }
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = self.stop_signal or signal.Signals(signum).name
        self.stopping.set()
        self.wake.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reloading.set()
        self.wake.set()


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
    # The handlers come first, before torch and the models load (seconds): a SIGHUP while
    # starting would otherwise end the process (the default action), and a SIGTERM would
    # not be a clean stop. A SIGHUP then waits until the daemon serves; a SIGTERM ends the
    # start-up at the next step.
    signals = _Signals()
    previous = signals.install()
    try:
        daemon = _started(args, signals)
    except BaseException:  # a refusal to start: the caller gets its handlers back
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        raise
    from aewatch.daemon.notify import Notifier  # noqa: PLC0415

    notifier = Notifier()
    if daemon is None:
        log.info("got %s while starting; stopping before serving", signals.stop_signal)
        notifier.stopping()
        return 0
    # torch, the models and the config live as long as the process: move them out of the
    # collector's sight, or every full collection walks them all (tens of ms, a latency
    # spike each time) while the readings churn through young objects.
    gc.freeze()
    daemon.start()
    notifier.ready("serving")
    if signals.reloading.is_set():
        log.info("got SIGHUP while starting; reloading now that the daemon serves")
    _serve(daemon, notifier, signals, args.config)
    log.info("got %s; stopping", signals.stop_signal)
    notifier.stopping()
    drained = daemon.stop(args.stop_timeout)
    # What is left is freed at exit anyway. Freezing it spares the interpreter's final
    # collection over torch's object graph: seconds that systemd's TimeoutStopSec counts.
    gc.freeze()
    return 0 if drained else 1


def _started(args: argparse.Namespace, signals: _Signals) -> Daemon | None:
    """Load the configuration and the models; None when a stop signal came meanwhile.

    Raises:
        AewatchError: the configuration or a model cannot be used (exit 2).
    """
    from aewatch.config import load_config  # noqa: PLC0415  (after the handlers)
    from aewatch.daemon.logs import setup_logging  # noqa: PLC0415

    config = load_config(args.config)
    setup_logging(config.logging.level, as_json=config.logging.as_json)
    if signals.stopping.is_set():
        return None
    from aewatch.daemon.service import Daemon  # noqa: PLC0415  (torch: seconds)

    daemon = Daemon(config, device=args.device, config_path=args.config)
    return None if signals.stopping.is_set() else daemon


def _serve(daemon: Daemon, notifier: Notifier, signals: _Signals, config_path: Path) -> None:
    """Reload on SIGHUP and pet the watchdog until a stop signal."""
    from aewatch.daemon.notify import watchdog_interval_s  # noqa: PLC0415

    ping_s = watchdog_interval_s()
    tick_s = min(1.0, ping_s) if ping_s else 1.0

    def ping() -> None:
        """Pet systemd's watchdog, but only while the scoring worker is alive."""
        if ping_s and daemon.is_alive()[0]:
            notifier.watchdog()

    while not signals.stopping.is_set():
        if signals.reloading.is_set():
            signals.reloading.clear()
            log.info("got SIGHUP; reloading %s", config_path)
            notifier.reloading()
            # Reload on a thread, so the watchdog keeps hearing from us while bundles load.
            reloader = threading.Thread(target=daemon.reload, name="aewatch-reload")
            reloader.start()
            while reloader.is_alive():
                ping()
                reloader.join(tick_s)
            notifier.ready("serving")
        ping()
        signals.wake.wait(tick_s)
        signals.wake.clear()
