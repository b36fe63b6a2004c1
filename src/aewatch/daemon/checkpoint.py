"""Checkpoints of the decisions' state, so a restart after a kill goes on too (shell).

A restart replays the journal's records still needed for the windows to come (see
:mod:`aewatch.daemon.journal`). Those records also hold rows of windows the earlier
process had decided, and without its state (the checks' CUSUM sums and latches, the
smoothed error, the drift baseline, the open alert) the new process would decide them
again from nothing: a shift sum building up is forgotten, an alert held through a partly
undone step is resolved. So the scoring worker saves, once a start's replay is through,
then every :data:`EVERY_S` seconds and at a clean stop, each asset's newest decided
window and its decisions' state (:meth:`Pipeline.decided <aewatch.core.pipeline.Pipeline.decided>`,
:meth:`Pipeline.states <aewatch.core.pipeline.Pipeline.states>`) with the journal's
released seq at that moment.

A checkpoint is written only once the broker has acknowledged every output published
until it was taken: a start skips the windows up to its marks, so an alert of one of
them must already be out. Until then it waits (the newer decisions go on), and the
journal keeps every record after the newest written one. The worker takes one when no
window waits, and never while a start's replay is being skipped through; a thread of its
own turns it into JSON, an asset at a time, and writes it (most of the time a checkpoint
takes: for 1 000 three-channel assets 28-46 ms to take, 67-112 ms to write), so the
worker is not held up for the whole of it. Taking and writing cost at most
:data:`COST_SHARE` of the time (a fleet whose states take longer to save is saved less
often). And checkpoints write no more bytes than the journal does: a fleet of many
channels read slowly (a hundred assets with ten channels read every ten seconds journal
a few kB a second, and a checkpoint of them is about 1 MB) is saved every few minutes
(at most :data:`MAX_EVERY_S` apart), not every second, so that the disk, often flash on
an edge box, is not worn by the states more than by the data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from aewatch.core.pipeline import Pipeline
from aewatch.daemon.fleet import ServedModel
from aewatch.daemon.journal import Journal

__all__ = ["COST_SHARE", "EVERY_S", "MAX_EVERY_S", "Checkpoints"]

EVERY_S = 1.0  # seconds between checkpoints, at least
MAX_EVERY_S = 300.0  # seconds between checkpoints, at most (while outputs are delivered)
COST_SHARE = 0.02  # of the time that taking and writing checkpoints may take, at most

log = logging.getLogger("aewatch.daemon")


@dataclass(slots=True)
class _Taken:
    """A checkpoint taken and not yet written: its note, the released seq when taken,
    and the outputs published until then that the broker had not acknowledged."""

    note: dict[str, Any]
    released: int
    sent: list[mqtt.MQTTMessageInfo] = field(default_factory=list)
    taken_s: float = 0.0  # the clock when taken
    cost_s: float = 0.0  # the worker's time taking it cost

    def is_delivered(self) -> bool:
        self.sent = [info for info in self.sent if not info.is_published()]
        return not self.sent


class Checkpoints:
    """Take and write checkpoints of ``pipeline`` into ``journal`` (worker thread).

    ``unacknowledged`` gives the outputs published so far that the broker has not
    acknowledged (:meth:`~aewatch.daemon.ledger.Ledger.unacknowledged`).
    """

    def __init__(
        self,
        journal: Journal,
        pipeline: Pipeline[ServedModel],
        unacknowledged: Callable[[], list[mqtt.MQTTMessageInfo]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.pipeline = pipeline
        self.unacknowledged = unacknowledged
        self.clock = clock
        self._taken: _Taken | None = None
        # The first is due at once: a start that gets through its replay saves where it
        # is, so a run killed over and over soon after its start does not replay more
        # each time.
        self._next_s = clock()
        self.written = 0  # checkpoints written by this process
        self.failed = 0  # checkpoints that could not be written
        self._failed = False  # the last write failed (logged once until one succeeds)
        self._writer: threading.Thread | None = None  # the write under way, if any
        # The journal's bytes and the clock at the last write: its write rate since.
        self._appended, self._appended_s = journal.appended, clock()

    def tick(self) -> None:
        """Start writing the checkpoint waiting for its outputs once they are out, and
        take the next when it is due (no window waiting, no replay being skipped
        through); one write at a time."""
        if self._writer is not None and self._writer.is_alive():
            return
        if self._taken is not None and self._taken.is_delivered():
            self._start_writing(self._taken)
            self._taken = None
        elif self._taken is None and self.clock() >= self._next_s:
            self._taken = self._take()
            if self._taken.is_delivered():
                self._start_writing(self._taken)
                self._taken = None

    def wait(self) -> None:
        """Until the write under way, if any, is done."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def final(self) -> bool:
        """At a clean stop, once the worker drained: write a last checkpoint, or, when the
        broker has not acknowledged every output, the one waiting if its are out. Whether
        the last one was written."""
        self.wait()
        if self._taken is not None and self._taken.is_delivered():
            self._write(self._taken)
        self._taken = None
        last = self._take()
        if last.is_delivered():
            return self._write(last)
        log.warning(
            "stop: the broker has not acknowledged %d outputs; the next start decides the "
            "windows since the last checkpoint again and publishes them once more",
            len(last.sent),
        )
        return False

    def _take(self) -> _Taken:
        started = self.clock()
        assets = {
            asset: {"model": model.version, "state": state}
            for asset, (model, state) in self.pipeline.states().items()
        }
        note = {"decided": self.pipeline.decided(), "assets": assets}
        taken = _Taken(note, self.journal.released, self.unacknowledged(), started)
        taken.cost_s = self.clock() - started
        self._next_s = started + max(EVERY_S, taken.cost_s / COST_SHARE)
        return taken

    def _start_writing(self, taken: _Taken) -> None:
        self._writer = threading.Thread(
            target=self._write_logged, args=(taken,), name="aewatch-checkpoint", daemon=True
        )
        self._writer.start()

    def _write_logged(self, taken: _Taken) -> None:
        try:
            self._write(taken)
        except Exception:  # a bug: the next checkpoint tries again
            log.exception("internal error writing a checkpoint to %s", self.journal.folder)

    def _write(self, taken: _Taken) -> bool:
        """Write ``taken`` (the writer's thread, or the worker's at a stop)."""
        started = self.clock()
        try:
            size = self.journal.checkpoint(taken.note, taken.released)
        except OSError as err:
            if not self._failed:
                log.warning(
                    "cannot write a checkpoint to %s (%s); the journal keeps every record "
                    "since the last one, and a start decides their windows again",
                    self.journal.folder,
                    err.strerror or err,
                )
            self._failed = True
            self.failed += 1
            return False
        self._failed = False
        self.written += 1
        now = self.clock()
        cost_s = taken.cost_s + now - started
        appended, self._appended = self.journal.appended - self._appended, self.journal.appended
        rate = appended / max(now - self._appended_s, 1e-3)  # the journal's bytes a second
        self._appended_s = now
        as_much_s = MAX_EVERY_S if rate * MAX_EVERY_S <= size else size / rate
        self._next_s = max(self._next_s, taken.taken_s + max(cost_s / COST_SHARE, as_much_s))
        return True
