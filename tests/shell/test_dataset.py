"""Tests for aewatch.model.dataset: real small files in tmp_path, and SKAB when present."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aewatch.errors import DataError
from aewatch.model.dataset import Table, read_table, read_tables

SKAB = Path(__file__).parents[2].parent / "shared/data/skab"
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


def write(tmp_path: Path, text: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fails(
    path: Path,
    *parts: str,
    channels: list[str] | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
) -> str:
    """Read ``path`` expecting a DataError whose message holds every part; return it."""
    with pytest.raises(DataError) as caught:
        read_table(
            path, channels=channels, label_column=label_column, timestamp_column=timestamp_column
        )
    message = str(caught.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# --- reading -------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_reads_each_delimiter(tmp_path: Path, delimiter: str) -> None:
    rows = [
        ["datetime", "Pressure", "Flow Rate", "anomaly"],
        ["2024-01-01 00:00:00", "1.5", "10", "0.0"],
        ["2024-01-01 00:00:01", "1.25", "11", "1.0"],
        ["2024-01-01 00:00:02", "-2e-3", "12", "0"],
    ]
    path = write(tmp_path, "\n".join(delimiter.join(r) for r in rows) + "\n")
    table = read_table(path)
    assert table.source == str(path)
    assert table.channels == ("Pressure", "Flow Rate")
    np.testing.assert_array_equal(table.timestamps, [T0, T0 + 1, T0 + 2])
    np.testing.assert_array_equal(table.values, [[1.5, 10], [1.25, 11], [-0.002, 12]])
    assert table.values.dtype == np.float64
    assert table.labels is not None
    assert table.labels.dtype == np.int8
    assert table.labels.tolist() == [0, 1, 0]
    assert table.changepoints is None
    assert table.lines.tolist() == [2, 3, 4]


def test_skab_like_file_with_changepoints(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "datetime;Current;Voltage;anomaly;changepoint\n"
        "2020-03-09 10:14:33;1.1;220;0.0;0.0\n"
        "2020-03-09 10:14:34;1.2;221;1.0;1.0\n",
    )
    table = read_table(path)
    assert table.channels == ("Current", "Voltage")
    assert table.labels is not None
    assert table.changepoints is not None
    assert (table.labels.tolist(), table.changepoints.tolist()) == ([0, 1], [0, 1])


def test_file_without_labels(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "t,a\n1,2\n2,3\n"))
    assert table.labels is None
    assert table.changepoints is None


def test_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(b"timestamp,x\n10,1\n11,2\n"))
    table = read_table(path)
    np.testing.assert_array_equal(table.timestamps, [10.0, 11.0])


def test_iso_timestamps_naive_is_utc_and_offsets_convert(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,x\n"
        "2024-01-01T00:00:00,1\n"
        "2024-01-01T00:00:01Z,2\n"
        "2024-01-01T02:00:02+02:00,3\n"
        "2024-01-01 00:00:02.5,4\n",
    )
    np.testing.assert_array_equal(read_table(path).timestamps, [T0, T0 + 1, T0 + 2, T0 + 2.5])


def test_epoch_seconds_and_milliseconds(tmp_path: Path) -> None:
    seconds = write(tmp_path, "ts,x\n1704067200,1\n1704067200.5,2\n", "s.csv")
    millis = write(tmp_path, "ts,x\n1704067200000,1\n1704067200500,2\n", "ms.csv")
    np.testing.assert_array_equal(read_table(seconds).timestamps, [T0, T0 + 0.5])
    np.testing.assert_array_equal(read_table(millis).timestamps, [T0, T0 + 0.5])


def test_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Time": pd.date_range("2024-01-01", periods=3, freq="s", tz="Europe/Berlin"),
            "a": [1.0, np.nan, 3.0],
            "b": np.array([4, 5, 6], dtype=np.int32),
            "note": ["x", "y", "z"],
            "anomaly": [False, True, False],
        }
    )
    path = tmp_path / "export.parquet"
    frame.to_parquet(path)
    table = read_table(path)
    assert table.channels == ("a", "b")
    np.testing.assert_array_equal(table.timestamps, T0 - 3600 + np.arange(3))
    np.testing.assert_array_equal(table.values, [[1, 4], [1, 5], [3, 6]])
    assert table.labels is not None
    assert table.labels.tolist() == [0, 1, 0]
    assert table.lines.tolist() == [1, 2, 3]


def test_parquet_naive_datetimes_are_utc(tmp_path: Path) -> None:
    path = tmp_path / "export.pq"
    times = pa.array(np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:01"], "datetime64[ms]"))
    pq.write_table(pa.table({"timestamp": times, "x": [1.0, 2.0]}), path)
    np.testing.assert_array_equal(read_table(path).timestamps, [T0, T0 + 1])


def test_channels_subset_in_the_order_given(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b,c,status\n1,1,2,3,ok\n2,4,5,6,ok\n")
    table = read_table(path, channels=["c", "a"])
    assert table.channels == ("c", "a")
    np.testing.assert_array_equal(table.values, [[3, 1], [6, 4]])


def test_text_column_not_asked_for_is_not_a_channel(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "t,a,status\n1,1,running\n2,2,stopped\n"))
    assert table.channels == ("a",)


def test_missing_cells_take_the_value_above(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b\n1,1,10\n2,,NaN\n3,inf,12\n4,-Infinity,\n5,5,nan\n")
    np.testing.assert_array_equal(
        read_table(path).values, [[1, 10], [1, 10], [1, 12], [1, 12], [5, 12]]
    )


def test_custom_timestamp_and_label_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "when,x,fault,anomaly\n1,1,0,1\n2,2,1,1\n")
    table = read_table(path, timestamp_column="when", label_column="fault")
    assert table.channels == ("x",)  # 'anomaly' is never a channel
    assert table.labels is not None
    assert table.labels.tolist() == [0, 1]


def test_blank_lines_keep_line_numbers_right(tmp_path: Path) -> None:
    path = write(tmp_path, "\nt,a\r\n1,1\r\n\r\n2,2\n\n\n3,abc\n")
    table_text = "t,a\n1,1\n\n2,2\n"
    assert read_table(write(tmp_path, table_text, "ok.csv")).lines.tolist() == [2, 4]
    fails(path, f"{path}:8 column 'a' has value 'abc'")


def test_read_tables_same_channels(tmp_path: Path) -> None:
    a = write(tmp_path, "t,x,y\n1,1,2\n", "a.csv")
    b = write(tmp_path, "t;x;y\n1;3;4\n", "b.csv")
    tables = read_tables([a, b])
    assert [t.channels for t in tables] == [("x", "y"), ("x", "y")]
    assert all(isinstance(t, Table) for t in tables)


# --- errors --------------------------------------------------------------------------


def test_non_numeric_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "t,Pressure,b\n1,1.0,2\n2,abc,3\n3,2.0,4\n")
    message = fails(path)
    assert message == (
        f"{path}:3 column 'Pressure' has value 'abc', which is not a number; "
        "fix or remove that row, or leave the column out with --channels, or let aewatch "
        "handle such cells: --on-bad-cell drop (leaves the row out) or --on-bad-cell "
        "interpolate (draws the value in time from its neighbours)"
    )


def test_non_numeric_cell_deep_in_a_large_file(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(120_000))  # past Arrow's first block
    path = write(tmp_path, f"t,a\n{rows}120000,oops\n")
    fails(path, f"{path}:120002 column 'a' has value 'oops'")


def test_requested_text_column(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,status\n1,1,ok\n2,2,ok\n")
    fails(path, f"{path}:2 column 'status' has value 'ok'", channels=["status"])


def test_no_timestamp_column(tmp_path: Path) -> None:
    path = write(tmp_path, "when,a,b\n1,2,3\n")
    fails(path, str(path), "'when', 'a', 'b'", "--timestamp-column")


def test_unknown_timestamp_column(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a\n1,2\n")
    fails(path, str(path), "'clock'", "'t', 'a'", "--timestamp-column", timestamp_column="clock")


@pytest.mark.parametrize(
    ("second", "relation"), [("2024-01-01 00:00:01", "the same as"), ("2023-12-31", "earlier")]
)
def test_timestamps_not_increasing(tmp_path: Path, second: str, relation: str) -> None:
    path = write(
        tmp_path,
        f"datetime,a\n2024-01-01 00:00:00,1\n2024-01-01 00:00:01,2\n{second},3\n",
    )
    fails(
        path,
        f"{path}:4 column 'datetime'",
        relation,
        "line 3",
        "2024-01-01 00:00:01",
        "sort the export by time and remove duplicate rows",
    )


def test_unparseable_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n2024-01-01 00:00:00,1\nyesterday,2\n")
    fails(path, f"{path}:3 column 'time' has value 'yesterday'", "ISO 8601")


@pytest.mark.parametrize(
    ("cells", "line", "problem"),
    [
        (["1704067200", "17040672x1"], 3, "'17040672x1', which is not a time"),
        (["1704067200", "1704067201", "2024-01-01"], 4, "'2024-01-01', so the column mixes"),
        (["1704067200", "inf"], 3, "'inf', which is not a time"),
    ],
)
def test_bad_epoch_timestamp(tmp_path: Path, cells: list[str], line: int, problem: str) -> None:
    path = write(tmp_path, "ts,a\n" + "".join(f"{c},1\n" for c in cells))
    fails(path, f"{path}:{line} column 'ts' has value {problem}")


def test_empty_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n2024-01-01 00:00:00,1\n,2\n")
    fails(path, f"{path}:3 column 'time' has no timestamp")


def test_missing_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a\n1,2\n")
    fails(path, str(path), "'fault'", "'t', 'a'", "--label-column", label_column="fault")


def test_label_not_zero_or_one(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,anomaly\n1,2,0\n2,3,0.5\n")
    fails(path, f"{path}:3 column 'anomaly' has value '0.5'", "0 or 1")


def test_unknown_channel(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b,anomaly\n1,2,3,0\n")
    message = fails(path, str(path), "'c'", "'a', 'b'", "--channels", channels=["a", "c"])
    assert "'anomaly'," not in message  # labels are not offered as channels


def test_label_asked_as_channel(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,anomaly\n1,2,0\n")
    fails(path, str(path), "'anomaly' is the timestamp or a label column", channels=["anomaly"])


def test_missing_value_in_first_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b\n1,1,\n2,2,3\n")
    fails(path, f"{path}:2 column 'b' is empty", "first data row", "fill it in")


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    fails(path, f"{path} is empty")


def test_header_without_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a\n")
    fails(path, f"{path} has no data rows")


def test_no_channels(tmp_path: Path) -> None:
    path = write(tmp_path, "t,status,anomaly\n1,ok,0\n")
    fails(path, f"{path} has no numeric columns", "'t', 'status', 'anomaly'", "--channels")


def test_ragged_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b\n1,2,3\n2,3\n")
    fails(path, f"{path}:3 cannot be read", "Expected 3 columns, got 2", "as many fields")


def test_missing_file(tmp_path: Path) -> None:
    fails(tmp_path / "nope.csv", str(tmp_path / "nope.csv"), "cannot be read")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(b"t,x\n10,1\n11,2\n" * 100)[:40])
    fails(path, f"{path} cannot be read")


def test_channels_as_one_string_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list of column names"):
        read_table(write(tmp_path, "t,a\n1,2\n"), channels="a")


def test_read_tables_with_different_channels_names_both_files(tmp_path: Path) -> None:
    a = write(tmp_path, "t,x,y\n1,1,2\n", "a.csv")
    b = write(tmp_path, "t,y,x\n1,3,4\n", "b.csv")
    with pytest.raises(DataError, match=re.escape(str(b)) + ".*" + re.escape(str(a))) as caught:
        read_tables([a, b])
    assert "--channels x,y" in str(caught.value)


def test_read_tables_of_nothing() -> None:
    with pytest.raises(DataError, match="no data files"):
        read_tables([])


# --- real data -----------------------------------------------------------------------


@pytest.mark.skipif(not SKAB.is_dir(), reason=f"SKAB sample data not found at {SKAB}")
def test_reads_real_skab_file() -> None:
    table = read_table(SKAB / "valve1" / "0.csv")
    assert table.channels == (
        "Accelerometer1RMS",
        "Accelerometer2RMS",
        "Current",
        "Pressure",
        "Temperature",
        "Thermocouple",
        "Voltage",
        "Volume Flow RateRMS",
    )
    assert table.values.shape == (len(table.timestamps), 8)
    assert np.all(np.diff(table.timestamps) > 0)
    assert table.labels is not None
    assert table.changepoints is not None
    assert set(np.unique(table.labels)) == {0, 1}
    unlabelled = read_table(SKAB / "anomaly-free" / "anomaly-free.csv")
    assert unlabelled.labels is None
    assert unlabelled.channels == table.channels
