"""How to read a historian export: ``ReadOptions``, the settings every command that reads
tables shares (shell input: layout, separator, decimal mark, times, bad cells, order).

Each field left at its default keeps the reading a wide ISO 8601 / epoch file always had;
the names follow pandas and Telegraf (``sep``, ``decimal``, a strptime ``time_format``,
``timezone``, ``tag_column``, ``dedupe`` keeping the ``first`` or ``last``).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

from aewatch.errors import DataError

__all__ = [
    "BAD_CELL_ACTIONS",
    "DECIMALS",
    "DEDUPE_KEEPS",
    "EPOCH_FORMATS",
    "LAYOUTS",
    "SEPARATORS",
    "ReadOptions",
]

LAYOUTS = ("auto", "wide", "long")
BAD_CELL_ACTIONS = ("error", "drop", "interpolate")
DEDUPE_KEEPS = ("first", "last")
DECIMALS = (".", ",")
# Separator names a shell passes easily, beside the characters themselves.
SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|", "space": " "}
# Telegraf's names for numeric times (csv_timestamp_format), in seconds per unit.
EPOCH_FORMATS = {"unix": 1.0, "unix_ms": 1e-3, "unix_us": 1e-6, "unix_ns": 1e-9}


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read one or more exports; the defaults read wide ISO 8601 or epoch files.

    ``layout``: ``auto`` (long when a tag column and a value column are found), ``wide``
    (a column per channel) or ``long`` (``timestamp, tag, value`` rows). ``sep``: the
    field separator (None: sniffed from the first lines). ``decimal``: ``.`` or ``,``
    (None: detected from the first lines, see ``files``). ``time_format``: a strptime
    format (``%d.%m.%Y %H:%M``), ``ISO8601`` or one of ``unix``, ``unix_ms``,
    ``unix_us``, ``unix_ns`` (None: ISO 8601 or epoch seconds, else the common local
    format the first times fit, see ``times``). ``timezone``: the IANA zone of times
    written without an offset (None: UTC). ``on_bad_cell``: what a value cell that is
    not a number does: ``error``, ``drop`` its row (reading) or ``interpolate`` it in
    time. ``dedupe``: keep the ``first`` or ``last`` of rows with the same time (None:
    refuse them). ``sort_rows``: sort a wide file's rows by time (long tables are always
    sorted). ``asset_column`` names a column saying which asset each row is of (a fleet
    in one export); ``asset`` is the one whose rows are read (the column is then no
    channel).

    >>> ReadOptions(decimal=",", sep="semicolon").sep
    ';'
    """

    layout: str = "auto"
    sep: str | None = None
    decimal: str | None = None
    time_format: str | None = None
    timezone: str | None = None
    timestamp_column: str | None = None
    tag_column: str | None = None
    value_column: str | None = None
    on_bad_cell: str = "error"
    dedupe: str | None = None
    sort_rows: bool = False
    asset_column: str | None = None
    asset: str | None = None
    show_progress: bool = True  # a bar on a terminal, once a read takes over a second

    def __post_init__(self) -> None:
        _one_of("--layout", self.layout, LAYOUTS)
        _one_of("--on-bad-cell", self.on_bad_cell, BAD_CELL_ACTIONS)
        if self.dedupe is not None:
            _one_of("--dedupe", self.dedupe, DEDUPE_KEEPS)
        if self.decimal is not None:
            _one_of("--decimal", self.decimal, DECIMALS)
        if self.sep is not None:
            object.__setattr__(self, "sep", _separator(self.sep))
        if self.sep is not None and self.sep == self.decimal:
            raise DataError(
                f"--sep {self.sep!r} and --decimal {self.decimal!r} are the same character; "
                "an export with decimal commas separates fields with ';' (--sep ';')"
            )
        if self.timezone is not None:
            _check_zone(self.timezone)
        if self.asset_column is not None and self.asset is None:
            raise DataError(
                f"--asset-column {self.asset_column} needs --asset: the asset whose rows "
                "to read (or train --per-asset --asset-column NAME trains every asset it names)"
            )
        if self.time_format is not None and not self.time_format.strip():
            raise DataError(
                "--time-format is empty; give a strptime format such as '%d.%m.%Y %H:%M'"
            )

    @property
    def is_long(self) -> bool:
        """Whether the options ask for a long table (``--layout long`` or a tag/value column)."""
        given = self.tag_column is not None or self.value_column is not None
        return self.layout == "long" or (self.layout == "auto" and given)


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DataError(f"{option} {value!r} is not one of {', '.join(allowed)}")


def _separator(text: str) -> str:
    sep = SEPARATORS.get(text.lower(), text)
    if len(sep) != 1 or sep in '"\r\n':
        raise DataError(
            f"--sep {text!r} is not one field separator; give one character (',' ';' '|') "
            f"or one of {', '.join(SEPARATORS)}"
        )
    return sep


def _check_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise DataError(
            f"--timezone {name!r} is not a known time zone; give an IANA name such as "
            "Europe/Berlin, America/Chicago or UTC (the zone the plant's clocks show)"
        ) from err
