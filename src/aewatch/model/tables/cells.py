"""Value cells of an export as numbers: which are missing, which are bad, and how a bad
cell is mended (shell input: the cells of the files training reads).

A cell is *missing* when it is empty or one of pandas' and Excel's marks for nothing
(``NaN``, ``#N/A``, ``NULL``, ``None``, ``-1.#IND`` … in any case) or infinite; missing
cells take the value above them. A cell is *bad* when it holds something else that is not
a number (a historian's ``Bad Input``, ``I/O Timeout``, ``Shutdown``, a typo); a bad cell
is refused (``refuse_bad``) unless it is dropped with its row or interpolated in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aewatch.errors import DataError
from aewatch.model.tables.files import RawFile

__all__ = [
    "BAD_CELL_FIX",
    "MISSING_TEXTS",
    "Cells",
    "carried_forward",
    "cast_numbers",
    "interpolated",
    "looks_numeric",
    "parsed_numbers",
    "refuse_bad",
]

BAD_CELL_FIX = (
    "let aewatch handle such cells: --on-bad-cell drop (leaves the row out) or "
    "--on-bad-cell interpolate (draws the value in time from its neighbours)"
)

# pandas' default na_values, lower-cased (cells are compared ignoring case), and 'none'.
MISSING_TEXTS = frozenset(
    {
        "",
        "nan",
        "-nan",
        "+nan",
        "na",
        "n/a",
        "#n/a",
        "#n/a n/a",
        "#na",
        "<na>",
        "null",
        "none",
        "-1.#ind",
        "1.#ind",
        "-1.#qnan",
        "1.#qnan",
    }
)
# 1.234.567,8 with a decimal comma: the points group thousands.
_GROUPED = r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d*)?"


@dataclass(frozen=True, slots=True)
class Cells:
    """One value column as numbers ``(n,)`` float64, NaN where missing or bad.

    ``is_bad`` ``(n,)``: the cell holds text that is not a number; ``is_missing`` ``(n,)``:
    the cell is empty, a mark for nothing or infinite.
    """

    numbers: npt.NDArray[np.float64]
    is_bad: npt.NDArray[np.bool_]

    @property
    def is_missing(self) -> npt.NDArray[np.bool_]:
        """Cells that are empty, NaN-like or infinite, but not bad."""
        return ~np.isfinite(self.numbers) & ~self.is_bad

    def taken(self, rows: npt.NDArray[np.intp]) -> Cells:
        """Return the cells of ``rows``, in that order."""
        return Cells(self.numbers[rows], self.is_bad[rows])


def parsed_numbers(
    column: Any, *, decimal: str = "."
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """Return a column as float64 (NaN where empty) and which cells are not numbers.

    With ``decimal=","`` text cells such as ``12,5`` and ``1.234,5`` are numbers and a
    cell with a decimal point (``12.5``) is not. None when the column's type cannot hold
    numbers (times, binary, nested).
    """
    numbers = cast_numbers(column) if decimal == "." else None
    if numbers is not None:
        return numbers, np.zeros(len(column), dtype=np.bool_)
    kind = column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        numbers = cast_numbers(column)
        return None if numbers is None else (numbers, np.zeros(len(column), dtype=np.bool_))
    # Some cell is not a number: pandas finds which (slowly, but only when there is one).
    texts = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object).str.strip()
    is_missing = texts.isna().to_numpy() | texts.str.lower().isin(MISSING_TEXTS).to_numpy()
    wrong = np.zeros(len(texts), dtype=np.bool_)
    if decimal == ",":
        texts, wrong = _point_decimals(texts)
    numbers = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(wrong, np.nan, numbers), (np.isnan(numbers) | wrong) & ~is_missing


def cast_numbers(column: Any) -> npt.NDArray[np.float64] | None:
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


def looks_numeric(numbers: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_]) -> bool:
    """Return whether most non-empty cells are numbers (so a bad one is a typo, not text)."""
    return int(np.count_nonzero(~np.isnan(numbers))) > int(np.count_nonzero(bad))


def interpolated(
    seconds: npt.NDArray[np.float64], numbers: npt.NDArray[np.float64], fill: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Return ``numbers`` ``(n,)`` with the cells in ``fill`` drawn linearly in time between
    the nearest usable cells either side (the nearest one at either end).

    >>> interpolated(np.array([0.0, 1, 4]), np.array([1.0, np.nan, 5]), np.array([0, 1, 0], bool))
    array([1., 2., 5.])
    """
    usable = np.isfinite(numbers) & ~fill
    if not fill.any() or not usable.any():
        return numbers
    out = numbers.copy()
    out[fill] = np.interp(seconds[fill], seconds[usable], numbers[usable])
    return out


def carried_forward(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return ``values`` ``(n, columns)`` with each non-finite cell taken from the nearest
    finite one above it (left as it is where there is none).

    >>> carried_forward(np.array([[np.nan, 1.0], [2.0, np.nan]]))
    array([[nan,  1.],
           [ 2.,  1.]])
    """
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    rows = np.where(missing, 0, np.arange(len(values))[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    filled = np.take_along_axis(values, rows, axis=0)
    return np.where(missing & ~np.isfinite(filled), values, filled)


def refuse_bad(raw: RawFile, row: int, *, column: str, tag: str | None = None) -> None:
    """Raise the error for the bad cell in 0-based data ``row`` of ``column`` (a long
    table's reading of ``tag``).

    Raises:
        DataError: always, naming the cell, its value and the ways out.
    """
    of_tag = "" if tag is None else f" for tag {tag!r}"
    what = "column" if tag is None else "tag"
    text = raw.cell(column, row)
    raise DataError(
        f"{raw.at(row)} column {column!r} has value {text!r}{of_tag}, which is not a number"
        f"{_decimal_hint(raw, text)}; fix or remove that row, or leave the {what} out with "
        f"--channels, or {BAD_CELL_FIX}"
    )


def _decimal_hint(raw: RawFile, text: str) -> str:
    """Why ``12.5`` is not a number in a file read with decimal commas, and the fix."""
    if raw.decimal != "," or "." not in text:
        return ""
    how = "detected from its first lines" if raw.decimal_detected else "--decimal ,"
    return (
        f" with the file's decimal comma ({how}); if the file writes decimal points, give "
        "--decimal ."
    )


def _point_decimals(texts: pd.Series) -> tuple[pd.Series, npt.NDArray[np.bool_]]:
    """Texts written with a decimal comma as Python floats' text, and which hold a point
    that does not group thousands (``12.5`` is not a number there)."""
    grouped = texts.str.fullmatch(_GROUPED).fillna(value=False).to_numpy(dtype=np.bool_)
    has_point = texts.str.contains(".", regex=False).fillna(value=False).to_numpy(dtype=np.bool_)
    ungrouped = texts.where(~grouped, texts.str.replace(".", "", regex=False))
    return ungrouped.str.replace(",", ".", regex=False), has_point & ~grouped
