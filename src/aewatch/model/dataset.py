"""Read historical sensor exports into a :class:`Table` (shell: reads the files training uses).

A file is CSV (optionally gzip-compressed; delimiter ``,`` ``;`` tab or ``|``, sniffed from
the first lines; UTF-8; decimal point ``.``) or Parquet (suffix ``.parquet`` or ``.pq``).
One column holds times: ISO 8601 text (naive times are UTC, times with an offset are
converted to UTC), numbers of epoch seconds (a column whose largest magnitude exceeds
``1e11`` holds epoch *milliseconds*: 1e11 s is the year 5138, 1e11 ms is 1973), or Parquet
date/time types. An ``anomaly`` column (or ``label_column``) gives 0/1 labels, a
``changepoint`` column 0/1 change-point marks. Every other numeric column is a channel
unless ``channels`` picks them. Empty, ``NaN`` or ``Inf`` cells are missing and take the
value above them (forward fill). Every problem raises :class:`~aewatch.errors.DataError`
naming the file, line and column, the value found and the fix.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aewatch.errors import DataError

__all__ = ["DELIMITERS", "LABEL_COLUMNS", "TIMESTAMP_COLUMNS", "Table", "read_table", "read_tables"]

LABEL_COLUMNS = ("anomaly", "changepoint")  # never channels; the first is the default label
TIMESTAMP_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "t")  # matched ignoring case
DELIMITERS = (",", ";", "\t", "|")
EPOCH_MS_ABOVE = 1e11  # epoch numbers beyond this are milliseconds
PARQUET_SUFFIXES = (".parquet", ".pq")
_MISSING_TEXTS = frozenset({"", "nan", "-nan", "+nan", "na", "n/a", "null", "none"})
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 6
_TIME_FIX = (
    "write times as ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds, fix or remove that row, "
    "or pass another column with --timestamp-column"
)


@dataclass(frozen=True, slots=True)
class Table:
    """One file's readings, sorted by time, with its labels and where each row came from.

    ``timestamps`` ``(n,)`` epoch seconds UTC, strictly increasing; ``values``
    ``(n, channels)`` in the file's units, missing cells forward-filled; ``labels`` and
    ``changepoints`` ``(n,)`` 0/1 or ``None`` when the file has no such column; ``lines``
    ``(n,)`` the 1-based line of each row in a CSV file (the header is line 1) or its
    1-based row number in a Parquet file, for error messages.
    """

    source: str  # the path as given
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    channels: tuple[str, ...]
    labels: npt.NDArray[np.int8] | None
    changepoints: npt.NDArray[np.int8] | None
    lines: npt.NDArray[np.int64]


def read_table(
    path: str | Path,
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
) -> Table:
    """Return the readings of one CSV or Parquet file (rules in the module docstring).

    ``channels`` picks and orders the value columns (default: every numeric column that
    is not the timestamp or a label); ``label_column`` defaults to ``anomaly`` when present;
    ``timestamp_column`` defaults to the first column named one of ``TIMESTAMP_COLUMNS``.

    Raises:
        TypeError: ``channels`` is one string instead of a list of names.
        DataError: unreadable file, no rows, no timestamp column, a missing requested
            column, a non-numeric cell in a channel, a missing first value, timestamps not
            strictly increasing, labels other than 0/1, or no channels.
    """
    if isinstance(channels, str):
        raise TypeError(f"channels must be a list of column names, got the string {channels!r}")
    raw = _read_raw(Path(path), source=str(path))
    time_name = _timestamp_name(raw, timestamp_column)
    label_name = _label_name(raw, label_column)
    not_channels = {time_name, *LABEL_COLUMNS, *([label_name] if label_name else [])}
    timestamps = _timestamps(raw, time_name)
    _check_increasing(raw, time_name, timestamps)
    names, columns = _channels(raw, channels, not_channels=not_channels)
    has_changepoints = LABEL_COLUMNS[1] in raw.names
    return Table(
        source=raw.source,
        timestamps=timestamps,
        values=_forward_filled(raw, names, np.column_stack(columns)),
        channels=names,
        labels=_flags(raw, label_name, fix="--label-column") if label_name else None,
        changepoints=_flags(raw, LABEL_COLUMNS[1], fix="") if has_changepoints else None,
        lines=raw.lines,
    )


def read_tables(
    paths: Iterable[str | Path],
    *,
    channels: Sequence[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
) -> list[Table]:
    """Return :func:`read_table` of each path, checking that all share the same channels.

    Raises:
        DataError: no paths, any error of :func:`read_table`, or two files whose channels
            differ in name or order.
    """
    tables = [
        read_table(
            p, channels=channels, label_column=label_column, timestamp_column=timestamp_column
        )
        for p in paths
    ]
    if not tables:
        raise DataError("no data files given; pass at least one CSV or Parquet file")
    first = tables[0]
    for table in tables[1:]:
        if table.channels != first.channels:
            shared = [c for c in first.channels if c in table.channels]
            hint = (
                f", or use only the shared ones with --channels {','.join(shared)}"
                if shared
                else ""
            )
            raise DataError(
                f"{table.source} has channels {_listing(table.channels)} but {first.source} "
                f"has {_listing(first.channels)}; export every file with the same sensor "
                f"columns in the same order{hint}"
            )
    return tables


@dataclass(frozen=True, slots=True)
class _Raw:
    """A file's columns as Arrow read them, with each row's line (CSV) or row (Parquet)."""

    source: str
    table: Any  # pyarrow.Table, columns named as in the header without surrounding spaces
    lines: npt.NDArray[np.int64]
    line_word: str  # "line" for CSV, "row" for Parquet

    @property
    def names(self) -> list[str]:
        return list(self.table.column_names)

    def at(self, row: int) -> str:
        """Return where 0-based data row ``row`` is: ``FILE:LINE`` or ``FILE row N``."""
        line = int(self.lines[row])
        return f"{self.source}:{line}" if self.line_word == "line" else f"{self.source} row {line}"

    def cell(self, name: str, row: int) -> str:
        value = self.table.column(name)[row].as_py()
        return "" if value is None else str(value)

    def describe(self, name: str, row: int) -> str:
        text = self.cell(name, row)
        return f"has value {text!r}" if text.strip() else "is empty"


def _read_raw(path: Path, *, source: str) -> _Raw:
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            table, word = pq.read_table(path), "row"
            lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
        else:
            data = _decompressed(path.read_bytes())
            table, word = _csv_table(data, source=source), "line"
            lines = _data_lines(data, table.num_rows)
    except (OSError, EOFError, zlib.error, pa.ArrowException) as err:
        raise DataError(
            f"{source} cannot be read: {err}; check the path and the file format"
        ) from err
    names = [str(n).strip() for n in table.column_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{source} has more than one column named {twice[0]!r}; rename them apart")
    if table.num_rows == 0:
        raise DataError(f"{source} has no data rows; export the readings under the header row")
    return _Raw(source, table.rename_columns(names), lines, word)


def _decompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _csv_table(data: bytes, *, source: str) -> Any:
    if re.search(rb"[^\s\xef\xbb\xbf]", data) is None:  # only blanks and a BOM
        raise DataError(f"{source} is empty; export the readings with a header row of column names")
    parse = pa_csv.ParseOptions(delimiter=_sniffed_delimiter(data))
    convert = pa_csv.ConvertOptions(strings_can_be_null=True)
    try:
        return pa_csv.read_csv(_reader(data), parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        where, problem = _located(data, parse, source=source, fallback=str(err))
        raise DataError(
            f"{where} cannot be read as {parse.delimiter!r}-separated CSV: {problem}; give every "
            "row as many fields as the header, and save the file as UTF-8"
        ) from err


def _reader(data: bytes) -> Any:
    """A ``pyarrow.BufferReader`` over a copy of ``data`` in Arrow's own memory.

    Arrow's CSV reader lets go of its input on one of its worker threads, a moment after
    ``read_csv`` returns. Over Python ``bytes`` that takes the GIL; when the interpreter
    is already shutting down (a command that fails right after reading its file) the
    thread is ended mid-destructor and the process aborts with ``terminate called
    without an active exception``, exit 134. A buffer Arrow owns is freed without Python.
    """
    buffer = pa.allocate_buffer(len(data))
    np.frombuffer(buffer, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return pa.BufferReader(buffer)


def _located(data: bytes, parse: Any, *, source: str, fallback: str) -> tuple[str, str]:
    """Return ``FILE:LINE`` (or ``FILE``) and Arrow's complaint about ``data``."""
    # Only a single-threaded read reports the line of a bad row, so retry to say where.
    try:
        single = pa_csv.ReadOptions(use_threads=False)
        pa_csv.read_csv(_reader(data), read_options=single, parse_options=parse)
    except pa.ArrowInvalid as err:
        fallback = str(err)
    found = re.search(r"Row #(\d+): (.*)", fallback, flags=re.DOTALL)
    return (f"{source}:{found[1]}", found[2]) if found else (source, fallback)


def _sniffed_delimiter(data: bytes) -> str:
    """Return the delimiter that splits the first lines into the most, equal, fields."""
    head = data[:_SNIFF_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line for line in head.splitlines() if line.strip()]
    if len(data) > _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # it may be cut short
    lines = lines[:_SNIFF_LINES]

    def fit(delimiter: str) -> tuple[bool, int]:
        counts = {line.count(delimiter) for line in lines}
        return len(counts) == 1 and counts != {0}, lines[0].count(delimiter)

    return max(DELIMITERS, key=fit)


def _data_lines(data: bytes, n_rows: int) -> npt.NDArray[np.int64]:
    """Return the 1-based line number of each data row, skipping blank lines as Arrow does."""
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if n_lines == n_rows + 1:  # no blank lines: the usual case, and quick
        return np.arange(2, n_rows + 2, dtype=np.int64)
    buffer = np.frombuffer(data, dtype=np.uint8)
    ends = np.append(np.flatnonzero(buffer == ord("\n")), buffer.size)
    starts = np.append(0, ends[:-1] + 1)
    lengths = ends - starts
    has_cr = (lengths > 0) & (buffer[np.maximum(ends - 1, 0)] == ord("\r"))
    filled = np.flatnonzero(lengths - has_cr > 0).astype(np.int64) + 1
    if filled.size != n_rows + 1:  # cannot happen as Arrow reads today; never misnumber
        return np.arange(2, n_rows + 2, dtype=np.int64)
    return filled[1:]


def _timestamp_name(raw: _Raw, requested: str | None) -> str:
    if requested is not None:
        if requested not in raw.names:
            raise DataError(
                f"{raw.source} has no column {requested!r}; its columns are "
                f"{_listing(raw.names)}; pass one of them with --timestamp-column"
            )
        return requested
    for name in raw.names:
        if name.lower() in TIMESTAMP_COLUMNS:
            return name
    raise DataError(
        f"{raw.source} has no timestamp column: its columns are {_listing(raw.names)} and "
        f"none is named {'/'.join(TIMESTAMP_COLUMNS)}; pass the time column's name with "
        "--timestamp-column"
    )


def _label_name(raw: _Raw, requested: str | None) -> str | None:
    if requested is None:
        return LABEL_COLUMNS[0] if LABEL_COLUMNS[0] in raw.names else None
    if requested not in raw.names:
        raise DataError(
            f"{raw.source} has no label column {requested!r}; its columns are "
            f"{_listing(raw.names)}; pass one of them with --label-column, or leave it out"
        )
    return requested


def _timestamps(raw: _Raw, name: str) -> npt.NDArray[np.float64]:
    column = raw.table.column(name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} has no timestamp; fill it in or remove the row"
        )
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        unit = pa.timestamp("us", tz=kind.tz if pa.types.is_timestamp(kind) else None)
        micros = pc.cast(pc.cast(column, unit), pa.int64()).to_numpy()
        return np.asarray(micros, dtype=np.float64) / 1e6
    seconds = _cast_numbers(column)
    if seconds is None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return _iso_seconds(raw, name)
    if seconds is None:
        raise DataError(f"{raw.source} column {name!r} holds {kind} values, not times; {_TIME_FIX}")
    _reject_first_bad_time(raw, name, ~np.isfinite(seconds))
    return seconds / 1000.0 if np.abs(seconds).max() > EPOCH_MS_ABOVE else seconds


def _iso_seconds(raw: _Raw, name: str) -> npt.NDArray[np.float64]:
    """Return a text column of ISO 8601 times as epoch seconds ``(n,)``."""
    column = raw.table.column(name)
    texts = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object).str.strip()
    times = pd.to_datetime(texts, format="ISO8601", utc=True, errors="coerce")
    not_iso = times.isna().to_numpy()
    if not_iso.any():
        numbers, not_number = _parsed_numbers(column) or (np.full(len(column), np.nan), not_iso)
        not_number = not_number | ~np.isfinite(numbers)
        # Blame a cell that is neither; failing that, one of the rarer kind in the mix.
        minority = not_number if _looks_numeric(numbers, not_number) else not_iso
        neither = not_iso & not_number
        if neither.any():
            _reject_first_bad_time(raw, name, neither)
        _reject_first_bad_time(raw, name, minority, problem="so the column mixes ISO and epoch")
        _reject_first_bad_time(raw, name, not_iso)  # numbers pandas reads but Arrow does not
    micros = times.dt.tz_localize(None).to_numpy("datetime64[us]").astype(np.int64)
    return micros / 1e6


def _reject_first_bad_time(
    raw: _Raw, name: str, bad: npt.NDArray[np.bool_], *, problem: str = "which is not a time"
) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} {raw.describe(name, row)}, {problem}; {_TIME_FIX}"
        )


def _check_increasing(raw: _Raw, name: str, seconds: npt.NDArray[np.float64]) -> None:
    not_after = np.flatnonzero(np.diff(seconds) <= 0)
    if not_after.size == 0:
        return
    row = int(not_after[0]) + 1
    relation = "the same as" if seconds[row] == seconds[row - 1] else "earlier than"
    raise DataError(
        f"{raw.at(row)} column {name!r} has timestamp {raw.cell(name, row)!r}, {relation} "
        f"{raw.cell(name, row - 1)!r} on {raw.line_word} {raw.lines[row - 1]}; timestamps must be "
        "strictly increasing: sort the export by time and remove duplicate rows"
    )


def _channels(
    raw: _Raw,
    requested: Sequence[str] | None,
    *,
    not_channels: set[str],
) -> tuple[tuple[str, ...], list[npt.NDArray[np.float64]]]:
    """Return the channel names and their columns ``(n,)`` as float64, NaN where missing."""
    candidates = [n for n in raw.names if n not in not_channels]
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
                    f"its channel columns are {_listing(candidates)}; fix --channels"
                )
        picked = [(n, _requested_channel(raw, n)) for n in dict.fromkeys(requested)]
    if not picked:
        raise DataError(
            f"{raw.source} has no numeric columns to use as channels (columns: "
            f"{_listing(raw.names)}); export the sensor values as numbers, or name them "
            "with --channels"
        )
    return tuple(n for n, _ in picked), [c for _, c in picked]


def _requested_channel(raw: _Raw, name: str) -> npt.NDArray[np.float64]:
    """Return a column named in ``channels`` as float64 ``(n,)``, NaN where empty."""
    parsed = _parsed_numbers(raw.table.column(name))
    if parsed is None:
        kind = raw.table.column(name).type
        raise DataError(
            f"{raw.source} column {name!r} holds {kind} values, not numbers; "
            "leave it out of --channels"
        )
    return _numbers_checked(raw, name, *parsed)


def _found_channel(raw: _Raw, name: str) -> npt.NDArray[np.float64] | None:
    """Return a column as float64 ``(n,)`` if it looks numeric, else None."""
    parsed = _parsed_numbers(raw.table.column(name))
    if parsed is None or not _looks_numeric(*parsed):
        return None
    return _numbers_checked(raw, name, *parsed)


def _numbers_checked(
    raw: _Raw, name: str, numbers: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} has value {raw.cell(name, row)!r}, which is not a "
            "number; fix or remove that row, or leave the column out with --channels"
        )
    return numbers


def _parsed_numbers(column: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """Return a column as float64 (NaN where empty) and which cells are not numbers.

    None when the column's type cannot hold numbers (times, binary, nested).
    """
    numbers = _cast_numbers(column)
    if numbers is not None:
        return numbers, np.zeros(len(column), dtype=np.bool_)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    # Some cell is not a number: pandas finds which (slowly, but only when there is one).
    texts = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object).str.strip()
    numbers = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64)
    is_missing = texts.isna().to_numpy() | texts.str.lower().isin(_MISSING_TEXTS).to_numpy()
    return numbers, np.isnan(numbers) & ~is_missing


def _cast_numbers(column: Any) -> npt.NDArray[np.float64] | None:
    """Return a column as float64 (NaN where empty), or None if any cell is not a number."""
    kind, types = column.type, pa.types
    if not (types.is_string(kind) or types.is_large_string(kind)):
        numeric = (types.is_integer, types.is_floating, types.is_decimal, types.is_boolean)
        if not (types.is_null(kind) or any(is_type(kind) for is_type in numeric)):
            return None
    else:
        column = pc.utf8_trim_whitespace(column)
    try:
        floats = pc.cast(column, pa.float64())
    except pa.ArrowInvalid:
        return None
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def _looks_numeric(numbers: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_]) -> bool:
    """Return whether most non-empty cells are numbers (so a bad one is a typo, not text)."""
    return int(np.count_nonzero(~np.isnan(numbers))) > int(np.count_nonzero(bad))


def _forward_filled(
    raw: _Raw, names: tuple[str, ...], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Return ``values`` ``(n, channels)`` with each missing cell taken from the row above."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    if missing[0].any():
        name = names[int(np.argmax(missing[0]))]
        raise DataError(
            f"{raw.at(0)} column {name!r} {raw.describe(name, 0)} in the first data row, so there "
            "is no earlier value to carry forward; fill it in, remove that row, or leave the "
            "column out with --channels"
        )
    rows = np.where(missing, 0, np.arange(len(values))[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return np.take_along_axis(values, rows, axis=0)


def _flags(raw: _Raw, name: str, *, fix: str) -> npt.NDArray[np.int8]:
    """Return a 0/1 column such as ``anomaly`` as int8 ``(n,)``."""
    parsed = _parsed_numbers(raw.table.column(name))
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


def _listing(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names) or "(none)"
