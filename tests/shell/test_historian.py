"""Historian exports (PI, Ignition, SCADA, Excel) through aewatch.model.dataset: real files
in tmp_path with local formats, bad cells, repeated and unordered rows, long tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aewatch.errors import DataError
from aewatch.model.dataset import read_export, read_table, read_tables
from aewatch.model.tables import ReadOptions

T0 = 1_796_475_600.0  # 2026-12-05T13:00:00Z
FALL_BACK = 1_792_890_000.0  # 2026-10-25T01:00:00Z: 03:00 CEST becomes 02:00 CET


def write(tmp_path: Path, text: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path, options: ReadOptions, *parts: str, **kwargs: object) -> str:
    """Read ``path`` expecting a DataError whose message holds every part; return it."""
    with pytest.raises(DataError) as caught:
        read_table(path, options=options, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


GERMAN = (
    "Zeit;Druck;Temperatur\n"
    "05.12.2026 13:00;1,5;20,1\n"
    "05.12.2026 13:01;#N/A;20,2\n"
    "05.12.2026 13:02;1.234,5;\n"
    "05.12.2026 13:03;-0,25;NaN\n"
)


# --- separators, decimal comma, local times ---------------------------------------------


def test_german_excel_export_is_detected(tmp_path: Path) -> None:
    export = read_export(write(tmp_path, GERMAN), options=ReadOptions(timestamp_column="Zeit"))
    table = export.table
    np.testing.assert_array_equal(table.timestamps, T0 + 60 * np.arange(4))
    np.testing.assert_array_equal(
        table.values, [[1.5, 20.1], [1.5, 20.2], [1234.5, 20.2], [-0.25, 20.2]]
    )
    assert export.summary.how == (
        "';'-separated, decimal comma (detected), times '%d.%m.%Y %H:%M' "
        "(detected; give --time-format to be sure) in UTC"
    )
    cells = {c.name: c for c in export.summary.columns}
    assert (cells["Druck"].missing, cells["Druck"].first_missing) == (1, 3)
    assert (cells["Temperatur"].missing, cells["Temperatur"].first_missing) == (2, 4)
    assert cells["Druck"].bad == 0


def test_given_separator_decimal_and_format(tmp_path: Path) -> None:
    path = write(tmp_path, "time|a\n2026/12/05 13-00|1,5\n2026/12/05 13-01|2\n")
    options = ReadOptions(sep="pipe", decimal=",", time_format="%Y/%m/%d %H-%M")
    table = read_table(path, options=options)
    np.testing.assert_array_equal(table.timestamps, [T0, T0 + 60])
    np.testing.assert_array_equal(table.values, [[1.5], [2.0]])


def test_decimal_comma_refuses_a_decimal_point(tmp_path: Path) -> None:
    # 1,234 may group thousands, so it says nothing; 1,5 can only be a decimal comma.
    path = write(tmp_path, "t;a\n1;1,5\n2;2.5\n3;1,234\n")
    message = fails(path, ReadOptions(), f"{path}:3 column 'a' has value '2.5', which is not a")
    assert "decimal comma (detected from its first lines)" in message
    assert "--decimal ." in message
    table = read_table(path, options=ReadOptions(decimal=",", on_bad_cell="interpolate"))
    np.testing.assert_array_equal(table.values[:, 0], [1.5, (1.5 + 1.234) / 2, 1.234])
    points = write(tmp_path, "t;a\n1;2.5\n2;1,234\n3;7\n", "points.csv")
    message = fails(points, ReadOptions(), f"{points}:3 column 'a' has value '1,234'")
    assert "decimal comma" not in message


def test_time_not_matching_the_format_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n05.12.2026 13:00,1\n2026-12-05 13:01,2\n")
    fails(
        path,
        ReadOptions(time_format="%d.%m.%Y %H:%M"),
        f"{path}:3 column 'time' has value '2026-12-05 13:01'",
        "does not match --time-format '%d.%m.%Y %H:%M'",
    )


def test_day_and_month_that_both_fit_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n05/12/2026 13:00,1\n06/12/2026 13:00,2\n")
    fails(
        path,
        ReadOptions(),
        "'05/12/2026 13:00', which reads both as '%d/%m/%Y %H:%M' and as '%m/%d/%Y %H:%M'",
        "--time-format '%d/%m/%Y %H:%M'",
    )
    table = read_table(path, options=ReadOptions(time_format="%d/%m/%Y %H:%M"))
    np.testing.assert_array_equal(table.timestamps, [T0, T0 + 86_400])


def test_us_times_with_am_pm_are_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "Timestamp,a\n12/5/2026 1:00:00 PM,1\n12/13/2026 1:00:00 PM,2\n")
    np.testing.assert_array_equal(read_table(path).timestamps, [T0, T0 + 8 * 86_400])


def test_epoch_formats_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,a\n1796475600000,1\n1796475660000,2\n")
    table = read_table(path, options=ReadOptions(time_format="unix_ms"))
    np.testing.assert_array_equal(table.timestamps, [T0, T0 + 60])
    text = write(tmp_path, "ts,a\n1796475600,1\nsoon,2\n", "text.csv")
    fails(text, ReadOptions(time_format="unix"), f"{text}:3 column 'ts' has value 'soon'")


def test_a_zone_converts_local_times(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n2026-12-05 14:00,1\n2026-12-05T14:01:00Z,2\n")
    table = read_table(path, options=ReadOptions(timezone="Europe/Berlin"))
    np.testing.assert_array_equal(table.timestamps, [T0, T0 + 3660])  # an offset wins


# --- the hour clocks go back, and the one they skip ------------------------------------

DST_WIDE = "".join(
    f"25.10.2026 {t},{v}\n"
    for v, t in enumerate(["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"])
)


def test_repeated_local_hour_without_a_zone_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n" + DST_WIDE)
    fails(
        path,
        ReadOptions(),
        f"{path}:5 column 'time' has timestamp '25.10.2026 02:00', earlier than",
        "--sort",
    )
    fails(
        path,
        ReadOptions(sort_rows=True),
        "'25.10.2026 02:00', the same time as '25.10.2026 02:00' on line 3",
        "--dedupe first|last",
        "--timezone Europe/Berlin",
    )


def test_repeated_local_hour_in_the_zone_is_read_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n" + DST_WIDE)
    export = read_export(path, options=ReadOptions(timezone="Europe/Berlin"))
    half_hours = FALL_BACK - 5400 + 1800 * np.arange(6)
    np.testing.assert_array_equal(export.table.timestamps, half_hours)
    np.testing.assert_array_equal(export.table.values[:, 0], np.arange(6))
    assert any(
        "2 local times in the repeated hour read as summer" in n for n in export.summary.notes
    )


def test_dedupe_keeps_first_or_last(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n" + DST_WIDE)
    for keep, values in (("first", [0, 1, 2, 5]), ("last", [0, 3, 4, 5])):
        export = read_export(path, options=ReadOptions(sort_rows=True, dedupe=keep))
        np.testing.assert_array_equal(export.table.values[:, 0], values)
        assert f"rows repeating a time: 2, the {keep} of each kept" in export.summary.notes


def test_a_local_time_the_clocks_skip_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n2026-03-29 01:30,1\n2026-03-29 02:30,2\n")
    fails(
        path,
        ReadOptions(timezone="Europe/Berlin"),
        f"{path}:3 column 'time' has time '2026-03-29 02:30', which does not exist in "
        "Europe/Berlin",
        "--timezone",
    )


# --- rows out of order -------------------------------------------------------------------


def test_sort_puts_rows_in_time_order(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,a,b\n3,30,c\n1,10,a\n2,20,b\n")
    fails(path, ReadOptions(), f"{path}:3 column 'ts' has timestamp '1', earlier than '3'")
    export = read_export(path, options=ReadOptions(sort_rows=True))
    np.testing.assert_array_equal(export.table.timestamps, [1, 2, 3])
    np.testing.assert_array_equal(export.table.values[:, 0], [10, 20, 30])
    assert export.table.lines.tolist() == [3, 4, 2]
    assert "rows earlier than one above them: 2, all sorted by time" in export.summary.notes


# --- bad cells -------------------------------------------------------------------------

BAD = "t;a;b\n0;1,0;5\n10;Bad Input;6\n20;3,0;Shutdown\n30;#N/A;8\n40;5,0;9\n"


def test_bad_cell_is_refused_with_the_option_to_use(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    message = fails(path, ReadOptions(), f"{path}:3 column 'a' has value 'Bad Input'")
    assert "--on-bad-cell drop" in message and "--on-bad-cell interpolate" in message


def test_bad_cells_dropped(tmp_path: Path) -> None:
    export = read_export(write(tmp_path, BAD), options=ReadOptions(on_bad_cell="drop"))
    np.testing.assert_array_equal(export.table.timestamps, [0, 30, 40])
    np.testing.assert_array_equal(export.table.values, [[1, 5], [1, 8], [5, 9]])
    a, b = export.summary.columns
    assert (a.bad, a.first_bad, a.first_bad_text, a.missing, a.first_missing) == (
        1,
        3,
        "Bad Input",
        1,
        5,
    )
    assert (b.bad, b.first_bad, b.first_bad_text) == (1, 4, "Shutdown")
    assert "rows with a bad cell left out (--on-bad-cell drop): 2" in export.summary.notes
    lines = export.summary.lines()
    assert any(
        "'a': 1 missing (first line 5; each takes the value above), 1 bad (first line 3: "
        "'Bad Input'; dropped)" in line
        for line in lines
    )
    assert any("'b': 1 bad (first line 4: 'Shutdown'; dropped)" in line for line in lines)


def test_bad_cells_interpolated_in_time(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, BAD), options=ReadOptions(on_bad_cell="interpolate"))
    np.testing.assert_array_equal(table.timestamps, [0, 10, 20, 30, 40])
    # a at 10 s lies between 1 (0 s) and 3 (20 s); b at 20 s between 6 (10 s) and 8 (30 s);
    # the #N/A at 30 s is missing, not bad: it takes the value above.
    np.testing.assert_array_equal(table.values, [[1, 5], [2, 6], [3, 7], [3, 8], [5, 9]])


def test_every_row_bad_leaves_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b\n1,x,1\n2,y,2\n3,1,z\n", "all.csv")
    fails(path, ReadOptions(on_bad_cell="drop"), "every row has a bad cell", channels=["a", "b"])


# --- long tables -----------------------------------------------------------------------

PI = (
    "Tag;Timestamp;Value;Status\n"
    "FIC101.PV;25.10.2026 01:30;12,5;Good\n"
    "TI102.PV;25.10.2026 01:30;80,1;Good\n"
    "FIC101.PV;25.10.2026 02:00;12,7;Good\n"
    "TI102.PV;25.10.2026 02:00;#N/A;Bad\n"
    "FIC101.PV;25.10.2026 02:30;Bad Input;Bad\n"
    "TI102.PV;25.10.2026 02:30;80,4;Good\n"
    "FIC101.PV;25.10.2026 02:00;12,9;Good\n"
    "TI102.PV;25.10.2026 02:00;80,5;Good\n"
    "TI102.PV;25.10.2026 03:00;80,6;Good\n"
    "FIC101.PV;25.10.2026 02:30;13,1;Good\n"
    "FIC101.PV;25.10.2026 03:00;13,3;Good\n"
)


def test_long_pi_export_across_the_clock_change(tmp_path: Path) -> None:
    path = write(tmp_path, PI)
    options = ReadOptions(timezone="Europe/Berlin", on_bad_cell="interpolate")
    export = read_export(path, options=options)
    table = export.table
    assert table.channels == ("FIC101.PV", "TI102.PV")
    np.testing.assert_array_equal(table.timestamps, FALL_BACK - 5400 + 1800 * np.arange(6))
    np.testing.assert_allclose(
        table.values,
        [[12.5, 80.1], [12.7, 80.1], [12.8, 80.4], [12.9, 80.5], [13.1, 80.5], [13.3, 80.6]],
    )
    assert table.labels is None
    assert export.summary.layout == "long"
    assert export.summary.rows_read == 11
    assert export.summary.rows_kept == 6
    assert "columns 'Status' not used" in export.summary.notes
    fic, ti = export.summary.columns
    assert (fic.bad, fic.first_bad, fic.first_bad_text) == (1, 6, "Bad Input")
    assert (ti.missing, ti.first_missing) == (1, 5)
    assert export.summary.lines()[1].startswith("         11 rows → 6 times, 2026-10-24 23:30:00")


def test_long_bad_reading_names_its_tag(tmp_path: Path) -> None:
    path = write(tmp_path, PI)
    fails(
        path,
        ReadOptions(timezone="Europe/Berlin"),
        f"{path}:6 column 'Value' has value 'Bad Input' for tag 'FIC101.PV', which is not a number",
        "--on-bad-cell drop",
        "leave the tag out with --channels",
    )


def test_long_repeat_without_zone_names_tag_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, PI)
    fails(
        path,
        ReadOptions(on_bad_cell="drop"),
        f"{path}:8 column 'Timestamp' has timestamp '25.10.2026 02:00' for tag 'FIC101.PV', the "
        "same time as '25.10.2026 02:00' on line 4",
        "--dedupe first|last",
        "--timezone",
    )


def test_long_table_is_sorted_and_starts_once_every_tag_has_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,name,value\n"
        "2026-12-05T13:02:00Z,b,20\n"
        "2026-12-05T13:00:00Z,a,1\n"
        "2026-12-05T13:01:00Z,b,10\n"
        "2026-12-05T13:03:00Z,a,3\n",
    )
    export = read_export(path, channels=["b", "a"])
    np.testing.assert_array_equal(export.table.timestamps, T0 + 60 * np.arange(1, 4))
    np.testing.assert_array_equal(export.table.values, [[10, 1], [20, 1], [20, 3]])
    assert export.table.lines.tolist() == [4, 2, 5]
    notes = export.summary.notes
    # b's 13:01 came after its 13:02; a's rows are in order, after b's though they are.
    assert "readings earlier than one above them of their tag: 1, all sorted by time" in notes
    assert "the first 1 times, before every tag had a reading, left out" in notes


def test_long_unknown_tag_and_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,tag,value\n1,a,1\n2,a,2\n")
    fails(path, ReadOptions(), f"{path} has no tag 'c'; its tags are 'a'", channels=["c"])
    fails(path, ReadOptions(tag_column="Tag"), f"{path} has no column 'Tag'", "--tag-column")
    wide = write(tmp_path, "ts,a,b\n1,1,2\n", "wide.csv")
    fails(
        wide, ReadOptions(layout="long"), "has no column named tag", "--tag-column", "--layout wide"
    )


def test_wide_file_with_a_value_column_stays_wide(tmp_path: Path) -> None:
    table = read_table(
        write(tmp_path, "ts,value,name\n1,1,x\n2,2,y\n"), options=ReadOptions(layout="wide")
    )
    assert table.channels == ("value",)


def test_long_parquet_table(tmp_path: Path) -> None:
    path = tmp_path / "history.parquet"
    times = pd.to_datetime(
        ["2026-12-05 14:00", "2026-12-05 14:00", "2026-12-05 14:01", "2026-12-05 14:01"]
    )
    pq.write_table(
        pa.table(
            {
                "t_stamp": pa.array(times.to_numpy("datetime64[ms]")),
                "TagPath": pa.array(
                    ["pump/speed", "pump/flow", "pump/speed", "pump/flow"]
                ).dictionary_encode(),
                "Value": [1450.0, 12.0, None, 12.5],
            }
        ),
        path,
    )
    options = ReadOptions(timestamp_column="t_stamp", timezone="Europe/Berlin")
    export = read_export(path, options=options)
    assert export.table.channels == ("pump/flow", "pump/speed")
    np.testing.assert_array_equal(export.table.timestamps, [T0, T0 + 60])
    np.testing.assert_array_equal(export.table.values, [[12.0, 1450.0], [12.5, 1450.0]])
    assert export.summary.how == "Parquet, times date/time values in Europe/Berlin"
    assert export.summary.columns[1].first_missing == 3


def test_files_of_one_history_must_share_tags(tmp_path: Path) -> None:
    a = write(tmp_path, "ts,tag,value\n1,x,1\n1,y,2\n", "a.csv")
    b = write(tmp_path, "ts,tag,value\n1,x,1\n", "b.csv")
    with pytest.raises(DataError, match="--channels x"):
        read_tables([a, b])


# --- the options themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "part"),
    [
        ({"timezone": "Europe/Berlln"}, "--timezone 'Europe/Berlln' is not a known time zone"),
        ({"sep": ";;"}, "--sep ';;' is not one field separator"),
        ({"sep": ",", "decimal": ","}, "are the same character"),
        ({"on_bad_cell": "skip"}, "--on-bad-cell 'skip' is not one of error, drop, interpolate"),
        ({"time_format": " "}, "--time-format is empty"),
    ],
)
def test_invalid_options_are_named(kwargs: dict[str, str], part: str) -> None:
    with pytest.raises(DataError, match=part.replace("(", r"\(")):
        ReadOptions(**kwargs)  # type: ignore[arg-type]


def test_long_table_labels_come_from_their_tags(tmp_path: Path) -> None:
    rows = [
        ("2026-12-05T13:00:00Z", "a", "1"),
        ("2026-12-05T13:00:00Z", "anomaly", "0"),
        ("2026-12-05T13:00:00Z", "b", "10"),
        ("2026-12-05T13:01:00Z", "a", "2"),
        ("2026-12-05T13:01:00Z", "b", "20"),
        ("2026-12-05T13:02:00Z", "anomaly", "1"),
        ("2026-12-05T13:02:00Z", "a", "3"),
        ("2026-12-05T13:03:00Z", "anomaly", "0"),
        ("2026-12-05T13:03:00Z", "b", "40"),
    ]
    path = write(tmp_path, "ts,tag,value\n" + "".join(f"{t},{g},{v}\n" for t, g, v in rows))
    export = read_export(path)
    table = export.table
    assert table.channels == ("a", "b")
    np.testing.assert_array_equal(table.values, [[1, 10], [2, 20], [3, 20], [3, 40]])
    assert table.labels is not None and table.changepoints is None
    np.testing.assert_array_equal(table.labels, [0, 0, 1, 0])  # a label holds until the next
    assert "tags from column 'tag', values from 'value': 2 tags, labels from tag 'anomaly'" in (
        export.summary.notes
    )
    assert [c.name for c in export.summary.columns] == ["a", "b"]
    fails(path, ReadOptions(), "has no label tag 'fault'", "--label-column", label_column="fault")
    fails(path, ReadOptions(), "tag 'anomaly' holds 0/1 labels", channels=["a", "anomaly"])
    wrong = write(tmp_path, path.read_text().replace("anomaly,1", "anomaly,2"), "wrong.csv")
    fails(
        wrong,
        ReadOptions(),
        f"{wrong}:7 column 'value' has value '2' for tag 'anomaly'; labels must be 0 or 1",
    )


def test_wide_columns_that_are_not_channels_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,status,anomaly\n1,1,ok,0\n2,2,bad,0\n3,3,ok,1\n")
    export = read_export(path)
    assert export.table.channels == ("a",)
    assert "columns 'status' not used: not numbers" in export.summary.notes
    assert export.summary.lines()[2] == "         every value cell of 1 column is a number"


def test_long_table_reads_only_the_tags_asked_for(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,tag,value\n1,a,1\n2,a,2\n1,x,5\n1,x,6\nsoon,x,Bad\n")
    fails(path, ReadOptions(), f"{path}:6 column 'ts' has value 'soon', which is not a time")
    export = read_export(path, channels=["a"])
    np.testing.assert_array_equal(export.table.values, [[1], [2]])
    assert export.table.lines.tolist() == [2, 3]
    assert "3 readings of 1 other tag not used" in export.summary.notes
    assert (export.summary.rows_read, export.summary.rows_kept) == (5, 2)
