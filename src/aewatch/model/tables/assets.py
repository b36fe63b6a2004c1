"""A fleet in one export: a column that says which asset each row is of (shell input).

Historians often export many assets into one table (``timestamp, asset, tag, value`` or a
wide table with an ``asset`` column). ``asset_names`` lists the assets such a column names;
``asset_rows`` keeps one asset's rows, each with its line in the file, and leaves the
column out, so what is read next is that asset's export alone. ``fleet_raw`` reads such a
file once for all its assets: ``train --per-asset`` lists them, then reads each one's rows.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aewatch.errors import DataError
from aewatch.model.tables.files import RawFile, listing, read_raw
from aewatch.model.tables.options import ReadOptions

__all__ = ["asset_names", "asset_rows", "fleet_raw"]

_SHOWN = 10  # assets named in a message, at most


def fleet_raw(path: Path, *, source: str, options: ReadOptions) -> RawFile:
    """:func:`read_raw` of a fleet's export, kept while the file is unchanged, so the
    assets of one file are read from it once, not once each.

    Raises:
        DataError: as :func:`read_raw`.
    """
    try:
        stat = path.stat()
    except OSError:  # read_raw says what is wrong with the path
        return read_raw(path, source=source, options=options)
    stamp = (stat.st_mtime_ns, stat.st_size)
    return _read_once(path.resolve(), stamp, source, options.sep, options.decimal)


@functools.lru_cache(maxsize=1)
def _read_once(
    path: Path, stamp: tuple[int, int], source: str, sep: str | None, decimal: str | None
) -> RawFile:
    """The one file read last (``stamp`` tells a changed file from the one kept)."""
    del stamp
    return read_raw(path, source=source, options=ReadOptions(sep=sep, decimal=decimal))


def asset_names(raw: RawFile, column: str) -> list[str]:
    """The assets ``column`` of ``raw`` names, sorted (an empty cell names none).

    Raises:
        DataError: ``raw`` has no such column, or no cell of it names an asset.
    """
    names = sorted({n for n in _texts(raw, column).to_pylist() if n})
    if not names:
        raise DataError(
            f"{raw.source}: column {column!r} (--asset-column) names no asset: every cell "
            "is empty; give the column that says which asset each row is of"
        )
    return names


def asset_rows(raw: RawFile, column: str, asset: str) -> RawFile:
    """``raw`` with only the rows whose ``column`` is ``asset``, without ``column``.

    Raises:
        DataError: ``raw`` has no such column, or no row of ``asset``.
    """
    texts = _texts(raw, column)
    rows = np.flatnonzero(np.asarray(pc.equal(texts, asset).fill_null(False)))
    if len(rows) == 0:
        names = asset_names(raw, column)
        shown = listing(names[:_SHOWN]) + (" ..." if len(names) > _SHOWN else "")
        raise DataError(
            f"{raw.source}: no row has {column} = {asset!r} (--asset); the column names "
            f"{len(names)} assets: {shown}"
        )
    kept = raw.taken(rows)
    return replace(kept, table=kept.table.drop_columns([column]))


def _texts(raw: RawFile, column: str) -> pa.ChunkedArray:
    """``column``'s cells as text, stripped (numbers as written: asset 3 is "3")."""
    if column not in raw.names:
        raise DataError(
            f"{raw.source}: has no column {column!r} (--asset-column); its columns are "
            f"{listing(raw.names)}"
        )
    return pc.utf8_trim_whitespace(pc.cast(raw.table.column(column), pa.string()))
