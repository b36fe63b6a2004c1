"""Read historical sensor exports into a :class:`Table` (shell: reads the files training uses).

A file is CSV (optionally gzip-compressed; separator ``,`` ``;`` tab or ``|``, sniffed from
the first lines or given; UTF-8; decimal point or comma, detected or given) or Parquet
(suffix ``.parquet`` or ``.pq``), laid out *wide* (a time column and a column per channel,
``aewatch.model.tables.wide``) or *long* (``timestamp, tag, value`` rows: each tag a
channel, ``aewatch.model.tables.long``), found from the column names or given
(:class:`~aewatch.model.tables.ReadOptions`). One column holds times: ISO 8601 text, epoch
seconds or milliseconds, Parquet date/time types or a local format
(``aewatch.model.tables.times``); naive times are UTC unless a time zone is given. An
``anomaly`` column or tag (or ``label_column``) gives 0/1 labels, a ``changepoint`` one 0/1
change-point marks. Every other numeric column (every other tag) is a channel unless
``channels`` picks them. Empty, ``NaN``, ``#N/A`` or ``Inf`` cells are missing and take the
value above them (forward fill); a cell of other text is bad: refused, or dropped or
interpolated as the options say. Rows must come in time order with no time twice, unless
the options sort them and keep one of each. Every problem raises
:class:`~aewatch.errors.DataError` naming the file, line and column, the value found and
the fix; :func:`read_export` also returns a :class:`~aewatch.model.tables.ReadSummary` of
what it found.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from aewatch.errors import DataError
from aewatch.model.tables import (
    CHANNELS_FIX,
    LABEL_COLUMNS,
    ChannelPick,
    Export,
    RawFile,
    ReadOptions,
    Step,
    Table,
    asset_rows,
    fleet_raw,
    listing,
    long_columns,
    read_long,
    read_raw,
    read_wide,
)
from aewatch.model.tables.files import DELIMITERS

__all__ = [
    "CHANNELS_FIX",
    "DELIMITERS",
    "LABEL_COLUMNS",
    "TIMESTAMP_COLUMNS",
    "Export",
    "ReadOptions",
    "Table",
    "read_export",
    "read_exports",
    "read_table",
    "read_tables",
]

TIMESTAMP_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "t")  # matched ignoring case
_DEFAULT = ReadOptions()
_STEPS = 4  # reading the file, times, values, labels or the pivot


def read_table(
    path: str | Path,
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
    options: ReadOptions = _DEFAULT,
    channels_fix: str = CHANNELS_FIX,
) -> Table:
    """Return the readings of one CSV or Parquet file (rules in the module docstring).

    ``channels`` picks and orders the value columns (default: every numeric column that
    is not the timestamp or a label; a long table's tags, sorted); ``label_column``
    defaults to ``anomaly`` when present; ``timestamp_column`` (or the options') defaults
    to the first column named one of ``TIMESTAMP_COLUMNS``; ``channels_fix`` is what a
    message about a channel the file lacks says to do.

    Raises:
        TypeError: ``channels`` is one string instead of a list of names.
        DataError: unreadable file, no rows, no timestamp column, a missing requested
            column, a bad cell in a channel, a missing first value, rows out of order or
            repeated, labels other than 0/1, or no channels.
    """
    return read_export(
        path,
        channels=channels,
        label_column=label_column,
        timestamp_column=timestamp_column,
        options=options,
        channels_fix=channels_fix,
    ).table


def read_export(
    path: str | Path,
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
    options: ReadOptions = _DEFAULT,
    channels_fix: str = CHANNELS_FIX,
) -> Export:
    """Return :func:`read_table`'s table with the summary of what was read.

    Raises:
        TypeError, DataError: as :func:`read_table`.
    """
    if isinstance(channels, str):
        raise TypeError(f"channels must be a list of column names, got the string {channels!r}")
    pick = ChannelPick(channels, channels_fix)
    with _progress(Path(path).name, options) as step:
        if options.asset_column is not None and options.asset is not None:
            whole = fleet_raw(Path(path), source=str(path), options=options)
            raw = asset_rows(whole, options.asset_column, options.asset)
        else:
            raw = read_raw(Path(path), source=str(path), options=options)
        step("times")
        time_name = _timestamp_name(raw, timestamp_column or options.timestamp_column)
        columns = long_columns(raw, time_name, options)
        if columns is None:
            return read_wide(
                raw, time_name, pick=pick, label_column=label_column, options=options, step=step
            )
        return read_long(
            raw,
            time_name,
            columns=columns,
            pick=pick,
            label_column=label_column,
            options=options,
            step=step,
        )


def read_exports(
    paths: Iterable[str | Path],
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
    options: ReadOptions = _DEFAULT,
    channels_fix: str = CHANNELS_FIX,
) -> list[Export]:
    """Return :func:`read_export` of each path, checking that all share the same channels.

    Raises:
        DataError: no paths, any error of :func:`read_table`, or two files whose channels
            differ in name or order.
    """
    exports = [
        read_export(
            p,
            channels=channels,
            label_column=label_column,
            timestamp_column=timestamp_column,
            options=options,
            channels_fix=channels_fix,
        )
        for p in paths
    ]
    if not exports:
        raise DataError("no data files given; pass at least one CSV or Parquet file")
    first = exports[0].table
    for table in (e.table for e in exports[1:]):
        if table.channels != first.channels:
            shared = [c for c in first.channels if c in table.channels]
            hint = (
                f", or use only the shared ones with --channels {','.join(shared)}"
                if shared
                else ""
            )
            raise DataError(
                f"{table.source} has channels {listing(table.channels)} but {first.source} "
                f"has {listing(first.channels)}; export every file with the same sensor "
                f"columns in the same order{hint}"
            )
    return exports


def read_tables(
    paths: Iterable[str | Path],
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
    options: ReadOptions = _DEFAULT,
    channels_fix: str = CHANNELS_FIX,
) -> list[Table]:
    """Return :func:`read_table` of each path, checking that all share the same channels.

    Raises:
        DataError: as :func:`read_exports`.
    """
    exports = read_exports(
        paths,
        channels=channels,
        label_column=label_column,
        timestamp_column=timestamp_column,
        options=options,
        channels_fix=channels_fix,
    )
    return [e.table for e in exports]


@contextmanager
def _progress(name: str, options: ReadOptions) -> Iterator[Step]:
    """A bar on a terminal once reading ``name`` takes over a second; none elsewhere."""
    bar = tqdm(
        total=_STEPS,
        desc=f"reading {name}: the file (1/{_STEPS})",
        bar_format="{desc} [{elapsed}]",
        delay=1.0,
        leave=False,
        disable=None if options.show_progress else True,
    )

    def step(what: str) -> None:
        bar.set_description_str(f"reading {name}: {what} ({bar.n + 2}/{_STEPS})", refresh=False)
        bar.update()

    try:
        yield step
    finally:
        bar.close()


def _timestamp_name(raw: RawFile, requested: str | None) -> str:
    if requested is not None:
        if requested not in raw.names:
            raise DataError(
                f"{raw.source} has no column {requested!r}; its columns are "
                f"{listing(raw.names)}; pass one of them with --timestamp-column"
            )
        return requested
    for name in raw.names:
        if name.lower() in TIMESTAMP_COLUMNS:
            return name
    raise DataError(
        f"{raw.source} has no timestamp column: its columns are {listing(raw.names)} and "
        f"none is named {'/'.join(TIMESTAMP_COLUMNS)}; pass the time column's name with "
        "--timestamp-column"
    )
