"""``aewatch run`` that also writes the daemon's counts to a JSON file, for the shell tests.

Usage: ``python daemon_with_counts.py COUNTS_FILE run --config FILE``. The process is the
real ``aewatch run`` (same signal handling, same exit status); its ``Daemon`` additionally
rewrites COUNTS_FILE every 0.1 s while running and once more after its clean stop, as
``{"intake": {...}, "pipeline": {...}, "daemon": {...}}``. A test that stops the daemon
with SIGTERM reads the counts there.

It imports aewatch (and torch), then waits for a line on stdin before it runs, so a test
can start the process early and not wait for the imports when it needs the daemon.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import aewatch.cli
import aewatch.daemon.service
from aewatch.daemon.service import Daemon

__all__ = ["main"]

_EVERY_S = 0.1


def main(argv: list[str]) -> int:
    """Run ``aewatch`` with ``argv[1:]``, reporting the daemon's counts to ``argv[0]``."""
    counts_file = Path(argv[0])

    class CountingDaemon(Daemon):
        """A Daemon that writes its counts to ``counts_file``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._is_stopped = threading.Event()

        def start(self) -> None:
            super().start()
            threading.Thread(target=self._report, name="counts", daemon=True).start()

        def stop(self, timeout_s: float = 10.0) -> bool:
            drained = super().stop(timeout_s)
            self._is_stopped.set()
            _write(self, counts_file)
            return drained

        def _report(self) -> None:
            while not self._is_stopped.wait(_EVERY_S):
                _write(self, counts_file)

    # `aewatch run` imports Daemon from the service module once its signal handlers are in.
    aewatch.daemon.service.Daemon = CountingDaemon  # type: ignore[misc]
    aewatch.cli._parser()  # imports every command now, before the go-ahead
    if not sys.stdin.readline():  # stdin closed without one
        return 1
    return aewatch.cli.main(argv[1:])


_write_lock = threading.Lock()


def _write(daemon: Daemon, path: Path) -> None:
    """Replace ``path`` with the daemon's counts (never a half-written file)."""
    with _write_lock:
        counts = {
            "intake": daemon.intake.counts.as_dict(),
            "pipeline": daemon.pipeline.counts.as_dict(),
            "daemon": daemon.counts.as_dict(),
        }
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(counts))
        os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
