"""Sliding windows over one asset's readings on a regular time grid (pipeline stage: Window).

A ``WindowBank`` holds the windows of many assets of one shape, a slot each: the daemon
keeps all of a model's assets in one, ``extend`` takes rows of one asset, and
``extend_rows`` one new row of each of many assets in one step (property-tested to cut
what ``extend`` cuts). A ``Window`` is one asset's bank of one slot, the form offline
scoring feeds whole segments to: both shells run the same code. ``sliding_windows`` is
the one-shot form used for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

__all__ = ["DueWindows", "Window", "WindowBank", "sliding_windows"]


@dataclass(frozen=True, slots=True)
class DueWindows:
    """Windows that became due, oldest first.

    ``windows`` is ``(k, channels, length)`` float32; ``end_timestamps`` is ``(k,)``
    float64 epoch seconds, the timestamp of each window's last sample.
    """

    windows: npt.NDArray[np.float32]
    end_timestamps: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.end_timestamps)


class Window:
    """Fixed-length, multi-channel buffer for one asset; emits a window every ``hop`` rows.

    The first window is due when ``length`` rows have arrived, then one every ``hop`` rows.
    Rows must be consecutive grid rows; call ``reset`` at a gap (no window spans one).

    >>> w = Window(channels=2, length=3, hop=2)
    >>> rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    >>> due = w.extend(np.arange(5.0), rows)
    >>> due.end_timestamps.tolist()
    [2.0, 4.0]
    >>> due.windows[0].tolist()
    [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]
    """

    def __init__(self, channels: int, length: int, hop: int = 1) -> None:
        self._bank = WindowBank(channels, length, hop, capacity=1)  # the daemon's code
        self._slot = self._bank.open()
        self.channels = channels
        self.length = length
        self.hop = hop

    @property
    def is_warming(self) -> bool:
        """True until the first full window has been seen since the last reset."""
        return self.rows_seen < self.length

    @property
    def rows_seen(self) -> int:
        """Rows pushed since the last reset."""
        return self._bank.rows_seen(self._slot)

    def reset(self) -> None:
        """Forget every buffered row (after a gap, or when the model changes)."""
        self._bank.reset(self._slot)

    def push(self, timestamp: float, row: npt.ArrayLike) -> DueWindows:
        """Append one grid row ``(channels,)``; return the window it completes, if due."""
        values = np.asarray(row, dtype=np.float32).reshape(1, self.channels)
        return self.extend(np.array([timestamp], dtype=np.float64), values)

    def extend(self, timestamps: npt.ArrayLike, rows: npt.ArrayLike) -> DueWindows:
        """Append consecutive grid rows ``(m, channels)``; return the windows now due."""
        return self._bank.extend(self._slot, timestamps, rows)


class WindowBank:
    """The windows of many assets of one shape, each asset a slot in shared arrays.

    Each slot holds what a :class:`Window` holds: the newest ``length - 1`` rows (right
    aligned, the older part unused until filled) and how many rows came since the last
    reset. Memory is ``length - 1`` rows of float32 values and float64 times per slot;
    ``capacity`` slots are made at first, and the arrays double when they are all taken.

    >>> bank = WindowBank(channels=1, length=2)
    >>> a, b = bank.open(), bank.open()
    >>> _ = bank.extend(a, [0.0], [[1.0]])
    >>> slots, times, rows = np.array([a, b]), np.array([1.0, 1.0]), np.array([[2.0], [5.0]])
    >>> picked, due = bank.extend_rows(slots, times, rows)
    >>> picked.tolist(), due.windows.tolist(), due.end_timestamps.tolist()
    ([0], [[[1.0, 2.0]]], [1.0])
    """

    def __init__(self, channels: int, length: int, hop: int = 1, *, capacity: int = 16) -> None:
        if length < 1 or hop < 1 or channels < 1:
            raise ValueError(
                f"window needs channels, length and hop >= 1, got {channels}, {length}, {hop}"
            )
        self.channels = channels
        self.length = length
        self.hop = hop
        self._tail = np.zeros((0, length - 1, channels), dtype=np.float32)
        self._tail_ts = np.zeros((0, length - 1), dtype=np.float64)
        self._count = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._used = 0  # slots ever handed out (the free ones included)
        self._first_size = max(1, capacity)

    def open(self) -> int:
        """A slot for a new asset, warming (no rows yet)."""
        if self._free:
            slot = self._free.pop()
        else:
            slot = self._used
            self._used += 1
            if slot == len(self._count):
                self._grow(max(self._first_size, 2 * slot))
        self._count[slot] = 0
        return slot

    def close(self, slot: int) -> None:
        """Give a slot back (its asset left); it may be handed out again."""
        self._count[slot] = 0
        self._free.append(slot)

    def reset(self, slot: int) -> None:
        """Forget a slot's rows (after a gap), as :meth:`Window.reset`."""
        self._count[slot] = 0

    def rows_seen(self, slot: int) -> int:
        """Rows pushed to ``slot`` since its last reset."""
        return int(self._count[slot])

    def extend(self, slot: int, timestamps: npt.ArrayLike, rows: npt.ArrayLike) -> DueWindows:
        """Append consecutive grid rows ``(m, channels)`` to ``slot``; the windows now due."""
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        values = np.asarray(rows, dtype=np.float32).reshape(len(ts), self.channels)
        keep = self.length - 1
        count = int(self._count[slot])
        held = min(count, keep)
        if held:
            buffer = np.concatenate((self._tail[slot, keep - held :], values))
            buffer_ts = np.concatenate((self._tail_ts[slot, keep - held :], ts))
        else:
            buffer, buffer_ts = values, ts
        # Rows are counted from 1 since the reset; the row counted c ends a window when
        # c >= length and (c - length) is a multiple of hop. Buffer row j is counted
        # base + j.
        first = max(count + 1, self.length)
        first += -(first - self.length) % self.hop
        last = count + len(ts)
        base = count - held + 1
        if first <= last:
            end = first - base  # the buffer row ending the first due window
            k = (last - first) // self.hop + 1
            step, across = buffer.strides
            view = as_strided(  # window i: rows end + i*hop - length + 1 ... end + i*hop
                buffer[end - self.length + 1 :],
                shape=(k, self.channels, self.length),
                strides=(self.hop * step, across, step),
                writeable=False,
            )
            windows = np.ascontiguousarray(view)
            end_ts = buffer_ts[end : end + (k - 1) * self.hop + 1 : self.hop].copy()
        else:
            windows = np.empty((0, self.channels, self.length), dtype=np.float32)
            end_ts = np.empty(0, dtype=np.float64)
        new_held = min(keep, len(buffer))
        if new_held:
            self._tail[slot, keep - new_held :] = buffer[len(buffer) - new_held :]
            self._tail_ts[slot, keep - new_held :] = buffer_ts[len(buffer) - new_held :]
        self._count[slot] = last
        return DueWindows(windows, end_ts)

    def extend_rows(
        self,
        slots: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.float64],
        rows: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.int64], DueWindows]:
        """One new row for each of ``slots`` (distinct): the windows due, in one step.

        ``timestamps`` ``(n,)`` and ``rows`` ``(n, channels)`` belong to ``slots`` ``(n,)``.
        Returns the positions (into ``slots``) of the slots that completed a window, and
        those windows in the same order.
        """
        keep = self.length - 1
        count = self._count[slots] + 1
        self._count[slots] = count
        picked = np.flatnonzero((count >= self.length) & ((count - self.length) % self.hop == 0))
        windows = np.empty((len(picked), self.length, self.channels), dtype=np.float32)
        if keep:
            tails, tails_ts = self._tail[slots], self._tail_ts[slots]
            windows[:, :keep] = tails[picked]
            self._tail[slots, : keep - 1] = tails[:, 1:]
            self._tail[slots, keep - 1] = rows
            self._tail_ts[slots, : keep - 1] = tails_ts[:, 1:]
            self._tail_ts[slots, keep - 1] = timestamps
        windows[:, keep] = rows[picked]
        return picked, DueWindows(
            np.ascontiguousarray(windows.transpose(0, 2, 1)), timestamps[picked]
        )

    def _grow(self, size: int) -> None:
        grown = len(self._count)
        self._tail = np.concatenate(
            (self._tail, np.zeros((size - grown, *self._tail.shape[1:]), dtype=np.float32))
        )
        self._tail_ts = np.concatenate(
            (self._tail_ts, np.zeros((size - grown, self.length - 1), dtype=np.float64))
        )
        self._count = np.concatenate((self._count, np.zeros(size - grown, dtype=np.int64)))


def sliding_windows(
    values: npt.NDArray[np.float32], length: int, hop: int = 1
) -> npt.NDArray[np.float32]:
    """Return every window of a contiguous block ``(n, channels)`` as ``(k, channels, length)``.

    A read-only strided view (no copy): window ``i`` covers rows ``i*hop .. i*hop+length-1``.
    Fewer than ``length`` rows give ``k = 0``.
    """
    if len(values) < length:
        return np.empty((0, values.shape[1], length), dtype=values.dtype)
    views = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)
    return views[::hop]
