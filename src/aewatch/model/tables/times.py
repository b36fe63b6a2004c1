"""The time column of an export as epoch seconds UTC: ``read_times`` (shell input).

Times are ISO 8601 text (naive times are in ``--timezone``, UTC by default; times with an
offset are converted to UTC), numbers of epoch seconds (a column whose largest magnitude
exceeds ``1e11`` holds epoch *milliseconds*: 1e11 s is the year 5138, 1e11 ms is 1973),
Parquet date/time types, or text in a strptime format: given (``--time-format``) or, when
ISO 8601 does not fit the first cells, the common local format that does
(``05.12.2026 13:00``, ``12/5/2026 1:00:00 PM``, ``05-Dec-26 13:00:00``; a day and month
that two formats read differently are refused). Local times in
the hour clocks go back are read as summer time on their first pass and winter time on
the second, in the file's order (per tag in a long table); local times that do not exist
(the hour clocks go forward) are refused.
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
from aewatch.model.tables.cells import cast_numbers, looks_numeric, parsed_numbers
from aewatch.model.tables.files import RawFile
from aewatch.model.tables.options import EPOCH_FORMATS, ReadOptions

__all__ = ["EPOCH_MS_ABOVE", "LOCAL_FORMATS", "TIME_FIX", "TimeRead", "read_times"]

EPOCH_MS_ABOVE = 1e11  # epoch numbers beyond this are milliseconds
# Tried in turn when ISO 8601 does not read a text column; day-first before month-first,
# and a column both read (5/12/2026) is refused as ambiguous.
LOCAL_FORMATS = (
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%y %H:%M:%S",
    "%d.%m.%y %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
)
TIME_FIX = (
    "write times as ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds, or give their format "
    "with --time-format (e.g. '%d.%m.%Y %H:%M:%S'), fix or remove that row, or pass another "
    "column with --timestamp-column"
)
_OFFSET = r"(?:[zZ]|[+-]\d\d:?\d\d)$"
_SAMPLE = 200
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class TimeRead:
    """A time column read: ``seconds`` ``(n,)`` epoch seconds UTC, in the file's order.

    ``how`` says how the cells were read (``ISO 8601``, ``epoch seconds``, a format);
    ``is_detected`` whether that format was found rather than given; ``zone`` the zone of
    times without an offset; ``summer`` and ``winter`` how many local times in the hour
    clocks go back were read as each.
    """

    seconds: npt.NDArray[np.float64]
    how: str
    zone: str = "UTC"
    is_detected: bool = False
    summer: int = 0
    winter: int = 0


def read_times(
    raw: RawFile, name: str, *, options: ReadOptions, groups: npt.NDArray[Any] | None = None
) -> TimeRead:
    """Return column ``name`` of ``raw`` as times (rules in the module docstring).

    ``groups`` ``(n,)`` (a long table's tags) keeps each tag's pass through a repeated
    local hour apart from the others'.

    Raises:
        DataError: an empty time cell, a cell that is not a time (or does not match
            ``--time-format``), a column mixing ISO and epoch, text that two local formats
            read differently, or a local time that does not exist in ``--timezone``.
    """
    column = raw.table.column(name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{raw.at(row)} column {name!r} has no timestamp; fill it in or remove the row"
        )
    reader = _Reader(raw, name, options, groups)
    fmt = options.time_format
    if fmt is not None and fmt.lower() in EPOCH_FORMATS:
        return reader.epoch(fmt.lower())
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return reader.typed()
    if fmt is not None and fmt.upper() != "ISO8601":
        return reader.formatted(fmt)
    return reader.numbers_or_iso()


@dataclass(frozen=True, slots=True)
class _Reader:
    raw: RawFile
    name: str
    options: ReadOptions
    groups: npt.NDArray[Any] | None

    @property
    def zone(self) -> str:
        return self.options.timezone or "UTC"

    def epoch(self, fmt: str) -> TimeRead:
        column = self.raw.table.column(self.name)
        parsed = parsed_numbers(column)
        if parsed is None:
            raise DataError(
                f"{self.raw.source} column {self.name!r} holds {column.type} values, not "
                f"numbers of --time-format {fmt}; {TIME_FIX}"
            )
        numbers, bad = parsed
        self.reject_first(bad | ~np.isfinite(numbers), problem=f"which is not a {fmt} time")
        return TimeRead(numbers * EPOCH_FORMATS[fmt], how=f"epoch ({fmt})")

    def typed(self) -> TimeRead:
        column = self.raw.table.column(self.name)
        kind = column.type
        zone = kind.tz if pa.types.is_timestamp(kind) else None
        unit = pa.timestamp("us", tz=zone)
        micros = np.asarray(pc.cast(pc.cast(column, unit), pa.int64()).to_numpy(), np.int64)
        if zone is None and self.zone != "UTC":
            return self.localized(micros, how="date/time values")
        return TimeRead(micros / 1e6, how="date/time values", zone=zone or "UTC")

    def formatted(self, fmt: str, *, is_detected: bool = False) -> TimeRead:
        texts = self.texts()
        utc = "%z" in fmt or "%Z" in fmt
        times = pd.to_datetime(texts, format=fmt, errors="coerce", utc=utc)
        not_read = times.isna().to_numpy()
        if not_read.any():
            given = "the format detected from the first times" if is_detected else "--time-format"
            self.reject_first(
                not_read, problem=f"which does not match {given} {fmt!r}", fix=_FORMAT_FIX
            )
        micros = _micros(times)
        how = f"{fmt!r}" + (" (detected; give --time-format to be sure)" if is_detected else "")
        if utc or self.zone == "UTC":
            return TimeRead(micros / 1e6, how=how, is_detected=is_detected)
        return self.localized(micros, how=how, is_detected=is_detected)

    def numbers_or_iso(self) -> TimeRead:
        column = self.raw.table.column(self.name)
        seconds = cast_numbers(column)
        if seconds is None and (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        ):
            return self.iso()
        if seconds is None:
            raise DataError(
                f"{self.raw.source} column {self.name!r} holds {column.type} values, not "
                f"times; {TIME_FIX}"
            )
        self.reject_first(~np.isfinite(seconds))
        if np.abs(seconds).max() > EPOCH_MS_ABOVE:
            return TimeRead(seconds / 1000.0, how="epoch milliseconds")
        return TimeRead(seconds, how="epoch seconds")

    def iso(self) -> TimeRead:
        """A text column of ISO 8601 times, or of the one local format its first cells fit.

        The first cells decide which parse runs over the whole column, so a long export
        in a local format is parsed once, not tried as ISO 8601 first.
        """
        texts = self.texts()
        is_iso = _reads(texts.iloc[:_SAMPLE], "ISO8601")
        times = (
            pd.to_datetime(texts, format="ISO8601", utc=True, errors="coerce") if is_iso else None
        )
        if times is None or times.isna().any():
            local = self.local_format(texts)
            if local is not None:
                return self.formatted(local, is_detected=True)
            if times is None:
                times = pd.to_datetime(texts, format="ISO8601", utc=True, errors="coerce")
            self.reject_mix(times.isna().to_numpy())
        micros = _micros(times)
        if self.zone == "UTC":
            return TimeRead(micros / 1e6, how="ISO 8601")
        has_offset = pc.match_substring_regex(pa.array(texts, type=pa.string()), _OFFSET)
        naive = ~np.asarray(has_offset.to_numpy(zero_copy_only=False), dtype=np.bool_)
        if not naive.any():
            return TimeRead(micros / 1e6, how="ISO 8601")
        read = self.localized(micros[naive], how="ISO 8601", rows=np.flatnonzero(naive))
        seconds = micros / 1e6
        seconds[naive] = read.seconds
        return TimeRead(
            seconds, how="ISO 8601", zone=self.zone, summer=read.summer, winter=read.winter
        )

    def local_format(self, texts: pd.Series) -> str | None:
        """The format of ``LOCAL_FORMATS`` that reads the first cells, or None.

        When several do, those that read every cell are kept, and if they read the column
        differently (5/12 as 5 December or 12 May) the column is refused.
        """
        sample = texts.iloc[:_SAMPLE]
        tried = [f for f in LOCAL_FORMATS if _reads(sample, f)]
        if len(tried) > 1:
            tried = [f for f in tried if _reads(texts, f)]
        if len(tried) > 1 and _differ(texts, tried):
            raise DataError(
                f"{self.raw.at(0)} column {self.name!r} has value {texts.iloc[0]!r}, which reads "
                f"both as {tried[0]!r} and as {tried[1]!r}; give the one the export uses with "
                f"--time-format '{tried[0]}' or --time-format '{tried[1]}'"
            )
        return tried[0] if tried else None

    def reject_mix(self, not_iso: npt.NDArray[np.bool_]) -> None:
        column = self.raw.table.column(self.name)
        numbers, not_number = parsed_numbers(column) or (np.full(len(column), np.nan), not_iso)
        not_number = not_number | ~np.isfinite(numbers)
        # Blame a cell that is neither; failing that, one of the rarer kind in the mix.
        minority = not_number if looks_numeric(numbers, not_number) else not_iso
        self.reject_first(not_iso & not_number)
        self.reject_first(minority, problem="so the column mixes ISO and epoch")
        self.reject_first(not_iso)  # numbers pandas reads but Arrow does not

    def localized(
        self,
        micros: npt.NDArray[np.int64],
        *,
        how: str,
        is_detected: bool = False,
        rows: npt.NDArray[np.intp] | None = None,
    ) -> TimeRead:
        """Wall-clock times ``(m,)`` in µs read in the zone, as epoch seconds UTC."""
        rows = np.arange(len(micros)) if rows is None else rows
        wall = pd.Series(pd.to_datetime(micros, unit="us"))
        local = wall.dt.tz_localize(self.zone, ambiguous="NaT", nonexistent="NaT")
        unresolved = np.flatnonzero(local.isna().to_numpy())
        summer_mask = np.zeros(0, dtype=np.bool_)
        if unresolved.size:
            some = wall.iloc[unresolved]
            as_summer = some.dt.tz_localize(
                self.zone, ambiguous=np.ones(unresolved.size, bool), nonexistent="NaT"
            )
            self.reject_gap(rows[unresolved], as_summer.isna().to_numpy())
            groups = None if self.groups is None else self.groups[rows[unresolved]]
            summer_mask = _summer_first(
                micros[unresolved], groups, descending=micros[-1] < micros[0]
            )
            local.iloc[unresolved] = some.dt.tz_localize(self.zone, ambiguous=summer_mask)
        seconds = _micros(local.dt.tz_convert("UTC")) / 1e6
        n_summer = int(summer_mask.sum())
        return TimeRead(
            seconds,
            how=how,
            zone=self.zone,
            is_detected=is_detected,
            summer=n_summer,
            winter=int(summer_mask.size - n_summer),
        )

    def reject_gap(self, rows: npt.NDArray[np.intp], missing: npt.NDArray[np.bool_]) -> None:
        if missing.any():
            row = int(rows[int(np.argmax(missing))])
            raise DataError(
                f"{self.raw.at(row)} column {self.name!r} has time "
                f"{self.raw.cell(self.name, row)!r}, which does not exist in {self.zone} (the "
                "clocks went forward over it); give the zone the logger's clock keeps with "
                "--timezone (a logger on standard time all year: a fixed zone such as "
                "Etc/GMT-1), or remove that row"
            )

    def reject_first(
        self,
        bad: npt.NDArray[np.bool_],
        *,
        problem: str = "which is not a time",
        fix: str = TIME_FIX,
    ) -> None:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{self.raw.at(row)} column {self.name!r} {self.raw.describe(self.name, row)}, "
                f"{problem}; {fix}"
            )

    def texts(self) -> pd.Series:
        """The column as text ``(n,)``, surrounding spaces removed (trimmed by Arrow: a
        million cells in a few hundredths of a second, pandas takes half a second)."""
        column = self.raw.table.column(self.name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        trimmed = pc.utf8_trim_whitespace(column)
        return pd.Series(trimmed.to_numpy(zero_copy_only=False), dtype=object)


_FORMAT_FIX = (
    "fix or remove that row, or give the format the column is written in (strptime: "
    "%d.%m.%Y %H:%M:%S for 05.12.2026 13:00:00, %m/%d/%Y %I:%M:%S %p for "
    "12/5/2026 1:00:00 PM)"
)


def _micros(times: pd.Series) -> npt.NDArray[np.int64]:
    """Epoch µs ``(n,)`` of a datetime Series (UTC when it has a zone)."""
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return np.asarray(times.to_numpy("datetime64[us]").astype(np.int64), dtype=np.int64)


def _reads(texts: pd.Series, fmt: str) -> bool:
    # utc=True: times with different offsets are read, not refused as a mix of zones.
    return bool(pd.to_datetime(texts, format=fmt, errors="coerce", utc=True).notna().all())


def _differ(texts: pd.Series, formats: list[str]) -> bool:
    first = pd.to_datetime(texts, format=formats[0], errors="coerce")
    return any(
        not first.equals(pd.to_datetime(texts, format=f, errors="coerce")) for f in formats[1:]
    )


def _summer_first(
    wall: npt.NDArray[np.int64], groups: npt.NDArray[Any] | None, *, descending: bool
) -> npt.NDArray[np.bool_]:
    """Which ambiguous wall times ``(m,)`` are summer time: in each group and day, those
    before the first step back in the file's order (after it in a newest-first file)."""
    days = wall // _US_PER_DAY
    keys = days if groups is None else pd.MultiIndex.from_arrays([groups, days])
    codes, _ = pd.factorize(keys)
    summer = np.ones(len(wall), dtype=np.bool_)
    for code in np.unique(codes):
        where = np.flatnonzero(codes == code)
        where = where[::-1] if descending else where
        values = wall[where]
        back = values[1:] <= np.maximum.accumulate(values)[:-1]
        summer[where[1:]] = ~np.logical_or.accumulate(back)
    return summer
