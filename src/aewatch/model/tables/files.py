"""Open one export as Arrow columns: ``RawFile`` (shell: reads the bytes training uses).

A CSV file (optionally gzip-compressed, UTF-8) is split at its separator, given or
sniffed from the first lines (``,`` ``;`` tab or ``|``), with its decimal mark given or
detected (a comma when the separator is not a comma and the first lines hold a number
whose comma cannot group thousands, such as ``12,5`` or ``1.234,5``); columns Arrow would
read as dates or times stay text, so a message quotes a time as the file writes it. A
Parquet file (suffix ``.parquet`` or ``.pq``) is read as it is, dictionary-encoded columns
decoded. Each data row keeps its line in the file (CSV, the header is line 1) or its row
number (Parquet) for the messages that name it.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aewatch.errors import DataError
from aewatch.model.tables.options import ReadOptions

__all__ = ["DELIMITERS", "PARQUET_SUFFIXES", "RawFile", "listing", "read_raw"]

DELIMITERS = (",", ";", "\t", "|")
PARQUET_SUFFIXES = (".parquet", ".pq")
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 6
# A number with a decimal comma (12,5, 1.234,5, 0,217); one that could also be a
# thousands group (1,234) says less; and a number with a decimal point (12.5).
_COMMA_NUMBER = re.compile(r"^\s*[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+\s*$")
_THOUSANDS = re.compile(r"^\s*[+-]?[1-9]\d{0,2}(?:,\d{3})+\s*$")
_POINT_NUMBER = re.compile(r"^\s*[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*$")


@dataclass(frozen=True, slots=True)
class RawFile:
    """A file's columns as Arrow read them, with each row's line (CSV) or row (Parquet).

    ``sep`` is the CSV separator (None for Parquet); ``decimal`` the decimal mark numbers
    in text cells use; ``sep_sniffed`` and ``decimal_detected`` say which were guessed.
    """

    source: str
    table: Any  # pyarrow.Table, columns named as in the header without surrounding spaces
    lines: npt.NDArray[np.int64]
    line_word: str  # "line" for CSV, "row" for Parquet
    sep: str | None = None
    decimal: str = "."
    sep_sniffed: bool = False
    decimal_detected: bool = False

    @property
    def names(self) -> list[str]:
        """The column names, in the file's order."""
        return list(self.table.column_names)

    def at(self, row: int) -> str:
        """Return where 0-based data row ``row`` is: ``FILE:LINE`` or ``FILE row N``."""
        line = int(self.lines[row])
        return f"{self.source}:{line}" if self.line_word == "line" else f"{self.source} row {line}"

    def cell(self, name: str, row: int) -> str:
        """Return the text of one cell ('' when empty)."""
        value = self.table.column(name)[row].as_py()
        return "" if value is None else str(value)

    def taken(self, rows: npt.NDArray[np.intp]) -> RawFile:
        """Return the file with only its data ``rows`` ``(m,)``, each keeping its line."""
        return replace(self, table=self.table.take(pa.array(rows)), lines=self.lines[rows])

    def describe(self, name: str, row: int) -> str:
        """Return ``has value 'x'`` or ``is empty`` for a message about one cell."""
        text = self.cell(name, row)
        return f"has value {text!r}" if text.strip() else "is empty"


def read_raw(path: Path, *, source: str, options: ReadOptions) -> RawFile:
    """Return the columns of one CSV or Parquet file.

    Raises:
        DataError: unreadable or empty file, a ragged row, two columns of one name, or no
            data rows.
    """
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            table = _decoded(pq.read_table(path))
            lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
            raw = RawFile(source, table, lines, "row", decimal=options.decimal or ".")
        else:
            raw = _csv_raw(_decompressed(path.read_bytes()), source=source, options=options)
    except (OSError, EOFError, zlib.error, pa.ArrowException) as err:
        raise DataError(
            f"{source} cannot be read: {err}; check the path and the file format"
        ) from err
    names = [str(n).strip() for n in raw.table.column_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{source} has more than one column named {twice[0]!r}; rename them apart")
    if raw.table.num_rows == 0:
        raise DataError(f"{source} has no data rows; export the readings under the header row")
    return RawFile(
        source,
        raw.table.rename_columns(names),
        raw.lines,
        raw.line_word,
        sep=raw.sep,
        decimal=raw.decimal,
        sep_sniffed=raw.sep_sniffed,
        decimal_detected=raw.decimal_detected,
    )


def listing(names: Any) -> str:
    """``'a', 'b'`` for a message, or ``(none)``."""
    return ", ".join(repr(n) for n in names) or "(none)"


def _decompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _csv_raw(data: bytes, *, source: str, options: ReadOptions) -> RawFile:
    if re.search(rb"[^\s\xef\xbb\xbf]", data) is None:  # only blanks and a BOM
        raise DataError(f"{source} is empty; export the readings with a header row of column names")
    head = _head_lines(data)
    sep = options.sep or _sniffed_delimiter(head)
    decimal = options.decimal or _detected_decimal(head, sep)
    parse = pa_csv.ParseOptions(delimiter=sep)
    convert = pa_csv.ConvertOptions(strings_can_be_null=True, decimal_point=decimal)
    try:
        convert = _times_as_text(data, parse, convert)
        table = pa_csv.read_csv(_reader(data), parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        where, problem = _located(data, parse, source=source, fallback=str(err))
        fix = "" if options.sep else " (sniffed; give another with --sep)"
        raise DataError(
            f"{where} cannot be read as {parse.delimiter!r}-separated CSV{fix}: {problem}; give "
            "every row as many fields as the header, and save the file as UTF-8"
        ) from err
    lines = _data_lines(data, table.num_rows)
    return RawFile(
        source,
        table,
        lines,
        "line",
        sep=sep,
        decimal=decimal,
        sep_sniffed=options.sep is None,
        decimal_detected=options.decimal is None,
    )


def _times_as_text(data: bytes, parse: Any, convert: Any) -> Any:
    """``convert`` with every column Arrow infers as a date or time read as text instead.

    Arrow reads ``2026-03-29 02:30`` as a timestamp and would print it back as
    ``2026-03-29 02:30:00``; aewatch parses times itself (in ``--timezone``, with the
    repeated hour read in order) and quotes a bad one as the file has it. The types are
    inferred from the first block only, which is quick; a column that turns to text
    later is text anyway.
    """
    with pa_csv.open_csv(_reader(data), parse_options=parse, convert_options=convert) as head:
        schema = head.schema
    types = pa.types
    timelike = (types.is_timestamp, types.is_date, types.is_time)
    text = {f.name: pa.string() for f in schema if any(is_kind(f.type) for is_kind in timelike)}
    if not text:
        return convert
    return pa_csv.ConvertOptions(
        strings_can_be_null=True, decimal_point=convert.decimal_point, column_types=text
    )


def _decoded(table: Any) -> Any:
    """``table`` with each dictionary-encoded column (pandas categoricals) as plain values."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            plain = table.column(i).cast(field.type.value_type)
            table = table.set_column(i, pa.field(field.name, plain.type), plain)
    return table


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


def _head_lines(data: bytes) -> list[str]:
    """The first non-blank lines of a file, the last left out when it may be cut short."""
    head = data[:_SNIFF_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line for line in head.splitlines() if line.strip()]
    if len(data) > _SNIFF_BYTES and len(lines) > 1:
        lines.pop()
    return lines[:_SNIFF_LINES]


def _sniffed_delimiter(lines: list[str]) -> str:
    """Return the delimiter that splits the first lines into the most, equal, fields."""

    def fit(delimiter: str) -> tuple[bool, int]:
        counts = {line.count(delimiter) for line in lines}
        return len(counts) == 1 and counts != {0}, lines[0].count(delimiter)

    return max(DELIMITERS, key=fit)


def _detected_decimal(lines: list[str], sep: str) -> str:
    """Return ``,`` when the data lines hold a number whose comma can only be a decimal
    mark (``12,5``, ``0,217``, ``1.234,5``), or numbers such as ``1,234`` and none with a
    decimal point; else ``.``.

    A cell such as ``12.5`` does not outvote a ``12,5``: an export with decimal points
    never writes ``12,5``, while a decimal-comma export may hold a stray point, which is
    then named as a bad cell rather than its whole column left out.
    """
    if sep == ",":
        return "."
    cells = [cell for line in lines[1:] for cell in line.split(sep)]
    commas = [c for c in cells if _COMMA_NUMBER.match(c)]
    if any(not _THOUSANDS.match(c) for c in commas):
        return ","
    has_point = any(_POINT_NUMBER.match(c) for c in cells)
    return "," if commas and not has_point else "."


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
