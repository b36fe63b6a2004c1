"""What reading one export found: ``ReadSummary`` (shell input; printed by the commands
that read tables and stored in the training report).

Rows read and kept, the period covered, the sample step and the gaps longer than
``GAP_STEPS`` steps, and per column the missing cells (carried forward) and the bad cells
(refused, dropped or interpolated) with the first of each; then notes on what was done to
the rows (sorted, repeated times left out, a long table's first rows before every tag had
a reading). ``summarised`` puts one together from the pieces of a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aewatch.core.grid import DEFAULT_MAX_GAP_PERIODS
from aewatch.model.tables.cells import Cells
from aewatch.model.tables.files import RawFile
from aewatch.model.tables.order import Order
from aewatch.model.tables.times import TimeRead
from aewatch.readable import duration

__all__ = [
    "GAP_STEPS",
    "ColumnCells",
    "ReadSummary",
    "TimeSpan",
    "column_cells",
    "dropped_note",
    "order_notes",
    "summarised",
    "time_span",
]

GAP_STEPS = DEFAULT_MAX_GAP_PERIODS  # a step this many times the usual one is a gap
_INDENT = " " * 9


@dataclass(frozen=True, slots=True)
class ColumnCells:
    """One column's missing and bad cells, with the line (row) of the first of each."""

    name: str
    missing: int = 0
    first_missing: int | None = None
    bad: int = 0
    first_bad: int | None = None
    first_bad_text: str | None = None


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """The times kept: first and last (epoch s UTC), the median step (s, 0 with one row),
    how many steps exceed ``GAP_STEPS`` median steps, and the longest of them and where it
    starts."""

    start_s: float
    end_s: float
    step_s: float
    gaps: int
    longest_gap_s: float
    longest_gap_from_s: float | None


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What was read from one file; ``lines()`` for a terminal, ``to_json()`` for a report.

    >>> span = TimeSpan(0.0, 3600.0, 60.0, 0, 0.0, None)
    >>> ReadSummary("a.csv", "wide", "','-separated, times ISO 8601", 61, 61, span).lines()[1]
    '         61 rows, 1970-01-01 00:00:00 to 01:00:00 UTC, step 60 s, no gaps'
    """

    source: str
    layout: str  # "wide" or "long"
    how: str  # separator, decimal mark, time format and zone, as a phrase
    rows_read: int
    rows_kept: int
    span: TimeSpan
    columns: tuple[ColumnCells, ...] = ()
    on_bad_cell: str = "error"
    line_word: str = "line"
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The summary as a few lines, the first starting ``read``."""
        kept = f"{self.rows_read} rows"
        if self.layout == "long":
            kept += f" → {self.rows_kept} times"
        elif self.rows_kept != self.rows_read:
            kept += f" → {self.rows_kept} kept"
        out = [
            f"read     {self.source}: {self.layout} table, {self.how}",
            f"{_INDENT}{kept}, {self._period()}",
        ]
        cells = [self._cells(c) for c in self.columns if c.missing or c.bad]
        out += [f"{_INDENT}{line}" for line in cells]
        if not cells:
            n = len(self.columns)
            out.append(f"{_INDENT}every value cell of {n} column{'s' * (n != 1)} is a number")
        out += [f"{_INDENT}note: {note}" for note in self.notes]
        return out

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready values (times as ISO 8601 UTC), with ``text``: the
        lines of :meth:`lines`."""
        span = self.span
        return {
            "text": self.lines(),
            "file": self.source,
            "layout": self.layout,
            "read_as": self.how,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "start": _iso(span.start_s),
            "end": _iso(span.end_s),
            "step_s": span.step_s,
            "gaps": span.gaps,
            "longest_gap_s": span.longest_gap_s,
            "longest_gap_from": None
            if span.longest_gap_from_s is None
            else _iso(span.longest_gap_from_s),
            "on_bad_cell": self.on_bad_cell,
            "columns": [
                {
                    "name": c.name,
                    "missing": c.missing,
                    f"first_missing_{self.line_word}": c.first_missing,
                    "bad": c.bad,
                    f"first_bad_{self.line_word}": c.first_bad,
                    "first_bad_text": c.first_bad_text,
                }
                for c in self.columns
            ],
            "notes": list(self.notes),
        }

    def _period(self) -> str:
        span = self.span
        start, end = pd.Timestamp(span.start_s, unit="s"), pd.Timestamp(span.end_s, unit="s")
        end_text = f"{end:%H:%M:%S}" if start.date() == end.date() else f"{end:%Y-%m-%d %H:%M:%S}"
        text = f"{start:%Y-%m-%d %H:%M:%S} to {end_text} UTC"
        if span.step_s <= 0:
            return text
        text += f", step {duration(span.step_s)}"
        if not span.gaps:
            return f"{text}, no gaps"
        assert span.longest_gap_from_s is not None
        since = pd.Timestamp(span.longest_gap_from_s, unit="s")
        return (
            f"{text}, {span.gaps} gap{'s' if span.gaps > 1 else ''} over {GAP_STEPS} steps "
            f"(longest {duration(span.longest_gap_s)} from {since:%Y-%m-%d %H:%M:%S})"
        )

    def _cells(self, column: ColumnCells) -> str:
        parts = []
        if column.missing:
            parts.append(
                f"{column.missing} missing (first {self.line_word} {column.first_missing}; each "
                "takes the value above)"
            )
        if column.bad:
            done = {"drop": "dropped", "interpolate": "interpolated"}.get(
                self.on_bad_cell, "refused"
            )
            parts.append(
                f"{column.bad} bad (first {self.line_word} {column.first_bad}: "
                f"{column.first_bad_text!r}; {done})"
            )
        return f"{column.name!r}: " + ", ".join(parts)


def time_span(seconds: npt.NDArray[np.float64]) -> TimeSpan:
    """Return the span of sorted times ``(n,)`` epoch s, n ≥ 1."""
    steps = np.diff(seconds)
    if steps.size == 0:
        return TimeSpan(float(seconds[0]), float(seconds[0]), 0.0, 0, 0.0, None)
    step = float(np.median(steps))
    over = steps > GAP_STEPS * step
    longest = int(np.argmax(steps))
    return TimeSpan(
        float(seconds[0]),
        float(seconds[-1]),
        step,
        int(over.sum()),
        float(steps[longest]) if over.any() else 0.0,
        float(seconds[longest]) if over.any() else None,
    )


def summarised(
    raw: RawFile,
    seconds: npt.NDArray[np.float64],
    *,
    layout: str,
    times: TimeRead,
    columns: tuple[ColumnCells, ...],
    on_bad_cell: str,
    notes: tuple[str, ...],
) -> ReadSummary:
    """The summary of reading ``raw`` into rows at ``seconds`` ``(n,)`` (sorted, n ≥ 1)."""
    return ReadSummary(
        source=raw.source,
        layout=layout,
        how=_how(raw, times),
        rows_read=len(raw.lines),
        rows_kept=len(seconds),
        span=time_span(seconds),
        columns=columns,
        on_bad_cell=on_bad_cell,
        line_word=raw.line_word,
        notes=notes,
    )


def column_cells(
    name: str,
    cells: Cells,
    *,
    raw: RawFile,
    rows: npt.NDArray[np.intp],
    column: str,
) -> ColumnCells:
    """The missing and bad cells of channel ``name``, with the line of the first of each.

    ``cells`` ``(m,)`` come from 0-based data ``rows`` ``(m,)`` of ``column`` in ``raw``.
    """
    lines = raw.lines[rows]
    missing, bad = cells.is_missing, cells.is_bad
    first_bad = int(np.argmin(np.where(bad, lines, np.iinfo(np.int64).max))) if bad.any() else None
    return ColumnCells(
        name=name,
        missing=int(missing.sum()),
        first_missing=int(lines[missing].min()) if missing.any() else None,
        bad=int(bad.sum()),
        first_bad=None if first_bad is None else int(lines[first_bad]),
        first_bad_text=None if first_bad is None else raw.cell(column, int(rows[first_bad])),
    )


def order_notes(
    order: Order, times: TimeRead, *, dedupe: str | None, is_long: bool = False
) -> tuple[str, ...]:
    """Notes on sorting, repeated times and the repeated local hour.

    A long table's order counts within each tag: an export of one tag after another is
    in order.
    """
    notes = []
    rows, of = ("readings", " of their tag") if is_long else ("rows", "")
    if order.out_of_order:
        notes.append(
            f"{rows} earlier than one above them{of}: {order.out_of_order}, all sorted by time"
        )
    if order.repeated:
        notes.append(f"{rows} repeating a time{of}: {order.repeated}, the {dedupe} of each kept")
    if times.summer or times.winter:
        notes.append(
            f"the clocks went back ({times.zone}): {times.summer} local times in the repeated "
            f"hour read as summer time, {times.winter} as winter time"
        )
    return tuple(notes)


def dropped_note(count: int, what: str) -> tuple[str, ...]:
    """A note on the rows (readings) ``--on-bad-cell drop`` left out, if any."""
    return (f"{what} with a bad cell left out (--on-bad-cell drop): {count}",) if count else ()


def _how(raw: RawFile, times: TimeRead) -> str:
    parts = ["Parquet"] if raw.sep is None else [f"{raw.sep!r}-separated"]
    if raw.decimal == ",":
        parts.append("decimal comma" + (" (detected)" if raw.decimal_detected else ""))
    parts.append(f"times {times.how} in {times.zone}")
    return ", ".join(parts)


def _iso(seconds: float) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat().replace("+00:00", "Z")
