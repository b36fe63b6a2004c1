"""The options that say how to read data files, shared by the commands that read them
(``train``, ``score``, ``evaluate``, ``replay``, ``calibrate``, ``report``): one argparse
group (``add_read_options``), one frozen ``ReadOptions`` (``read_options``) and the
summary of what was read (``read_summary_lines``, ``read_summary_json``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from aewatch.errors import DataError
from aewatch.model.dataset import Export
from aewatch.model.tables.options import (
    BAD_CELL_ACTIONS,
    DECIMALS,
    DEDUPE_KEEPS,
    LAYOUTS,
    ReadOptions,
)

__all__ = ["add_read_options", "read_options", "read_summary_json", "read_summary_lines"]


def add_read_options(
    parser: argparse.ArgumentParser, *, asset_option: bool = True
) -> argparse._ArgumentGroup:
    """Add the group ``reading the data`` to ``parser``; return it.

    ``asset_option`` False leaves ``--asset`` to the command (``replay`` names the asset it
    publishes with it, and with ``--asset-column`` reads that asset's rows).
    """
    g = parser.add_argument_group(
        "reading the data (wide or long tables, local formats; docs/data.md)"
    )
    g.add_argument(
        "--timestamp-column",
        metavar="NAME",
        help="the time column (default: the first named timestamp/time/datetime/date/ts/t)",
    )
    g.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="auto",
        help="wide: a column per channel; long: timestamp, tag, value rows, each tag a "
        "channel; auto: long when a tag column and a value column are found (default "
        "%(default)s)",
    )
    g.add_argument(
        "--tag-column",
        metavar="NAME",
        help="a long table's tag column (default: tag/tagname/name/point/...; implies long)",
    )
    g.add_argument(
        "--value-column",
        metavar="NAME",
        help="a long table's value column (default: value/val/pv; implies long)",
    )
    g.add_argument(
        "--asset-column",
        metavar="NAME",
        help="a column saying which asset each row is of, when one export holds a fleet; "
        "read only the rows of --asset (train --per-asset: one model per asset it names)",
    )
    if asset_option:
        g.add_argument(
            "--asset",
            metavar="NAME",
            help="with --asset-column: the asset whose rows are read",
        )
        parser.set_defaults(asset_needs_column=True)
    g.add_argument(
        "--sep",
        metavar="CHAR",
        help="field separator: one character such as , ; | or a name: comma, semicolon, "
        "tab, pipe, space (default: sniffed from the first lines among , ; tab |)",
    )
    g.add_argument(
        "--decimal",
        choices=DECIMALS,
        metavar="MARK",
        help="decimal mark of numbers in the file: . or , (default: a comma when the "
        "separator is not one and the first lines hold a number such as 12,5 or 0,217; "
        "1,234 alone counts only when no number has a decimal point)",
    )
    g.add_argument(
        "--time-format",
        metavar="FORMAT",
        help="how times are written: a strptime format such as '%%d.%%m.%%Y %%H:%%M', "
        "ISO8601, or unix, unix_ms, unix_us, unix_ns (default: ISO 8601 or epoch seconds, "
        "else the common local format the first times fit, such as 05.12.2026 13:00 or "
        "12/5/2026 1:00:00 PM)",
    )
    g.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone of times written without an offset, e.g. Europe/Berlin; the hour "
        "clocks go back is read in the file's order (default: UTC)",
    )
    g.add_argument(
        "--on-bad-cell",
        choices=BAD_CELL_ACTIONS,
        default="error",
        help="a value cell that is text, not a number or a mark for missing (#N/A, NaN, "
        "empty): error names it; drop leaves its row (reading) out; interpolate draws it "
        "in time from its neighbours (default %(default)s)",
    )
    g.add_argument(
        "--dedupe",
        choices=DEDUPE_KEEPS,
        help="of rows with the same time (and tag), keep the first or last (default: refuse them)",
    )
    g.add_argument(
        "--sort",
        action="store_true",
        help="sort a wide file's rows by time (default: refuse rows out of order; long "
        "tables are always sorted)",
    )
    return g


def read_options(args: argparse.Namespace) -> ReadOptions:
    """The ``ReadOptions`` the parsed arguments give (progress off with ``--quiet``).

    Raises:
        DataError: an option's value is not valid (an unknown time zone, a separator of
            more than one character).
    """
    column, asset = getattr(args, "asset_column", None), getattr(args, "asset", None)
    if asset is not None and column is None and getattr(args, "asset_needs_column", False):
        raise DataError(
            f"--asset {asset} needs --asset-column: the column that says which asset each "
            "row is of (a file holding one asset needs neither)"
        )
    return ReadOptions(
        layout=args.layout,
        sep=args.sep,
        decimal=args.decimal,
        time_format=args.time_format,
        timezone=args.timezone,
        timestamp_column=args.timestamp_column,
        tag_column=args.tag_column,
        value_column=args.value_column,
        on_bad_cell=args.on_bad_cell,
        dedupe=args.dedupe,
        sort_rows=args.sort,
        asset_column=column,
        asset=asset if column is not None else None,
        show_progress=not getattr(args, "quiet", False),
    )


def read_summary_lines(exports: Sequence[Export]) -> list[str]:
    """What reading each file found, a few lines per file."""
    return [line for export in exports for line in export.summary.lines()]


def read_summary_json(exports: Sequence[Export]) -> list[dict[str, Any]]:
    """What reading each file found, one JSON object per file (for reports and --json)."""
    return [export.summary.to_json() for export in exports]
