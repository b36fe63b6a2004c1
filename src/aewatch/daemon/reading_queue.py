"""The bounded queue of readings between the network thread and the scoring worker (shell).

The intake puts each message's readings on it whole or not at all; the worker takes
everything waiting at once. The bound counts readings, not messages, so a message of a
hundred samples weighs a hundred.
"""

from __future__ import annotations

import threading
from collections import deque

from aewatch.core.decode import Item

__all__ = ["Items", "ReadingQueue"]

Items = tuple[Item, ...]  # what one queue entry holds


class ReadingQueue:
    """A bounded, thread-safe FIFO of reading batches; the bound counts readings.

    >>> from aewatch.core.decode import Reading, Row
    >>> q = ReadingQueue(max_readings=3)
    >>> r = Reading("w1", "flow", 1.0, 2.0)
    >>> q.put((r, r)), q.put((r, r)), len(q)
    (True, False, 2)
    >>> q.put((Row("w1", ("flow", "temp"), 1.0, (2.0, 3.0)),), count=2), len(q)
    (False, 2)
    >>> [len(batch) for batch in q.take(timeout_s=0)]
    [2]
    """

    def __init__(self, max_readings: int) -> None:
        if max_readings < 1:
            raise ValueError(f"max_readings must be at least 1, got {max_readings}")
        self.max_readings = max_readings
        self._items: deque[Items] = deque()
        self._size = 0
        self._ready = threading.Condition()

    def __len__(self) -> int:
        """Readings waiting."""
        return self._size

    def put(self, items: Items, count: int | None = None) -> bool:
        """Queue ``items`` whole, or return False (nothing queued) when they do not fit.

        ``count`` is how many readings they hold (rows and series hold several); None:
        one per item.
        """
        size = len(items) if count is None else count
        with self._ready:
            if self._size + size > self.max_readings:
                return False
            self._items.append(items)
            self._size += size
            self._ready.notify()
            return True

    def take(self, timeout_s: float | None) -> list[Items]:
        """Everything waiting, after waiting up to ``timeout_s`` for something (None: forever)."""
        with self._ready:
            if not self._items and timeout_s != 0:
                self._ready.wait(timeout_s)
            items = list(self._items)
            self._items.clear()
            self._size = 0
            return items

    def wake(self) -> None:
        """Wake a waiting :meth:`take` (it returns what is there, perhaps nothing)."""
        with self._ready:
            self._ready.notify_all()
