"""A wide export (a time column and a column per channel) read into an ``Export``:
``read_wide`` (shell input).

Every numeric column other than the time and the label columns is a channel unless the
caller picks them; a column that is mostly text is not numeric and is named in the
summary as not used. Rows are put in time order (see ``order``); bad cells are refused,
their rows dropped, or interpolated in time within their column; then each missing cell
takes the value above it. ``anomaly`` (or the label column given) and ``changepoint``
hold 0/1 in every row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aewatch.errors import DataError
from aewatch.model.tables.cells import (
    Cells,
    carried_forward,
    interpolated,
    looks_numeric,
    parsed_numbers,
    refuse_bad,
)
from aewatch.model.tables.files import RawFile, listing
from aewatch.model.tables.options import ReadOptions
from aewatch.model.tables.order import ordered_rows
from aewatch.model.tables.summary import column_cells, dropped_note, order_notes, summarised
from aewatch.model.tables.table import LABEL_COLUMNS, ChannelPick, Export, Step, Table
from aewatch.model.tables.times import read_times

__all__ = ["read_wide"]


def read_wide(
    raw: RawFile,
    time_name: str,
    *,
    pick: ChannelPick,
    label_column: str | None,
    options: ReadOptions,
    step: Step,
) -> Export:
    """Return the wide file ``raw`` read (rules in the module docstring).

    Raises:
        DataError: a missing label or channel column, a time or order the options do not
            handle, a bad cell with ``on_bad_cell="error"``, every row dropped, a missing
            first value, or a label other than 0/1.
    """
    label_name = _label_name(raw, label_column)
    not_channels = {time_name, *LABEL_COLUMNS, *([label_name] if label_name else [])}
    times = read_times(raw, time_name, options=options)
    order = ordered_rows(raw, time_name, seconds=times.seconds, options=options)
    step("values")
    names, columns = _channels(raw, pick, not_channels=not_channels)
    cells = [c.taken(order.rows) for c in columns]
    lines = raw.lines[order.rows]
    counts = tuple(
        column_cells(n, c, raw=raw, rows=order.rows, column=n)
        for n, c in zip(names, cells, strict=True)
    )
    is_bad = np.any([c.is_bad for c in cells], axis=0)
    if is_bad.any() and options.on_bad_cell == "error":
        first = int(np.argmin(np.where(is_bad, lines, np.iinfo(np.int64).max)))
        refuse_bad(raw, int(order.rows[first]), column=names[_first_bad_column(cells, first)])
    keep = ~is_bad if options.on_bad_cell == "drop" else np.ones(len(lines), dtype=np.bool_)
    if not keep.any():
        raise DataError(
            f"{raw.source}: every row has a bad cell, so --on-bad-cell drop leaves nothing; "
            "leave the bad columns out with --channels"
        )
    seconds = times.seconds[order.rows][keep]
    values = np.column_stack(
        [interpolated(times.seconds[order.rows], c.numbers, c.is_bad) for c in cells]
    )[keep]
    rows = order.rows[keep]
    step("labels")
    has_changepoints = LABEL_COLUMNS[1] in raw.names
    table = Table(
        source=raw.source,
        timestamps=seconds,
        values=_forward_filled(raw, names, values, first_row=int(rows[0])),
        channels=names,
        labels=_flags(raw, label_name, fix="--label-column")[rows] if label_name else None,
        changepoints=_flags(raw, LABEL_COLUMNS[1], fix="")[rows] if has_changepoints else None,
        lines=lines[keep],
    )
    notes = (
        *_unused_note(raw, names, not_channels, pick),
        *order_notes(order, times, dedupe=options.dedupe),
        *dropped_note(int((~keep).sum()), "rows"),
    )
    summary = summarised(
        raw,
        seconds,
        layout="wide",
        times=times,
        columns=counts,
        on_bad_cell=options.on_bad_cell,
        notes=notes,
    )
    return Export(table, summary)


def _first_bad_column(cells: list[Cells], row: int) -> int:
    return next(j for j, c in enumerate(cells) if c.is_bad[row])


def _label_name(raw: RawFile, requested: str | None) -> str | None:
    if requested is None:
        return LABEL_COLUMNS[0] if LABEL_COLUMNS[0] in raw.names else None
    if requested not in raw.names:
        raise DataError(
            f"{raw.source} has no label column {requested!r}; its columns are "
            f"{listing(raw.names)}; pass one of them with --label-column, or leave it out"
        )
    return requested


def _channels(
    raw: RawFile,
    pick: ChannelPick,
    *,
    not_channels: set[str],
) -> tuple[tuple[str, ...], list[Cells]]:
    """Return the channel names and their cells ``(n,)``, in the file's row order."""
    candidates = [n for n in raw.names if n not in not_channels]
    requested = pick.names
    if requested is None:
        # Parquet files written from pandas may hold its index as __index_level_0__.
        names = [n for n in candidates if n and not n.startswith("__index_level_")]
        found = [(n, _found_channel(raw, n)) for n in names]
        picked = [(n, c) for n, c in found if c is not None]
    else:
        for name in requested:
            if name not in candidates:
                what = (
                    f"column {name!r} is the timestamp or a label column, so it cannot be a channel"
                )
                raise DataError(
                    f"{raw.source} {what if name in raw.names else f'has no column {name!r}'}; "
                    f"its channel columns are {listing(candidates)}; {pick.fix}"
                )
        picked = [(n, _requested_channel(raw, n)) for n in dict.fromkeys(requested)]
    if not picked:
        raise DataError(
            f"{raw.source} has no numeric columns to use as channels (columns: "
            f"{listing(raw.names)}); export the sensor values as numbers, or name them "
            "with --channels"
        )
    return tuple(n for n, _ in picked), [c for _, c in picked]


def _requested_channel(raw: RawFile, name: str) -> Cells:
    """Return a column named in ``channels``."""
    parsed = parsed_numbers(raw.table.column(name), decimal=raw.decimal)
    if parsed is None:
        kind = raw.table.column(name).type
        raise DataError(
            f"{raw.source} column {name!r} holds {kind} values, not numbers; "
            "leave it out of --channels"
        )
    return Cells(*parsed)


def _found_channel(raw: RawFile, name: str) -> Cells | None:
    """Return a column if it looks numeric, else None."""
    parsed = parsed_numbers(raw.table.column(name), decimal=raw.decimal)
    if parsed is None or not looks_numeric(*parsed):
        return None
    return Cells(*parsed)


def _forward_filled(
    raw: RawFile, names: tuple[str, ...], values: npt.NDArray[np.float64], *, first_row: int
) -> npt.NDArray[np.float64]:
    """Return ``values`` ``(n, channels)`` with each missing cell taken from the row above.

    ``first_row`` is the row of the file the first of ``values`` comes from.
    """
    missing = ~np.isfinite(values[0])
    if missing.any():
        name = names[int(np.argmax(missing))]
        raise DataError(
            f"{raw.at(first_row)} column {name!r} {raw.describe(name, first_row)} in the first "
            "data row, so there is no earlier value to carry forward; fill it in, remove that "
            "row, or leave the column out with --channels"
        )
    return carried_forward(values)


def _flags(raw: RawFile, name: str, *, fix: str) -> npt.NDArray[np.int8]:
    """Return a 0/1 column such as ``anomaly`` as int8 ``(n,)``, in the file's row order."""
    parsed = parsed_numbers(raw.table.column(name))
    hint = f", or name another column with {fix}" if fix else ""
    if parsed is None:
        kind = raw.table.column(name).type
        raise DataError(
            f"{raw.source} column {name!r} holds {kind} values; labels must be 0 or 1{hint}"
        )
    numbers, bad = parsed
    wrong = bad | ~np.isin(numbers, (0.0, 1.0))
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} {raw.describe(name, row)}; labels must be 0 or 1 "
            f"in every row; fix that row{hint}"
        )
    return numbers.astype(np.int8)


def _unused_note(
    raw: RawFile, names: tuple[str, ...], not_channels: set[str], pick: ChannelPick
) -> tuple[str, ...]:
    """A note naming the columns that are not channels, if any."""
    unused = [
        n
        for n in raw.names
        if n not in names and n not in not_channels and not n.startswith("__index_level_")
    ]
    if not unused:
        return ()
    why = ": not numbers" if pick.names is None else ""
    return (f"columns {listing(unused)} not used{why}",)
