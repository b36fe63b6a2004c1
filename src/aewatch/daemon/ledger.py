"""At-least-once delivery of QoS 1 readings through a crash: the journal's bookkeeping (shell).

With ``state_dir`` set, the daemon acknowledges a QoS 1 message only once its readings are
queued for the scoring worker and written to the :class:`~aewatch.daemon.journal.Journal`.
:class:`Ledger` keeps what that takes:

* **Held messages.** A message the full queue has no room for waits here, decoded but not
  acknowledged, so the broker holds the rest back (its in-flight limit); the worker
  queues them, in order, as it makes room (:meth:`Ledger.admit_held`).
* **Marks.** Each record written is marked with its assets' newest reading times. The
  worker releases a record (:meth:`Ledger.settle`) once every asset in it is done with
  its readings (they lie before every window still to come, or the asset went silent)
  and the broker has acknowledged every output published until then, so a crash at any
  point replays what the next windows need and no alert is lost on the way out.
* **Replay.** A start queues every record not yet released again, oldest first
  (:meth:`Ledger.replay`), before it connects; :attr:`Ledger.replay_end` then says how
  many records the worker must have taken for the replay to be ingested.

Methods marked "intake lock held" run under the daemon's intake lock, which also keeps
a stop from falling between a check and a queue.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import paho.mqtt.client as mqtt

from aewatch.core.decode import Series
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.fleet import ServedModel
from aewatch.daemon.intake import Decoded, Intake, Items, RateLimitedLog
from aewatch.daemon.journal import Journal
from aewatch.daemon.mqtt import Publish
from aewatch.daemon.outputs import Outputs
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.errors import ConfigError

__all__ = ["Ledger", "open_journal"]

log = logging.getLogger("aewatch.daemon")

# An asset with no reading for this long (wall clock) lets its journal records go although
# its next window would still need them: a live reading after such a silence starts the
# window afresh anyway, and one asset gone quiet must not hold every record behind it.
# Its own gap limit counts when longer.
SILENT_S = 120.0


class _Held(NamedTuple):
    """A QoS 1 or 2 message decoded but not yet queued, nor acknowledged: no room."""

    publish: Publish
    message: Decoded
    arrival_s: float


class _Mark(NamedTuple):
    """A journal record whose readings are queued: its seq, its arrival time (wall clock)
    and each asset's newest reading time in it."""

    seq: int
    arrival_s: float
    newest: dict[str, float]


class Ledger:
    """The journal of ``intake``'s QoS 1 messages and what is done with them; see the
    module. ``lock`` is the daemon's intake lock."""

    def __init__(
        self, journal: Journal, intake: Intake, counts: ServiceCounts, lock: threading.Lock
    ) -> None:
        self.journal = journal
        self.intake = intake
        self.counts = counts
        self._lock = lock
        self._log = RateLimitedLog(log)
        # Journal records queued, oldest first; each asset's newest. Both change under the
        # intake lock only.
        self._marks: deque[_Mark] = deque()
        self._last_mark: dict[str, _Mark] = {}
        self.added = 0  # records ever queued, replayed ones included
        # Set once the replay has queued its records: ``added`` then. A worker that read
        # ``added`` at least this before it took the queue has taken every replayed record.
        self.replay_end: int | None = None
        # QoS 1 messages a full queue had no room for, in order: unacknowledged, so the
        # broker holds the rest back (its in-flight limit), and queued once there is room.
        self._held: deque[_Held] = deque()
        # Records done with in the pipeline, waiting for the broker to take the outputs.
        self._releasing: deque[tuple[int, list[mqtt.MQTTMessageInfo]]] = deque()

    @property
    def marked(self) -> int:
        """Records queued and not yet released."""
        return len(self._marks)

    @property
    def has_held(self) -> bool:
        """Whether messages wait for room in the queue."""
        return bool(self._held)

    def marked_assets(self) -> set[str]:
        """The assets of the records not yet released."""
        return {asset for mark in list(self._marks) for asset in mark.newest}

    def forget_held(self) -> None:
        """Drop the held messages: the connection is gone, and the broker's session sends
        them again after the reconnect (intake lock held)."""
        self._held.clear()

    def take(self, found: Sequence[Publish]) -> list[Publish]:
        """Queue and journal ``found``; the messages to acknowledge now (intake lock held).

        QoS 0 readings are queued, or dropped when full, as without a journal. A QoS 1 or 2
        message's readings go behind any held ones: once queued, its record is written
        and it is acknowledged; with no room it is held, unacknowledged (the worker queues
        it later). A message with no reading to queue (refused and counted) is done.
        """
        arrival_s = self.intake.clock()
        pairs = [(publish.topic, publish.payload) for publish in found]
        decoded = self.intake.decode_many(pairs, arrival_s=arrival_s)
        done: list[Publish] = []
        best_effort: list[Decoded] = []
        held = self._held
        before = len(held)
        taken = {message.position: message for message in decoded}
        for index, publish in enumerate(found):
            message = taken.get(index)
            if message is None:
                done.append(publish)
            elif publish.qos == 0:
                best_effort.append(message)
            else:
                held.append(_Held(publish, message, arrival_s))
        self.intake.put(best_effort)
        if not before:  # else they wait their turn: the worker queues them as it makes room
            done += self.admit_held()
        if len(held) > before:
            self.counts.held += len(held) - before
            self._log.warning(
                "held",
                "reading queue full (%d readings): %d QoS 1 messages wait unacknowledged "
                "for room, and the broker keeps the rest; the scoring worker is behind, "
                "raise limits.queue_size or add CPU",
                self.intake.queue.max_readings,
                len(held),
            )
        return done

    def admit_held(self) -> list[Publish]:
        """Queue held messages in order while they fit and journal them; those to
        acknowledge (intake lock held)."""
        held = self._held
        queued = self.intake.offer([one.message for one in held])
        admitted = [held.popleft() for _ in range(queued)]
        for arrival_s, group in itertools.groupby(admitted, key=lambda one: one.arrival_s):
            ones = list(group)
            self._write([one.publish for one in ones], [one.message for one in ones], arrival_s)
        return [one.publish for one in admitted]

    def replay(self, is_running: Callable[[], bool]) -> None:
        """Queue every journaled record again, oldest first, before connecting, while
        ``is_running`` (the worker that drains the queue)."""
        records = 0
        for record in self.journal.replay():
            decoded = self.intake.decode_many(record.messages, arrival_s=record.arrival_s)
            newest = _newest_by_asset(message.items for message in decoded)
            while decoded and is_running():
                decoded = decoded[self.intake.offer(decoded) :]
                if decoded:
                    time.sleep(0.01)  # the worker drains the queue
            with self._lock:
                self._add_mark(_Mark(record.seq, record.arrival_s, newest))
            records += 1
            self.counts.replayed += len(record.messages)
        with self._lock:
            self.replay_end = self.added
        if records:
            log.info(
                "replayed %d messages (%d records) from the journal in %s: taken before the "
                "last stop and not yet done with",
                self.counts.replayed,
                records,
                self.journal.folder,
            )

    def settle(self, marked: int, pipeline: Pipeline[ServedModel], outputs: Outputs) -> None:
        """Release the journal records done with (worker thread, no window waiting).

        A record is done with once each of its assets is done with it
        (:meth:`_is_done`) and the broker has acknowledged every output published until
        then. Only the first ``marked`` marks are looked at: their readings were taken
        from the queue by now.
        """
        seq = None
        now_s = self.intake.clock()
        oldest = self.journal.oldest_seq  # marks before it were dropped past the bound
        with self._lock:
            marks = self._marks
            while (
                marked
                and marks
                and (marks[0].seq < oldest or self._is_done(marks[0], now_s, pipeline))
            ):
                mark = marks.popleft()
                marked -= 1
                seq = mark.seq
                for asset in mark.newest:
                    if self._last_mark.get(asset) is mark:
                        del self._last_mark[asset]
        sent = outputs.unacknowledged(hand_over=seq is not None)
        if seq is not None:
            self._releasing.append((seq, sent))
        while self._releasing and all(info.is_published() for info in self._releasing[0][1]):
            self.journal.release(self._releasing.popleft()[0])

    def unacknowledged(self, outputs: Outputs) -> list[mqtt.MQTTMessageInfo]:
        """Every output published until now that the broker has not acknowledged: those
        waiting to release their records and those ``outputs`` still holds (worker thread)."""
        waiting = [info for _, sent in self._releasing for info in sent if not info.is_published()]
        return waiting + outputs.unacknowledged(hand_over=False)

    def _is_done(self, mark: _Mark, now_s: float, pipeline: Pipeline[ServedModel]) -> bool:
        """Whether every asset of ``mark`` is done with its readings (intake lock held).

        An asset is when they lie before every window still to come
        (:meth:`Pipeline.settled_s`), or when its newest record came longer ago than
        ``SILENT_S`` or its gap limit (:meth:`Pipeline.gap_s`).
        """
        for asset, at in mark.newest.items():
            if at <= pipeline.settled_s(asset):
                continue
            silent_for_s = now_s - self._last_mark[asset].arrival_s
            if silent_for_s <= max(SILENT_S, pipeline.gap_s(asset)):
                return False
        return True

    def _write(
        self, found: Sequence[Publish], decoded: Sequence[Decoded], arrival_s: float
    ) -> None:
        """Write the record of messages whose readings were just queued (intake lock held).

        A failed write (a full disk) is counted and logged, and the messages are still
        acknowledged: scoring goes on, without the crash guarantee for them.
        """
        try:
            seq = self.journal.append(
                [(publish.topic, publish.payload) for publish in found], arrival_s=arrival_s
            )
        except OSError as err:
            self.counts.journal_failed += len(found)
            self._log.warning(
                "journal",
                "could not write the journal in %s (%s); scoring goes on, but a crash now "
                "loses the readings not yet scored; free space or fix state_dir",
                self.journal.folder,
                err.strerror or err,
            )
            return
        self._add_mark(_Mark(seq, arrival_s, _newest_by_asset(m.items for m in decoded)))

    def _add_mark(self, mark: _Mark) -> None:
        """Note a record queued (intake lock held)."""
        self._marks.append(mark)
        self.added += 1
        for asset in mark.newest:
            self._last_mark[asset] = mark


def open_journal(state_dir: Path | None) -> Journal | None:
    """The journal in ``state_dir``, or None without one.

    Raises:
        ConfigError: the folder cannot be made or read.
    """
    if state_dir is None:
        return None
    folder = state_dir / "journal"
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the state key too
        return Journal(folder)
    except OSError as err:
        raise ConfigError(
            f"state_dir = {state_dir}: cannot use {folder} for the journal "
            f"({err.strerror or err}); make it writable by the daemon's user, or set "
            "state_dir to a folder it may write"
        ) from err


def _newest_by_asset(
    queued: Iterable[Items], newest: dict[str, float] | None = None
) -> dict[str, float]:
    """Each asset's newest reading time among ``queued`` (added to ``newest``)."""
    found: dict[str, float] = {} if newest is None else newest
    for items in queued:
        for item in items:
            if isinstance(item, Series):
                at = float(item.timestamps.max(initial=-math.inf))
            else:
                at = item.timestamp
            if at > found.get(item.asset, -math.inf):
                found[item.asset] = at
    return found
