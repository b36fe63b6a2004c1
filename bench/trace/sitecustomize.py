"""Where a reading's time goes inside ``aewatch run``: a diagnostic, not a feature.

Put this folder first on ``PYTHONPATH`` and set ``AEW_TRACE=1``; Python imports this module
at start-up (``sitecustomize``) and wraps a few daemon functions to sample, in wall-clock
milliseconds since each reading's (or window's) own timestamp:

* ``arrive``: when the network thread queues it (``ReadingQueue.put``);
* ``ingest``: when the scoring worker takes it (``Pipeline.ingest``);
* ``completer_age``: the reading that completes a grid row, when the Aligner takes it
  (a row needs all its channels, so this is the slowest of them);
* ``cut``: when its window is cut (``WindowBank.extend`` or ``extend_rows``);
* ``decided``: when its window's decision is made (``Daemon._flush``);

and the worker's ``ingest_dur``, ``flush_dur`` and ``take_dur``. On exit (SIGTERM) it writes
p50/p90/p99 of each to ``$AEW_TRACE_OUT`` (default ``aewatch-trace.txt``)::

    AEW_TRACE=1 PYTHONPATH=bench/trace .venv/bin/python -m aewatch run --config FILE

bench/RESULTS.md §4 ("Where the remaining gaps are") has what it showed.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterable
from typing import Any

if os.environ.get("AEW_TRACE"):
    import numpy as np

    from aewatch.core import align, pipeline, window
    from aewatch.daemon import intake, service

    _samples: dict[str, list[float]] = {}
    _EVERY = 8  # sample one reading in this many

    def _note(name: str, values: Iterable[float]) -> None:
        _samples.setdefault(name, []).extend(values)

    def _wrap(owner: Any, name: str, make: Any) -> None:
        setattr(owner, name, make(getattr(owner, name)))

    def _put(original: Any) -> Any:
        def put(self: Any, items: Any, count: int | None = None) -> Any:
            now = time.time()
            _note("arrive", (now - item.timestamp for item in items[::_EVERY]))
            return original(self, items, count)

        return put

    def _take(original: Any) -> Any:
        def take(self: Any, timeout_s: float | None) -> Any:
            started = time.time()
            items = original(self, timeout_s)
            _note("take_dur", [time.time() - started])
            return items

        return take

    def _ingest(original: Any) -> Any:
        def ingest(self: Any, readings: Any) -> Any:
            readings = list(readings)
            now = time.time()
            _note("ingest", (now - item.timestamp for item in readings[::_EVERY]))
            result = original(self, readings)
            _note("ingest_dur", [time.time() - now])
            return result

        return ingest

    def _add(original: Any) -> Any:
        def add(self: Any, reading: Any) -> Any:
            out = original(self, reading)
            if len(out) == 1 and not out.filled:
                _note("completer_age", [time.time() - reading.timestamp])
            return out

        return add

    def _extend(original: Any) -> Any:
        def extend(self: Any, slot: int, timestamps: Any, rows: Any) -> Any:
            due = original(self, slot, timestamps, rows)
            if len(due):
                _note("cut", (time.time() - due.end_timestamps[::_EVERY]).tolist())
            return due

        return extend

    def _extend_rows(original: Any) -> Any:
        def extend_rows(self: Any, slots: Any, timestamps: Any, rows: Any) -> Any:
            picked, due = original(self, slots, timestamps, rows)
            if len(due):
                _note("cut", (time.time() - due.end_timestamps[::_EVERY]).tolist())
            return picked, due

        return extend_rows

    def _flush(original: Any) -> Any:
        def flush(self: Any) -> Any:
            started = time.time()
            scored: list[Any] = []
            pipeline_flush = self.pipeline.flush

            def keep() -> Any:
                scored.extend(pipeline_flush())
                return scored

            self.pipeline.flush = keep
            try:
                original(self)
            finally:
                del self.pipeline.flush
            now = time.time()
            _note("flush_dur", [now - started])
            for one in scored:
                _note("decided", (now - one.end_timestamps[::_EVERY]).tolist())

        return flush

    _wrap(intake.ReadingQueue, "put", _put)
    _wrap(intake.ReadingQueue, "take", _take)
    _wrap(pipeline.Pipeline, "ingest", _ingest)
    _wrap(align.Aligner, "add", _add)
    _wrap(window.WindowBank, "extend", _extend)
    _wrap(window.WindowBank, "extend_rows", _extend_rows)
    _wrap(service.Daemon, "_flush", _flush)

    @atexit.register
    def _report() -> None:
        if not _samples:
            return  # a process that ran no daemon (the bench's own, say) writes nothing
        lines = []
        for name, values in _samples.items():
            ms = np.asarray(values) * 1e3
            p50, p90, p99 = np.percentile(ms, [50, 90, 99])
            lines.append(
                f"{name:14s} n {len(ms):7d}  p50 {p50:6.1f}  p90 {p90:6.1f}  p99 {p99:6.1f} ms"
            )
        with open(os.environ.get("AEW_TRACE_OUT", "aewatch-trace.txt"), "w") as out:
            out.write("\n".join(lines) + "\n")
