"""Align one asset's readings on the model's time grid (pure core, between Reading and Window).

Readings of an asset's channels arrive one at a time, a little out of order and now and
then not at all, while a :class:`~aewatch.core.window.Window` wants complete rows on a
regular grid. An :class:`Aligner` holds the slots that are not final yet and emits rows by
these rules:

* **Slots.** A reading at ``t`` goes to slot ``k = round(t / period_s)`` (ties to even),
  grid time ``k * period_s``. The grid is absolute, so every channel shares its slots. Two
  readings of one channel in one waiting slot: the later one (in arrival order) wins.
* **Order.** Rows come out in slot order, each exactly one slot after the one before,
  except across a gap. A slot whose every channel has a reading is emitted as soon as
  every earlier slot is final. The very first row waits as if the slot before it were
  missing (readings of earlier slots may still come).
* **Waiting.** An incomplete slot ``k`` waits for its missing channels until a complete
  slot more than ``max_late_s`` later exists (counted in whole periods; the default is
  ``max_gap_periods`` periods). Then it is forced.
* **Forward fill.** A forced slot takes each missing channel from that channel's last
  emitted value when the channel's next reading (known, since a later slot is complete)
  is at most ``max_gap_periods`` slots after its last real one, as in
  :func:`aewatch.core.grid.regularize`. Slots with no reading at all fill the same way.
* **Gap.** A forced slot that cannot be filled is given up (counted in ``dropped_slots``
  when it held readings), and empty slots up to the next waiting one are skipped. The
  next output with rows then has ``gap=True``: the caller resets its Window before them.
  One output never spans a gap; rows after it come out of the next :meth:`Aligner.add`.
* **Late.** A reading whose slot is at or before the last final slot (emitted or given
  up) is late: counted in ``late`` and dropped. A channel published more often than the
  period is one: once rows flow, its first reading in a slot completes it, and its next
  ones in that slot are late (marked ``crowded``: not behind the channel's own time).
  Without ``clock_tolerance_s`` the Aligner trusts reading times, so a reading dated far
  ahead would make the live ones late and a clock set back would have every reading late
  until it caught up; the shell stops readings dated after their arrival with
  ``decode(..., max_ahead_s=...)``, since only it knows the clock.
* **Clock steps and outliers.** With ``clock_tolerance_s``, a reading off the asset's
  time (more than the tolerance, and at least :attr:`Aligner.max_pending_slots` periods,
  ahead of its newest slot or behind its last final slot) is held, not placed. Held
  readings agree when each lies within the tolerance of the others; once they cover
  ``CONFIRM_SLOTS`` distinct slots the asset's clock has stepped, and the output of the
  reading that confirmed it carries ``clock_step_s`` (the new time less the slot the
  asset was due next; negative when it went back). Ahead, the held readings are then
  placed as readings after a silence would be (the gap rules above). Behind, what waits
  at the old time can never complete: it is given up (``dropped_slots``) and the grid
  starts afresh at the new time, after a gap, so its rows go back in time. When the
  asset's time goes on ``CONFIRM_SLOTS`` slots first, or a reading off the time
  disagrees with the held ones, those were strays: counted in ``outlier`` and dropped.
  A lone reading far off (a row stamped "now" inside a backfill, an old message
  replayed) thus moves nothing, and a stream whose jumps all lie within the tolerance
  comes out exactly as without it. Past an outage longer than the tolerance, rows wait
  for ``CONFIRM_SLOTS`` slots of the new time before they come out.
* **Counts.** :attr:`Aligner.drops` adds up the outputs' counts by name (``late``,
  ``outlier``, ``unknown_channel``, ``invalid``, ``dropped_slots``): one Aligner per
  asset, so per asset; :attr:`Aligner.clock_steps` counts the steps confirmed.
* **Memory.** At most :attr:`Aligner.max_pending_slots` slots wait
  (``wait + ceil(max_gap_periods) + 2``, ``wait`` being ``max_late_s`` in periods). A
  reading that opens one more gives up the oldest waiting slot (``dropped_slots``, gap).
  At most ``CONFIRM_SLOTS`` slots of readings are held off the asset's time.
* **Rows.** :meth:`Aligner.add_row` emits a complete row in the slot right after the
  last final one, with nothing waiting, at once (the common case of a ``json_multi``
  message); for any other row it changes nothing and the caller adds the readings.
* **Rejected.** A reading of a channel not in ``channels`` counts in ``unknown_channel``;
  one with a non-finite timestamp, or a value that is not finite as float32, counts in
  ``invalid``. Neither changes any state. The reading's asset is not checked: the caller
  keeps one Aligner per asset.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
import numpy.typing as npt

from aewatch.core.decode import FLOAT32_MAX, Reading
from aewatch.core.grid import DEFAULT_MAX_GAP_PERIODS

__all__ = ["CONFIRM_SLOTS", "AlignOutput", "Aligner"]

_SLOT_EPSILON = 1e-9  # so max_late_s = 0.3 with period_s = 0.1 is 3 periods, not 2
_MARGIN_SLOTS = 2
_ROW_ORDERS = 16  # channel orders of add_row remembered
CONFIRM_SLOTS = 3  # distinct slots of held readings that confirm a clock step


@dataclass(frozen=True, slots=True)
class AlignOutput:
    """The grid rows one reading completed, and what happened to the reading.

    ``timestamps`` is ``(m,)`` float64 epoch seconds on the grid, strictly increasing,
    one period apart. ``values`` is ``(m, channels)`` float32. ``gap`` is True when the
    caller must reset its Window before these rows (never True when ``m == 0``).
    ``late``, ``unknown_channel`` and ``invalid`` count the reading if it was dropped;
    ``crowded`` marks a late reading that is not behind its channel: another reading of it,
    with another value, in the slot that just went out with a reading of it (a channel
    published more often than the period);
    ``outlier`` counts held readings dropped because the asset's time went on without them;
    ``dropped_slots`` counts waiting slots given up; ``filled`` counts the channel values
    in ``values`` that were forward-filled. ``clock_step_s`` is the size of a clock step
    this reading confirmed (seconds, negative when the clock went back), else 0.
    """

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]
    gap: bool = False
    late: int = 0
    unknown_channel: int = 0
    invalid: int = 0
    dropped_slots: int = 0
    filled: int = 0
    outlier: int = 0
    clock_step_s: float = 0.0
    crowded: int = 0  # of ``late``: another value of its channel in the slot just out

    def __len__(self) -> int:
        return len(self.timestamps)

    @classmethod
    def of_row(cls, grid_time: float, row: list[float], gap: bool) -> AlignOutput:
        """The output of one complete row, as :meth:`Aligner.take_row` hands it over."""
        return cls(np.array([grid_time], dtype=np.float64), np.array([row], dtype=np.float32), gap)


class Aligner:
    """Collects one asset's readings per channel and emits complete grid rows in time order.

    The rules (slots, waiting, forward fill, gaps, late readings, memory) are in the
    module docstring.

    >>> aligner = Aligner(("flow", "temp"), period_s=1.0, max_late_s=0)
    >>> len(aligner.add(Reading("w1", "flow", 10.1, 1.0)))
    0
    >>> out = aligner.add(Reading("w1", "temp", 9.9, 20.0))
    >>> out.timestamps.tolist(), out.values.tolist()
    ([10.0], [[1.0, 20.0]])
    >>> aligner.add(Reading("w1", "flow", 9.2, 0.5)).late
    1

    Raises:
        ValueError: no or repeated channels, a ``period_s`` that is not positive,
            ``max_gap_periods`` below 1, a negative ``max_late_s`` or a
            ``clock_tolerance_s`` that is not positive.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        period_s: float,
        max_gap_periods: float = DEFAULT_MAX_GAP_PERIODS,
        max_late_s: float | None = None,
        clock_tolerance_s: float | None = None,
    ) -> None:
        _check_settings(channels, period_s, max_gap_periods, max_late_s)
        _check_tolerance(clock_tolerance_s)
        self.channels = tuple(channels)
        self.period_s = period_s
        self.max_gap_periods = max_gap_periods
        self.max_late_s = max_gap_periods * period_s if max_late_s is None else max_late_s
        self._wait_slots = math.floor(self.max_late_s / period_s + _SLOT_EPSILON)
        self.max_pending_slots = self._wait_slots + math.ceil(max_gap_periods) + _MARGIN_SLOTS
        self.clock_tolerance_s = clock_tolerance_s
        # Never below what may wait, so no reading the grid could still take is held.
        self._jump_slots = (
            None
            if clock_tolerance_s is None
            else max(
                math.floor(clock_tolerance_s / period_s + _SLOT_EPSILON), self.max_pending_slots
            )
        )
        # Readings off the asset's time, held until confirmed or outrun: (slot, column) ->
        # value in arrival order of the value kept; their slots' range; the asset's newest
        # slot when the first was held.
        self._suspect: dict[tuple[int, int], float] = {}
        self._suspect_slots: set[int] = set()
        self._suspect_range = (0, 0)
        self._suspect_since = 0
        self.drops: Counter[str] = Counter()  # this asset's drops by AlignOutput count name
        self.clock_steps = 0  # clock steps confirmed
        self._column = _columns(self.channels)  # shared by every Aligner of these channels
        self._orders: dict[tuple[str, ...], tuple[int, ...] | None] | None = None  # add_row
        # Plain lists, not numpy: this runs once per reading, where numpy's per-call cost
        # on a handful of values would dominate.
        self._pending: dict[int, list[float]] = {}  # slot -> values, NaN = missing
        self._missing: dict[int, int] = {}  # slot -> how many channels it still lacks
        self._final_slot: int | None = None  # last slot emitted or given up
        self._newest_complete: int | None = None
        self._held = [math.nan] * len(self.channels)
        self._last_real: list[int | None] = [None] * len(self.channels)
        # The newest slot each channel had a reading in (waiting or emitted), and of any.
        self._newest_seen: list[int | None] = [None] * len(self.channels)
        self._newest_slot: int | None = None
        self._has_emitted = False
        self._is_broken = False  # continuity lost since the last emitted row
        self._is_held_back = False  # the last drain stopped at a gap with rows behind it
        # add_series blocks held until every channel has one: column -> (times, values)
        self._staged: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        self._staged_count = 0
        self._staged_first = 0  # the slot the held blocks start on

    @property
    def pending_slots(self) -> int:
        """Slots now waiting (never more than :attr:`max_pending_slots`)."""
        return len(self._pending) + (self._staged_count if self._staged else 0)

    @property
    def held_readings(self) -> int:
        """Readings held off the asset's time now, waiting to be confirmed or outrun."""
        return len(self._suspect)

    @property
    def final_s(self) -> float:
        """Grid time of the last slot emitted or given up (final); -inf before any.

        A reading at or before it can change no row to come: it was placed, filled in or
        counted as dropped.
        """
        final = self._final_slot
        return -math.inf if final is None else final * self.period_s

    @property
    def newest_s(self) -> float:
        """Grid time of the newest slot any channel has a reading in; NaN before any."""
        newest = self._newest_slot
        return math.nan if newest is None else newest * self.period_s

    def silent_channels(self) -> tuple[float, tuple[tuple[str, float, float], ...]]:
        """Channels that stopped while the others go on, and the newest slot's time.

        A channel is silent when it has been in a row before and its newest reading is
        more than :attr:`max_pending_slots` periods before the newest slot any channel
        has a reading in: longer than anything waits for it, so the asset's rows are
        being given up. Each comes as ``(channel, grid time of its newest reading, the
        last value it had in a row)``. A channel that never reported is not counted: at
        start, channels come in any order. No reading yet: ``(NaN, ())``. A few list
        lookups per channel.
        """
        newest = self._newest_slot
        if newest is None:
            return math.nan, ()
        limit = newest - self.max_pending_slots
        silent = tuple(
            (name, seen * self.period_s, self._held[column])
            for column, (name, seen) in enumerate(
                zip(self.channels, self._newest_seen, strict=True)
            )
            if seen is not None and seen < limit and self._last_real[column] is not None
        )
        return newest * self.period_s, silent

    def add(self, reading: Reading) -> AlignOutput:
        """Place one reading; return the rows now final (often none) and the reading's fate.

        Rows held back by a gap in an earlier output come out here whatever the reading.
        """
        self._unstage()
        column = self._column.get(reading.channel)
        if column is None:
            return self._drain(unknown_channel=1)
        slot = self._slot_of(reading)
        if slot is None:
            return self._drain(invalid=1)
        if self._jump_slots is not None and self._is_off_clock(slot):
            return self._hold(slot, column, reading.value)
        if self._final_slot is not None and slot <= self._final_slot:
            is_crowded = (
                slot == self._final_slot == self._last_real[column] == self._newest_seen[column]
                and reading.value != self._held[column]
            )
            out = self._drain(late=1)
            if is_crowded:
                # Not behind its channel, and not a repeat of the reading the slot went out
                # with (a QoS 1 redelivery): the channel is published more often than the
                # period.
                out = dataclasses.replace(out, crowded=1)
            return out
        dropped = self._insert(slot, column, reading.value)
        outliers = self._reject() if self._suspect and self._is_outrun() else 0
        return self._drain(dropped=dropped, outlier=outliers)

    def add_row(
        self, timestamp: float, channels: tuple[str, ...], values: tuple[float, ...]
    ) -> AlignOutput | None:
        """Emit a whole row at once when it is the common case; else None, nothing changed.

        The common case: the row has every channel once (in any order), valid values, and
        the slot right after the last final one, and nothing waits. Adding its readings
        one by one would then emit exactly this row. For any other row (None), add its
        readings one by one with :meth:`add`.

        >>> aligner = Aligner(("flow", "temp"), period_s=1.0, max_late_s=0)
        >>> aligner.add_row(9.0, ("flow", "temp"), (1.0, 2.0)) is None  # the first row waits
        True
        >>> outs = [aligner.add(Reading("w1", c, 9.0, v)) for c, v in (("flow", 1), ("temp", 2))]
        >>> outs += [aligner.add(Reading("w1", c, 10.0, v)) for c, v in (("flow", 3), ("temp", 4))]
        >>> aligner.add_row(11.0, ("temp", "flow"), (6.0, 5.0)).values.tolist()
        [[5.0, 6.0]]
        """
        taken = self.take_row(timestamp, channels, values)
        return None if taken is None else AlignOutput.of_row(*taken)

    def take_row(
        self, timestamp: float, channels: tuple[str, ...], values: tuple[float, ...]
    ) -> tuple[float, list[float], bool] | None:
        """:meth:`add_row` without the arrays: ``(grid time, values in channel order, gap)``.

        For a caller that gathers the rows of many assets into one array itself.
        """
        final = self._final_slot
        if final is None or self._pending or self._staged or self._suspect:
            return None  # the caller adds the readings one by one (add unstages)
        periods = timestamp / self.period_s
        if not (math.isfinite(periods) and round(periods) == final + 1):
            return None
        if channels != self.channels:
            order = self._orders.get(channels, ()) if self._orders is not None else ()
            if order == ():
                order = self._order_of(channels)
            if order is None:
                return None
            values = tuple(values[i] for i in order)
        if not all(-FLOAT32_MAX <= value <= FLOAT32_MAX for value in values):
            return None  # NaN fails too
        row = list(values)
        slot = final + 1
        gap = self._is_broken
        self._mark_emitted(slot, row)
        return slot * self.period_s, row, gap

    def add_series(
        self,
        channel: str,
        timestamps: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
    ) -> list[AlignOutput]:
        """Place many samples of one channel; the same outcome as adding them one by one.

        Returns the outputs in order (rows, gaps); the counts of the samples that were
        dropped are spread over them. The common case of blocks that continue the grid
        (one per channel, same slots, e.g. ``float32_le`` messages) is held until every
        channel's block is in, then emitted in one step; anything else is placed sample by
        sample, with a drain only where one could emit or give up something: after a
        sample completes a slot or gives one up, while rows wait behind a gap, and before
        the first row.

        >>> aligner = Aligner(("flow",), period_s=1.0, max_late_s=0)
        >>> outs = aligner.add_series("flow", np.arange(5.0), np.arange(5.0) * 10)
        >>> np.concatenate([o.values for o in outs]).ravel().tolist()
        [0.0, 10.0, 20.0, 30.0, 40.0]
        """
        column = self._column.get(channel)
        if column is not None:
            before = self._stage(column, timestamps, values)
            if before is not None:
                if len(self._staged) == len(self.channels):
                    return [*before, *self._emit_staged()]
                return before
        self._unstage()
        return self._add_samples(column, timestamps, values)

    def _stage(
        self, column: int, timestamps: npt.NDArray[np.float64], values: npt.NDArray[np.float64]
    ) -> list[AlignOutput] | None:
        """Hold a block that continues the grid until every channel has its block.

        Returns None when the block was not held (nothing changed), else what adding its
        first samples emitted (usually nothing). The block must cover the slots right
        after the last final one (or the same slots as the blocks already held, for a
        channel not held yet), with valid values, nothing else waiting and no more slots
        than may wait. Adding such blocks sample by sample completes no slot before the
        last channel's block, and that block then emits every slot in order:
        :meth:`_emit_staged` does the same in one step. Anything else first replays the
        held blocks sample by sample (:meth:`_unstage`), which emits nothing.

        Before the first row (:meth:`_stage_first_rows`) the same holds for blocks that
        start the grid, or continue the complete slots still waiting for the first row.
        """
        n = len(values)
        if self._is_held_back or not n or n > self.max_pending_slots or column in self._staged:
            return None
        if self._suspect:
            return None  # each sample may confirm or outrun the held readings
        if self._staged and n != self._staged_count:
            return None
        # Comparisons with NaN are False and raise no warning: NaN values and times fail.
        if not (values.max() <= FLOAT32_MAX and values.min() >= -FLOAT32_MAX):
            return None
        slots = np.rint(np.asarray(timestamps, dtype=np.float64) / self.period_s)
        final = self._final_slot
        gives_up = False
        if self._staged:
            first = self._staged_first
        elif final is not None:
            if self._pending:
                return None
            first = final + 1
        else:
            start = self._stage_first_rows(slots, n)
            if start is None:
                return None
            first, gives_up = start
        if not (slots[0] == first and (slots - first == _counting(n)).all()):
            return None
        before: list[AlignOutput] = []
        if gives_up:  # as its samples would: the oldest waiting slot given up, the rest out
            before = [self._give_up_waiting_run()]
            first = cast(int, self._final_slot) + 1
        self._staged[column] = (timestamps, values)
        self._staged_first = first
        self._staged_count = n
        return before

    def _stage_first_rows(self, slots: npt.NDArray[np.float64], n: int) -> tuple[int, bool] | None:
        """Before the first row: the slot a block must start on to be held, or None.

        With nothing waiting, the block's own first slot. With the complete slots
        ``p..q`` waiting for the first row (and nothing else), ``q + 1``; and True when
        those and the block's slots are more than may wait, so that adding the block's
        samples gives up slot ``p`` and emits ``p + 1..q`` before any of them completes a
        slot (the caller checks the block's slots first, then does that).
        """
        if not self._pending:
            return (int(slots[0]), False) if math.isfinite(slots[0]) else None
        low, high = min(self._pending), max(self._pending)
        waiting = high - low + 1
        if (
            waiting != len(self._pending)
            or self._newest_complete != high
            or waiting > self._wait_slots
            or any(self._missing.values())
        ):
            return None
        return high + 1, waiting + n > self.max_pending_slots

    def _give_up_waiting_run(self) -> AlignOutput:
        """Give up the oldest of the complete slots waiting for the first row, emit the rest."""
        low = min(self._pending)
        rows = [self._pending[slot] for slot in sorted(self._pending) if slot != low]
        self._give_up(low)
        self.drops["dropped_slots"] += 1
        if not rows:
            return AlignOutput(self._nothing.timestamps, self._nothing.values, dropped_slots=1)
        self._pending.clear()
        self._missing.clear()
        out = self._emit_complete(low + 1, np.array(rows, dtype=np.float32), rows[-1])
        return AlignOutput(out.timestamps, out.values, gap=out.gap, dropped_slots=1)

    def _emit_staged(self) -> list[AlignOutput]:
        """Every channel has its held block: emit their slots as rows, or before the first
        row, emit them with the complete slots waiting once the first may go, else wait."""
        staged, self._staged = self._staged, {}
        first = self._staged_first
        if self._final_slot is not None:  # the common case: straight to float32 rows
            rows32 = np.empty((self._staged_count, len(self.channels)), dtype=np.float32)
            newest = [0.0] * len(self.channels)
            for column, (_, values) in staged.items():
                rows32[:, column] = values
                newest[column] = float(values[-1])
            return [self._emit_complete(first, rows32, newest)]
        block = np.empty((self._staged_count, len(self.channels)), dtype=np.float64)
        for column, (_, values) in staged.items():
            block[:, column] = values
        rows = block.tolist()
        last = first + len(rows) - 1
        if len(self._pending) + len(rows) <= self._wait_slots:
            # The first row still waits: the slots wait, complete, as their samples leave them.
            for slot, row in zip(range(first, last + 1), rows, strict=True):
                self._pending[slot] = row
                self._missing[slot] = 0
            self._newest_complete = last
            return []
        start = min(self._pending, default=first)
        rows = [self._pending[slot] for slot in range(start, first)] + rows
        self._pending.clear()
        self._missing.clear()
        return [self._emit_complete(start, np.array(rows, dtype=np.float32), rows[-1])]

    def _unstage(self) -> None:
        """Replay held blocks sample by sample, in the order they came (this emits nothing)."""
        if not self._staged:
            return
        staged, self._staged = self._staged, {}
        for column, (timestamps, values) in staged.items():
            outputs = self._add_samples(column, timestamps, values)
            assert not outputs, "a held block emitted rows on replay"

    def _add_samples(
        self,
        column: int | None,
        timestamps: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
    ) -> list[AlignOutput]:
        """:meth:`add_series` sample by sample, draining only where it could matter."""
        n = len(values)
        if column is None:
            return [self._drain(unknown_channel=n)]
        periods = np.asarray(timestamps, dtype=np.float64) / self.period_s
        with np.errstate(invalid="ignore"):
            is_valid = np.isfinite(periods) & (np.abs(values) <= FLOAT32_MAX)
        invalid = n - int(is_valid.sum())
        slots = np.rint(periods[is_valid]).astype(np.int64).tolist()
        outputs: list[AlignOutput] = []
        late = 0
        # Before the first row, a drain can only do something once the oldest waiting slot
        # is due (the first row waits as if the slot before it were missing): keep that
        # slot at hand instead of draining, and finding it, after every sample.
        lowest = min(self._pending, default=None) if self._final_slot is None else None
        jump = self._jump_slots
        for slot, value in zip(slots, values[is_valid].tolist(), strict=True):
            if self._is_held_back:
                outputs.append(self._drain())
            if jump is not None and self._is_off_clock(slot):
                outputs.append(self._hold(slot, column, value))
                lowest = min(self._pending, default=None) if self._final_slot is None else None
                continue
            final = self._final_slot
            if final is not None and slot <= final:
                late += 1
                continue
            dropped = self._insert(slot, column, value)
            if self._suspect and self._is_outrun():
                outputs.append(self._drain(dropped=dropped, outlier=self._reject()))
                lowest = min(self._pending, default=None) if self._final_slot is None else None
                continue
            if final is None and not dropped:
                lowest = slot if lowest is None or slot < lowest else lowest
                newest = self._newest_complete
                if newest is None or newest - (lowest - 1) <= self._wait_slots:
                    continue
            elif final is not None and not dropped and self._missing.get(slot, 1):
                continue
            outputs.append(self._drain(dropped=dropped))
            lowest = min(self._pending, default=None) if self._final_slot is None else None
        if self._is_held_back:
            # The last sample's drain stopped at a gap with rows behind it; one by one, the
            # rows after the gap come out with the next reading, not now.
            outputs.append(self._counted(late=late, invalid=invalid))
        else:
            outputs.append(self._drain(late=late, invalid=invalid))
        return [out for out in outputs if out is not self._nothing]

    def _counted(self, *, late: int, invalid: int) -> AlignOutput:
        """The output of samples that were dropped and completed nothing."""
        if not (late or invalid):
            return self._nothing
        self._count_drops(0, late, 0, invalid, 0)
        nothing = self._nothing
        return AlignOutput(nothing.timestamps, nothing.values, late=late, invalid=invalid)

    def _order_of(self, channels: tuple[str, ...]) -> tuple[int, ...] | None:
        """Where each of our channels sits in ``channels``; None unless a reordering."""
        position = {name: i for i, name in enumerate(channels)}
        order = None
        if len(position) == len(channels) == len(self.channels) and set(position) == set(
            self.channels
        ):
            order = tuple(position[name] for name in self.channels)
        if self._orders is None or len(self._orders) >= _ROW_ORDERS:
            self._orders = {}
        self._orders[channels] = order
        return order

    def _emit_complete(
        self, first: int, rows: npt.NDArray[np.float32], newest: list[float]
    ) -> AlignOutput:
        """Emit complete ``rows`` from slot ``first``, right after the last final slot.

        ``newest`` is the last row as floats (what a gap would forward-fill from). Nothing
        may wait: this is :meth:`_emit` for rows that needed no waiting or filling.
        """
        last = first + len(rows) - 1
        gap = self._is_broken
        self._mark_emitted(last, newest)
        timestamps = np.arange(first, last + 1, dtype=np.float64) * self.period_s
        return AlignOutput(timestamps, rows, gap=gap)

    def _mark_emitted(self, last: int, newest: list[float]) -> None:
        """Every slot up to ``last`` is final, the last one complete with ``newest``."""
        self._last_real = [last] * len(self.channels)
        self._newest_seen = [last if s is None or s < last else s for s in self._newest_seen]
        if self._newest_slot is None or last > self._newest_slot:
            self._newest_slot = last
        self._held = newest
        self._final_slot = last
        self._has_emitted = True
        self._is_broken = False
        if self._newest_complete is None or last > self._newest_complete:
            self._newest_complete = last

    def _slot_of(self, reading: Reading) -> int | None:
        """The reading's grid slot, or None when its time or value is unusable."""
        periods = reading.timestamp / self.period_s
        value = reading.value
        if not (math.isfinite(periods) and math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            return None
        return round(periods)

    def _insert(self, slot: int, column: int, value: float) -> int:
        """Store a value in its slot; return how many slots were given up to stay bounded."""
        row = self._pending.get(slot)
        if row is None:
            row = self._pending[slot] = [math.nan] * len(self.channels)
            self._missing[slot] = len(self.channels)
        if row[column] != row[column]:  # NaN: the channel's first reading in this slot
            self._missing[slot] -= 1
        row[column] = value
        seen = self._newest_seen[column]
        if seen is None or slot > seen:
            self._newest_seen[column] = slot
            if self._newest_slot is None or slot > self._newest_slot:
                self._newest_slot = slot
        newest = self._newest_complete
        if not self._missing[slot] and (newest is None or slot > newest):
            self._newest_complete = slot
        dropped = 0
        while len(self._pending) > self.max_pending_slots:
            self._give_up(min(self._pending))
            dropped += 1
        return dropped

    def _drain(
        self,
        *,
        dropped: int = 0,
        late: int = 0,
        unknown_channel: int = 0,
        invalid: int = 0,
        outlier: int = 0,
    ) -> AlignOutput:
        """Emit every row that is now final, up to the first gap after a row."""
        slots: list[int] = []
        rows: list[list[float]] = []
        filled = 0
        gap = False
        self._is_held_back = False
        while self._pending:
            slot = min(self._pending) if self._final_slot is None else self._final_slot + 1
            row = self._pending.get(slot)
            if self._final_slot is None and not self._is_due(slot - 1):
                break  # readings of earlier slots may still come, so the first row waits
            if row is None or self._missing[slot]:
                if not self._is_due(slot):
                    break
                values = self._filled(slot, row)
                if values is None:
                    if slots:
                        self._is_held_back = True
                        break  # one output never spans a gap
                    dropped += self._abandon(slot, is_pending=row is not None)
                    continue
            else:
                values = row
            gap = gap or (not slots and self._is_broken)
            filled += self._emit(slot, values, row)
            slots.append(slot)
            rows.append(values)
        if dropped or late or unknown_channel or invalid or outlier:
            self._count_drops(dropped, late, unknown_channel, invalid, outlier)
        elif not slots:
            return self._nothing
        return AlignOutput(
            np.array(slots, dtype=np.float64) * self.period_s,
            np.array(rows, dtype=np.float32).reshape(len(rows), len(self.channels)),
            gap=gap,
            late=late,
            unknown_channel=unknown_channel,
            invalid=invalid,
            dropped_slots=dropped,
            filled=filled,
            outlier=outlier,
        )

    def _count_drops(
        self, dropped: int, late: int, unknown_channel: int, invalid: int, outlier: int
    ) -> None:
        drops = self.drops
        drops["dropped_slots"] += dropped
        drops["late"] += late
        drops["unknown_channel"] += unknown_channel
        drops["invalid"] += invalid
        drops["outlier"] += outlier

    # -- clock steps and outliers -------------------------------------------------------

    def _is_off_clock(self, slot: int) -> bool:
        """True when ``slot`` is further from the asset's time than the tolerance."""
        newest = self._newest_slot
        if newest is None:
            return False
        jump = cast(int, self._jump_slots)
        if slot > newest + jump:
            return True
        final = self._final_slot
        return final is not None and slot < final - jump

    def _hold(self, slot: int, column: int, value: float) -> AlignOutput:
        """Hold a reading off the asset's time; confirm a clock step once enough agree."""
        outliers = 0
        low, high = self._suspect_range
        jump = cast(int, self._jump_slots)
        if self._suspect and not low - jump <= slot <= high + jump:
            outliers = self._reject()  # a different time again: the old ones were strays
        if not self._suspect:
            low = high = slot
            self._suspect_since = cast(int, self._newest_slot)
        self._suspect.pop((slot, column), None)  # the later reading wins, in its place
        self._suspect[(slot, column)] = value
        self._suspect_slots.add(slot)
        self._suspect_range = (min(low, slot), max(high, slot))
        if len(self._suspect_slots) < CONFIRM_SLOTS:
            return self._drain(outlier=outliers)
        return self._confirm(outliers)

    def _is_outrun(self) -> bool:
        """True when the asset's time went on for long enough without the held readings."""
        return cast(int, self._newest_slot) - self._suspect_since >= CONFIRM_SLOTS

    def _reject(self) -> int:
        """Drop the held readings as outliers; return how many."""
        n = len(self._suspect)
        self._suspect = {}
        self._suspect_slots = set()
        return n

    def _confirm(self, outliers: int) -> AlignOutput:
        """The held readings agree on a new time: the asset's clock stepped; follow it.

        Forward, they go on the grid as readings after a silence would. Backward, nothing
        waiting at the old time can complete any more: it is given up, and the grid starts
        afresh (the next rows come after a gap).
        """
        held, low = self._suspect, self._suspect_range[0]
        newest = cast(int, self._newest_slot)
        self._reject()
        self.clock_steps += 1
        dropped = self._restart() if low < newest else 0
        for (slot, column), value in held.items():
            dropped += self._insert(slot, column, value)
        out = self._drain(dropped=dropped, outlier=outliers)
        return dataclasses.replace(out, clock_step_s=(low - newest - 1) * self.period_s)

    def _restart(self) -> int:
        """Forget the grid (as a new Aligner, but the next rows follow a gap); return the
        waiting slots given up."""
        given_up = len(self._pending)
        n = len(self.channels)
        self._pending.clear()
        self._missing.clear()
        self._final_slot = None
        self._newest_complete = None
        self._newest_slot = None
        self._newest_seen = [None] * n
        self._last_real = [None] * n
        self._held = [math.nan] * n
        self._is_broken = self._has_emitted
        self._is_held_back = False
        return given_up

    @cached_property
    def _nothing(self) -> AlignOutput:
        """The output of a reading that completed nothing (shared; it is frozen)."""
        return AlignOutput(
            np.empty(0, dtype=np.float64), np.empty((0, len(self.channels)), dtype=np.float32)
        )

    def _is_due(self, slot: int) -> bool:
        """True when an incomplete slot has waited long enough and must be forced."""
        newest = self._newest_complete
        return newest is not None and newest - slot > self._wait_slots

    def _filled(self, slot: int, row: list[float] | None) -> list[float] | None:
        """The slot's row with missing channels forward-filled, or None when not allowed."""
        values = [math.nan] * len(self.channels) if row is None else list(row)
        for column, value in enumerate(values):
            if not math.isnan(value):
                continue
            last = self._last_real[column]
            following = self._next_real(slot, column)
            if last is None or following is None or following - last > self.max_gap_periods:
                return None
            values[column] = self._held[column]
        return values

    def _next_real(self, slot: int, column: int) -> int | None:
        """The first waiting slot after ``slot`` with a reading of ``column``, if any."""
        later = [s for s, row in self._pending.items() if s > slot and row[column] == row[column]]
        return min(later, default=None)

    def _emit(self, slot: int, values: list[float], row: list[float] | None) -> int:
        """Make ``slot`` final with ``values``; return how many channels were filled."""
        filled = 0
        last_real = self._last_real
        for column in range(len(values)):
            if row is not None and row[column] == row[column]:
                last_real[column] = slot
            else:
                filled += 1
        self._held = values
        self._pending.pop(slot, None)
        self._missing.pop(slot, None)
        self._final_slot = slot
        self._has_emitted = True
        self._is_broken = False
        return filled

    def _abandon(self, slot: int, *, is_pending: bool) -> int:
        """Give up a slot that cannot be filled; return 1 if it held readings, else 0."""
        if is_pending:
            self._give_up(slot)
            return 1
        # Empty slots before the next waiting one cannot be filled either: the held
        # values only get older. Skip them all.
        self._final_slot = min(self._pending) - 1
        self._is_broken = self._has_emitted
        return 0

    def _give_up(self, slot: int) -> None:
        """Drop a waiting slot and everything before it; the next row starts after a gap."""
        del self._pending[slot]
        del self._missing[slot]
        self._final_slot = slot
        self._is_broken = self._has_emitted


@functools.lru_cache(maxsize=64)
def _counting(n: int) -> npt.NDArray[np.float64]:
    """``[0.0, 1.0, ..., n - 1]``, read-only and shared (the slots of a block, relative)."""
    steps = np.arange(n, dtype=np.float64)
    steps.flags.writeable = False
    return steps


@functools.cache
def _columns(channels: tuple[str, ...]) -> dict[str, int]:
    """Channel name -> column, one dict per channel tuple, shared: never change it."""
    return {name: i for i, name in enumerate(channels)}


def _check_tolerance(clock_tolerance_s: float | None) -> None:
    if clock_tolerance_s is not None and not (
        math.isfinite(clock_tolerance_s) and clock_tolerance_s > 0
    ):
        raise ValueError(
            f"clock_tolerance_s must be a positive number of seconds, got {clock_tolerance_s}"
        )


def _check_settings(
    channels: Sequence[str], period_s: float, max_gap_periods: float, max_late_s: float | None
) -> None:
    """Raise ValueError naming the first setting an Aligner cannot work with."""
    if not channels or len(set(channels)) != len(channels):
        raise ValueError(f"channels must be distinct names, at least one, got {list(channels)}")
    if not (math.isfinite(period_s) and period_s > 0):
        raise ValueError(f"period_s must be a positive number of seconds, got {period_s}")
    if not (math.isfinite(max_gap_periods) and max_gap_periods >= 1):
        raise ValueError(f"max_gap_periods must be at least 1, got {max_gap_periods}")
    if max_late_s is not None and not (math.isfinite(max_late_s) and max_late_s >= 0):
        raise ValueError(f"max_late_s must be a non-negative number of seconds, got {max_late_s}")
