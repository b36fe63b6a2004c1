"""A long export (``timestamp, tag, value`` rows, as PI, Ignition and most SCADA historians
write them) made wide: ``long_columns`` finds the tag and value columns, ``read_long``
reads the file, ``Pivot`` puts each tag's readings in a column of its own (shell input).

Every tag is a channel unless the caller picks them, but for the label tags: ``anomaly``
(or the label column given) and ``changepoint``, whose readings are 0 or 1. Readings come
sorted by time (see ``order``); each tag's bad readings are refused, dropped or
interpolated within that tag; then each distinct time becomes a row, and a tag without a
reading at that time takes its last value (as a missing cell does). Rows before every tag
has had a reading are left out, and the summary says so.
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
from aewatch.model.tables.cells import (
    Cells,
    carried_forward,
    interpolated,
    parsed_numbers,
    refuse_bad,
)
from aewatch.model.tables.files import RawFile, listing
from aewatch.model.tables.options import ReadOptions
from aewatch.model.tables.order import ordered_rows
from aewatch.model.tables.summary import column_cells, dropped_note, order_notes, summarised
from aewatch.model.tables.table import LABEL_COLUMNS, ChannelPick, Export, Step, Table
from aewatch.model.tables.times import read_times

__all__ = [
    "TAG_COLUMNS",
    "VALUE_COLUMNS",
    "Pivot",
    "long_columns",
    "mended_readings",
    "read_long",
    "tag_texts",
]

# Matched ignoring case, the first found wins.
TAG_COLUMNS = (
    "tag",
    "tagname",
    "tag_name",
    "tag name",
    "tagpath",
    "name",
    "point",
    "pointname",
    "item",
    "signal",
    "sensor",
    "channel",
)
VALUE_COLUMNS = ("value", "val", "pv", "reading", "floatvalue")


@dataclass(frozen=True, slots=True)
class Pivot:
    """A long table made wide: ``seconds`` ``(m,)`` distinct sorted times, ``values``
    ``(m, tags)`` with each tag's last value carried forward, ``lines`` ``(m,)`` the first
    line (row) of a reading at each time, and how many leading times were left out."""

    seconds: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    lines: npt.NDArray[np.int64]
    leading_dropped: int

    @classmethod
    def of(
        cls,
        *,
        seconds: npt.NDArray[np.float64],
        tag_codes: npt.NDArray[np.intp],
        numbers: npt.NDArray[np.float64],
        lines: npt.NDArray[np.int64],
        tags: tuple[str, ...],
        source: str,
    ) -> Pivot:
        """Pivot sorted readings ``(n,)`` (time, tag code into ``tags``, number, line).

        Raises:
            DataError: a tag with no number at all.
        """
        times, row = np.unique(seconds, return_inverse=True)
        values = np.full((len(times), len(tags)), np.nan)
        values[row, tag_codes] = numbers
        first_line = np.full(len(times), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_line, row, lines)
        finite = np.isfinite(values)
        empty = np.flatnonzero(~finite.any(axis=0))
        if empty.size:
            raise DataError(
                f"{source} has no number for tag {tags[int(empty[0])]!r}; leave it out with "
                "--channels, or export its readings"
            )
        start = int(np.max(np.argmax(finite, axis=0)))
        values = carried_forward(values)
        return cls(times[start:], values[start:], first_line[start:], start)


def read_long(
    raw: RawFile,
    time_name: str,
    *,
    columns: tuple[str, str],
    pick: ChannelPick,
    label_column: str | None,
    options: ReadOptions,
    step: Step,
) -> Export:
    """Return the long table ``raw`` (tag and value ``columns``) read and made wide.

    Raises:
        DataError: an empty tag, a time or repeat the options do not handle, a value
            column of another type, a missing label or channel tag, a bad reading with
            ``on_bad_cell="error"``, a label reading other than 0/1, or a tag without a
            number.
    """
    tag_name, value_name = columns
    every_tag = tag_texts(raw, tag_name)
    found = sorted(pd.unique(every_tag).tolist())
    flags = _flag_tags(raw, found, label_column)
    names = _tags_picked(raw, found, pick, flags=flags)
    picked = (*names, *(f for f in flags if f is not None))
    # Only the picked tags' rows are read on: another tag's odd times cannot stop a model.
    every_code = pd.Index(picked).get_indexer(pd.Index(every_tag)).astype(np.intp)  # -1: not picked
    is_used = every_code >= 0
    used = raw if is_used.all() else raw.taken(np.flatnonzero(is_used))
    tags, tag_codes = every_tag[is_used], every_code[is_used]
    times = read_times(used, time_name, options=options, groups=tags)
    order = ordered_rows(used, time_name, seconds=times.seconds, options=options, tags=tags)
    step("values")
    parsed = parsed_numbers(used.table.column(value_name), decimal=used.decimal)
    if parsed is None:
        kind = used.table.column(value_name).type
        raise DataError(
            f"{raw.source} column {value_name!r} holds {kind} values, not numbers; name the "
            "value column with --value-column"
        )
    rows = order.rows
    cells = Cells(*parsed).taken(rows)
    seconds = times.seconds[rows]
    codes = tag_codes[rows]
    counts = tuple(
        column_cells(n, cells.taken(mine), raw=used, rows=rows[mine], column=value_name)
        for n, mine in ((n, np.flatnonzero(codes == j)) for j, n in enumerate(names))
    )
    if cells.is_bad.any() and options.on_bad_cell == "error":
        first = int(np.argmin(np.where(cells.is_bad, used.lines[rows], np.iinfo(np.int64).max)))
        refuse_bad(used, int(rows[first]), column=value_name, tag=str(tags[rows[first]]))
    numbers, keep = mended_readings(
        cells, seconds=seconds, tag_codes=codes, on_bad_cell=options.on_bad_cell
    )
    for code in range(len(names), len(picked)):
        _check_flags(
            used,
            rows,
            numbers=numbers,
            mine=keep & (codes == code),
            column=value_name,
            tag=picked[code],
        )
    step("pivot")
    pivot = Pivot.of(
        seconds=seconds[keep],
        tag_codes=codes[keep],
        numbers=numbers[keep],
        lines=used.lines[rows][keep],
        tags=picked,
        source=raw.source,
    )
    table = Table(
        source=raw.source,
        timestamps=pivot.seconds,
        values=pivot.values[:, : len(names)],
        channels=names,
        labels=_flag_column(pivot, picked, flags[0]),
        changepoints=_flag_column(pivot, picked, flags[1]),
        lines=pivot.lines,
    )
    notes = (
        _tags_note(tag_name, value_name, names, flags),
        *_unused_note(raw, (time_name, tag_name, value_name)),
        *_other_tags_note(len(found) - len(picked), int((~is_used).sum())),
        *order_notes(order, times, dedupe=options.dedupe, is_long=True),
        *dropped_note(int((~keep).sum()), "readings"),
        *(
            [f"the first {pivot.leading_dropped} times, before every tag had a reading, left out"]
            if pivot.leading_dropped
            else []
        ),
    )
    summary = summarised(
        raw,
        pivot.seconds,
        layout="long",
        times=times,
        columns=counts,
        on_bad_cell=options.on_bad_cell,
        notes=notes,
    )
    return Export(table, summary)


def long_columns(raw: RawFile, time_name: str, options: ReadOptions) -> tuple[str, str] | None:
    """Return the tag and value columns of a long table, or None for a wide one.

    ``--layout auto`` takes a file as long when it has a tag column (named one of
    ``TAG_COLUMNS``, holding text) and a value column (one of ``VALUE_COLUMNS``).

    Raises:
        DataError: a column named with --tag-column / --value-column is not in the file,
            or ``--layout long`` and no such column is found.
    """
    if options.layout == "wide":
        return None
    others = [n for n in raw.names if n != time_name]
    tag = _column(raw, options.tag_column, TAG_COLUMNS, others, option="--tag-column")
    value = _column(raw, options.value_column, VALUE_COLUMNS, others, option="--value-column")
    if options.layout == "auto" and not options.is_long:
        if tag is None or value is None or tag == value:
            return None
        return (tag, value) if _is_text(raw.table.column(tag)) else None
    for found, option, names in (
        (tag, "--tag-column", TAG_COLUMNS),
        (value, "--value-column", VALUE_COLUMNS),
    ):
        if found is None:
            raise DataError(
                f"{raw.source} is read as a long table but has no column named "
                f"{'/'.join(names[:4])}…: its columns are {listing(raw.names)}; name it with "
                f"{option}, or read the file as wide with --layout wide"
            )
    assert tag is not None and value is not None
    return tag, value


def tag_texts(raw: RawFile, name: str) -> npt.NDArray[np.object_]:
    """The tag column as text ``(n,)``, surrounding spaces removed.

    Raises:
        DataError: an empty tag cell.
    """
    column = raw.table.column(name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} has no tag name; fill it in or remove the row"
        )
    if not _is_text(column):
        column = pc.cast(column, pa.string())
    texts = np.asarray(pc.utf8_trim_whitespace(column).to_numpy(zero_copy_only=False), dtype=object)
    empty = np.flatnonzero(texts == "")
    if empty.size:
        row = int(empty[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} has no tag name; fill it in or remove the row"
        )
    return texts


def mended_readings(
    cells: Cells,
    *,
    seconds: npt.NDArray[np.float64],
    tag_codes: npt.NDArray[np.intp],
    on_bad_cell: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Return each reading's number (bad ones interpolated within their tag, or NaN) and
    which readings to keep (``drop`` leaves bad ones out)."""
    keep = ~cells.is_bad if on_bad_cell == "drop" else np.ones(len(seconds), dtype=np.bool_)
    numbers = cells.numbers
    if on_bad_cell == "interpolate" and cells.is_bad.any():
        numbers = numbers.copy()
        for code in np.unique(tag_codes[cells.is_bad]):
            mine = np.flatnonzero(tag_codes == code)
            numbers[mine] = interpolated(seconds[mine], cells.numbers[mine], cells.is_bad[mine])
    return numbers, keep


def _flag_tags(
    raw: RawFile, found: list[str], label_column: str | None
) -> tuple[str | None, str | None]:
    """The label tag and the change-point tag, each None when the file has none."""
    if label_column is not None and label_column not in found:
        raise DataError(
            f"{raw.source} has no label tag {label_column!r}; its tags are "
            f"{_shown(found)}; pass the tag of the 0/1 labels with --label-column"
        )
    label = label_column or (LABEL_COLUMNS[0] if LABEL_COLUMNS[0] in found else None)
    changepoint = LABEL_COLUMNS[1] if LABEL_COLUMNS[1] in found else None
    return label, changepoint if changepoint != label else None


def _tags_picked(
    raw: RawFile, found: list[str], pick: ChannelPick, *, flags: tuple[str | None, ...]
) -> tuple[str, ...]:
    if pick.names is None:
        names = tuple(t for t in found if t not in flags)
        if not names:
            raise DataError(
                f"{raw.source} has no tags but its labels ({_shown(found)}); export the "
                "sensor readings too"
            )
        return names
    for name in pick.names:
        if name in flags:
            raise DataError(
                f"{raw.source} tag {name!r} holds 0/1 labels, so it cannot be a channel; {pick.fix}"
            )
        if name not in found:
            raise DataError(
                f"{raw.source} has no tag {name!r}; its tags are {_shown(found)}; {pick.fix}"
            )
    return tuple(dict.fromkeys(pick.names))


def _check_flags(
    raw: RawFile,
    rows: npt.NDArray[np.intp],
    *,
    numbers: npt.NDArray[np.float64],
    mine: npt.NDArray[np.bool_],
    column: str,
    tag: str,
) -> None:
    """Refuse the first reading of label ``tag`` that is a number other than 0 or 1.

    ``numbers`` ``(m,)`` are the readings of data ``rows`` ``(m,)``, ``mine`` which of
    them are that tag's.
    """
    wrong = mine & np.isfinite(numbers) & ~np.isin(numbers, (0.0, 1.0))
    if wrong.any():
        row = int(rows[int(np.argmax(wrong))])
        raise DataError(
            f"{raw.at(row)} column {column!r} has value {raw.cell(column, row)!r} for "
            f"tag {tag!r}; labels must be 0 or 1; fix that row, or name another label tag "
            "with --label-column"
        )


def _flag_column(
    pivot: Pivot, picked: tuple[str, ...], tag: str | None
) -> npt.NDArray[np.int8] | None:
    return None if tag is None else pivot.values[:, picked.index(tag)].astype(np.int8)


def _tags_note(
    tag_name: str, value_name: str, names: tuple[str, ...], flags: tuple[str | None, ...]
) -> str:
    labels = [f for f in flags if f is not None]
    of_labels = f", labels from tag{'s' * (len(labels) > 1)} {listing(labels)}" if labels else ""
    return (
        f"tags from column {tag_name!r}, values from {value_name!r}: {len(names)} "
        f"tag{'s' * (len(names) != 1)}{of_labels}"
    )


def _other_tags_note(tags: int, readings: int) -> tuple[str, ...]:
    if not tags:
        return ()
    return (f"{readings} readings of {tags} other tag{'s' * (tags != 1)} not used",)


def _unused_note(raw: RawFile, used: tuple[str, ...]) -> tuple[str, ...]:
    unused = [n for n in raw.names if n not in used]
    return (f"columns {listing(unused)} not used",) if unused else ()


def _shown(tags: list[str]) -> str:
    """At most 20 tags for a message."""
    more = f" and {len(tags) - 20} more" if len(tags) > 20 else ""
    return listing(tags[:20]) + more


def _column(
    raw: RawFile, given: str | None, names: tuple[str, ...], others: list[str], *, option: str
) -> str | None:
    if given is not None:
        if given not in raw.names:
            raise DataError(
                f"{raw.source} has no column {given!r}; its columns are {listing(raw.names)}; "
                f"fix {option}"
            )
        return given
    lowered = {n.lower(): n for n in reversed(others)}
    return next((lowered[n] for n in names if n in lowered), None)


def _is_text(column: Any) -> bool:
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
