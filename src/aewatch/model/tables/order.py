"""Put an export's rows in time order: ``ordered_rows`` (shell input).

A wide file's rows must be strictly increasing in time unless ``sort_rows`` sorts them
and ``dedupe`` keeps the first or last of rows with the same time; a long table is always
sorted (its tags are interleaved anyway), and a tag's repeated time needs ``dedupe``. Each
refusal names the row, its time, the row it clashes with and the option that handles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aewatch.errors import DataError
from aewatch.model.tables.files import RawFile
from aewatch.model.tables.options import ReadOptions

__all__ = ["Order", "ordered_rows"]

_REPEAT_FIX = (
    "--dedupe first|last keeps one row of each repeated time (if the times are local "
    "and this is the hour the clocks go back, give the plant's zone with --timezone instead, "
    "e.g. --timezone Europe/Berlin)"
)
_SORT_FIX = "--sort sorts the rows by time"


@dataclass(frozen=True, slots=True)
class Order:
    """The rows to keep, in time order.

    ``rows`` ``(m,)``: 0-based data rows of the file; ``out_of_order``: rows that came
    earlier than a row above them (of their tag, in a long table); ``repeated``: rows
    left out because an earlier or later one had the same time (and tag).
    """

    rows: npt.NDArray[np.intp]
    out_of_order: int = 0
    repeated: int = 0


def ordered_rows(
    raw: RawFile,
    name: str,
    *,
    seconds: npt.NDArray[np.float64],
    options: ReadOptions,
    tags: npt.NDArray[Any] | None = None,
) -> Order:
    """Return the rows of ``raw`` in time order (rules in the module docstring).

    ``tags`` ``(n,)`` makes it a long table's readings: sorted by time, and a time
    repeated only within one tag.

    Raises:
        DataError: a wide file's row earlier than the one above without ``sort_rows``,
            or a repeated time (and tag) without ``dedupe``.
    """
    if tags is None:
        _check_steps(raw, name, seconds, options)
        keys = np.zeros(len(seconds), dtype=np.intp)
    else:
        keys = pd.factorize(tags)[0]
    late = _out_of_order(seconds, keys)
    rows = (
        np.lexsort((np.arange(len(seconds)), keys, seconds))
        if late.any() or tags is not None
        else np.arange(len(seconds))
    )
    same = (np.diff(seconds[rows]) == 0) & (np.diff(keys[rows]) == 0)
    if not same.any():
        return Order(rows, out_of_order=int(late.sum()))
    if options.dedupe is None:
        at = int(np.argmax(same))
        _refuse_repeat(raw, name, rows[at], rows[at + 1], tags=tags)
    keep = np.append(~same, True) if options.dedupe == "last" else np.insert(~same, 0, True)
    return Order(rows[keep], out_of_order=int(late.sum()), repeated=int(same.sum()))


def _out_of_order(
    seconds: npt.NDArray[np.float64], keys: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Rows ``(n,)`` earlier than some row above them of the same key."""
    latest = pd.Series(seconds).groupby(keys).cummax().to_numpy()
    above = pd.Series(latest).groupby(keys).shift(1).to_numpy(dtype=np.float64)
    return np.asarray(seconds < above, dtype=np.bool_)


def _check_steps(
    raw: RawFile, name: str, seconds: npt.NDArray[np.float64], options: ReadOptions
) -> None:
    """Refuse the first step of a wide file that the options do not handle."""
    steps = np.diff(seconds)
    earlier = steps < 0
    same = steps == 0
    refused = (earlier & (not options.sort_rows)) | (same & (options.dedupe is None))
    if not refused.any():
        return
    row = int(np.argmax(refused)) + 1
    is_same = bool(same[row - 1])
    relation = "the same as" if is_same else "earlier than"
    fix = _REPEAT_FIX if is_same else _SORT_FIX
    raise DataError(
        f"{raw.at(row)} column {name!r} has timestamp {raw.cell(name, row)!r}, {relation} "
        f"{raw.cell(name, row - 1)!r} on {raw.line_word} {raw.lines[row - 1]}; timestamps must be "
        f"strictly increasing: sort the export by time and remove duplicate rows, or let "
        f"aewatch do it: {fix}"
    )


def _refuse_repeat(
    raw: RawFile, name: str, first: int, second: int, *, tags: npt.NDArray[Any] | None
) -> None:
    first, second = sorted((int(first), int(second)))
    tag = "" if tags is None else f" for tag {tags[second]!r}"
    raise DataError(
        f"{raw.at(second)} column {name!r} has timestamp {raw.cell(name, second)!r}{tag}, the "
        f"same time as {raw.cell(name, first)!r} on {raw.line_word} {raw.lines[first]}; keep "
        f"one of them: {_REPEAT_FIX}, or remove the repeated rows"
    )
