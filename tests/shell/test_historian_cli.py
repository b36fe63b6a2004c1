"""Historian exports through the command line: a PI-style long table (``;``-separated,
decimal commas, local times across the autumn clock change, ``#N/A`` and ``Bad Input``
cells) trained on, scored, evaluated and replayed, with what was read printed and stored
in the training report; scoring it gives exactly what the same readings give as a wide
ISO 8601 file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle

from .conftest import Broker

TAGS = ("FIC101.PV", "TI102.PV")
PERIOD_S = 10
ROWS = 1500  # 4 h 10 min from 01:30 CEST, so through the hour the clocks go back
START = pd.Timestamp("2026-10-24T23:30:00Z")  # 01:30 in Berlin, summer time
BAD_AT, MISSING_AT = 100, 300  # a 'Bad Input' reading of FIC101, a '#N/A' of TI102


def _readings(seed: int) -> pd.DataFrame:
    """``ROWS`` UTC times ``PERIOD_S`` apart and two correlated channels (3 decimals)."""
    rng = np.random.default_rng(seed)
    base = np.sin(np.arange(ROWS) / 9.0)
    return pd.DataFrame(
        {
            "utc": START + pd.to_timedelta(np.arange(ROWS) * PERIOD_S, unit="s"),
            TAGS[0]: (12.0 + base + 0.05 * rng.normal(size=ROWS)).round(3),
            TAGS[1]: (80.0 + 2 * base + 0.05 * rng.normal(size=ROWS)).round(3),
        }
    )


def _cells(readings: pd.DataFrame, tag: str, *, comma: bool) -> list[str]:
    cells = [f"{v:.3f}".replace(".", ",") if comma else f"{v:.3f}" for v in readings[tag]]
    if tag == TAGS[0]:
        cells[BAD_AT] = "Bad Input"
    else:
        cells[MISSING_AT] = "#N/A" if comma else ""
    return cells


def _pi_export(path: Path, readings: pd.DataFrame, *, extra_tag: bool = False) -> Path:
    """The readings as a PI archive export: one tag after the other, Berlin wall time."""
    local = readings["utc"].dt.tz_convert("Europe/Berlin").dt.strftime("%d.%m.%Y %H:%M:%S")
    lines = ["Tag;Timestamp;Value;Status"]
    for tag in TAGS:
        for when, cell in zip(local, _cells(readings, tag, comma=True), strict=True):
            lines.append(f"{tag};{when};{cell};{'Bad' if cell == 'Bad Input' else 'Good'}")
    if extra_tag:  # a tag the model does not use, every reading bad
        lines += [f"XX999.PV;{when};I/O Timeout;Bad" for when in local]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wide_iso(path: Path, readings: pd.DataFrame) -> Path:
    """The same readings as a wide file with ISO 8601 UTC times and decimal points."""
    frame = pd.DataFrame(
        {
            "timestamp": readings["utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **{tag: _cells(readings, tag, comma=False) for tag in TAGS},
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("historian")
    return {
        "history": _pi_export(folder / "history.csv", _readings(1)),
        "day": _pi_export(folder / "day.csv", _readings(2), extra_tag=True),
        "day_wide": _wide_iso(folder / "day-wide.csv", _readings(2)),
        "model": folder / "fic.aew",
    }


TRAIN = ("--quiet", "--no-detectability", "--timezone", "Europe/Berlin")


@pytest.fixture(scope="module")
def trained(plant: dict[str, Path]) -> dict[str, Path]:
    argv = ["train", "--data", str(plant["history"]), "--out", str(plant["model"]), *TRAIN]
    assert main([*argv, "--on-bad-cell", "interpolate"]) == 0
    return plant


def test_train_refuses_the_bad_cell_and_names_the_way_out(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tmp_path / "m.aew")
    assert main(["train", "--data", str(plant["history"]), "--out", model, *TRAIN]) == 2
    err = capsys.readouterr().err
    # The header is line 1 and FIC101's readings come first.
    assert (
        f"{plant['history']}:{BAD_AT + 2} column 'Value' has value 'Bad Input' for tag "
        "'FIC101.PV', which is not a number"
    ) in err
    assert "--on-bad-cell drop" in err and "--on-bad-cell interpolate" in err
    # Without the zone, the hour the clocks go back repeats each tag's times.
    argv = ["train", "--data", str(plant["history"]), "--out", model, "--quiet"]
    assert main([*argv, "--on-bad-cell", "drop"]) == 2
    err = capsys.readouterr().err
    assert "the same time as" in err and "--timezone" in err and "--dedupe first|last" in err


def test_train_prints_and_reports_what_it_read(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ModelBundle.load(trained["model"]).channels == TAGS
    # The train run itself printed in the fixture; read its report, then train again to see
    # the printed lines (the same file and options print the same summary).
    summary = json.loads((trained["model"].parent / "fic.aew.report" / "summary.json").read_text())
    (read,) = summary["data_read"]
    assert (read["layout"], read["rows_read"], read["rows_kept"]) == ("long", 2 * ROWS, ROWS)
    assert read["start"] == "2026-10-24T23:30:00Z"
    assert read["end"] == (START + pd.Timedelta(seconds=(ROWS - 1) * PERIOD_S)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert (read["step_s"], read["gaps"]) == (PERIOD_S, 0)
    fic, ti = read["columns"]
    assert (fic["name"], fic["bad"], fic["first_bad_line"], fic["first_bad_text"]) == (
        TAGS[0],
        1,
        BAD_AT + 2,
        "Bad Input",
    )
    assert (ti["missing"], ti["first_missing_line"]) == (1, ROWS + MISSING_AT + 2)
    index = (trained["model"].parent / "fic.aew.report" / "index.html").read_text()
    assert "What was read" in index and "decimal comma (detected)" in index
    capsys.readouterr()
    again = trained["model"].with_name("again.aew")
    argv = ["train", "--data", str(trained["history"]), "--out", str(again), *TRAIN]
    assert main([*argv, "--on-bad-cell", "interpolate"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == read["text"][:2]
    assert printed[0] == (
        f"read     {trained['history']}: long table, ';'-separated, decimal comma (detected), "
        "times '%d.%m.%Y %H:%M:%S' (detected; give --time-format to be sure) in Europe/Berlin"
    )
    assert printed[1].startswith(f"         {2 * ROWS} rows → {ROWS} times, 2026-10-24 23:30:00")
    assert any(
        "'FIC101.PV': 1 bad (first line 102: 'Bad Input'; interpolated)" in p for p in printed
    )
    assert any("the clocks went back (Europe/Berlin)" in p for p in printed)


def test_score_of_the_long_export_is_the_score_of_the_same_readings_wide(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(trained["model"])
    long_out, wide_out = tmp_path / "long.csv", tmp_path / "wide.csv"
    options = ["--on-bad-cell", "interpolate"]
    argv = ["score", "--model", model, "--data", str(trained["day"]), "--out", str(long_out)]
    assert main([*argv, "--timezone", "Europe/Berlin", *options]) == 0
    printed = capsys.readouterr().out
    assert f"read     {trained['day']}: long table" in printed
    assert "columns 'Status' not used" in printed
    assert f"note: {ROWS} readings of 1 other tag not used" in printed  # XX999.PV, all bad
    argv = ["score", "--model", model, "--data", str(trained["day_wide"]), "--out", str(wide_out)]
    assert main([*argv, *options]) == 0
    long, wide = pd.read_csv(long_out), pd.read_csv(wide_out)
    assert len(long) == ROWS
    assert long["timestamp"].iloc[0] == "2026-10-24T23:30:00Z"
    assert long["score"].notna().sum() > ROWS // 2
    pd.testing.assert_frame_equal(long, wide)


def test_score_names_the_tags_the_model_needs(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.csv"
    other.write_text(trained["day"].read_text().replace("TI102.PV", "TI103.PV"))
    argv = ["score", "--model", str(trained["model"]), "--data", str(other)]
    assert main([*argv, "--out", str(tmp_path / "s.csv"), "--timezone", "Europe/Berlin"]) == 2
    err = capsys.readouterr().err
    assert f"{other} has no tag 'TI102.PV'; its tags are 'FIC101.PV', 'TI103.PV'" in err
    assert "model 'fic' was trained on 'FIC101.PV', 'TI102.PV'" in err and "aewatch train" in err


def test_evaluate_reads_labels_from_an_anomaly_tag(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = tmp_path / "labelled.csv"
    readings = _readings(2)
    # FIC101 3 units high for the last 300 readings, labelled: anomaly 0, then 1 from there.
    readings.loc[ROWS - 300 :, TAGS[0]] += 3.0
    _pi_export(day, readings)
    local = readings["utc"].dt.tz_convert("Europe/Berlin").dt.strftime("%d.%m.%Y %H:%M:%S")
    with day.open("a", encoding="utf-8") as out:
        out.write(f"anomaly;{local.iloc[0]};0;Good\n")
        out.write(f"anomaly;{local.iloc[ROWS - 300]};1;Good\n")
    argv = ["evaluate", "--model", str(trained["model"]), "--data", str(day), "--no-plot"]
    capsys.readouterr()
    assert main([*argv, "--json", "--timezone", "Europe/Berlin", "--on-bad-cell", "drop"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["rows"], result["counts"]["tp"] + result["counts"]["fn"]) == (ROWS, 300)
    assert result["event_recall"] == 1.0
    (read,) = result["data_read"]
    assert (
        "tags from column 'Tag', values from 'Value': 2 tags, labels from tag 'anomaly'"
        in (read["notes"])
    )


@pytest.mark.parametrize(
    "case",
    [
        ("--timezone", "Europe/Berlln", "--timezone 'Europe/Berlln' is not a known time zone"),
        ("--sep", ";;", "--sep ';;' is not one field separator"),
        ("--time-format", "%Y-%m-%d", "does not match --time-format '%Y-%m-%d'"),
    ],
)
def test_read_options_are_checked_and_named(
    plant: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    option, value, message = case
    argv = ["train", "--data", str(plant["history"]), "--out", str(tmp_path / "m.aew")]
    assert main([*argv, "--quiet", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aewatch train: ") and message in err


@pytest.mark.broker
def test_replay_publishes_a_long_export_as_readings(
    broker: Broker, plant: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe("test/historian/#", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, msg: got.append(msg)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert ready.wait(10), "subscription not acknowledged"
        argv = ["replay", str(plant["day"]), "--broker", broker.url, "--per", "row"]
        options = ["--timezone", "Europe/Berlin", "--on-bad-cell", "interpolate"]
        template = ["--topic-template", "test/historian/{asset}", "--channels", ",".join(TAGS)]
        assert main([*argv, *template, *options]) == 0
        for _ in range(200):
            if len(got) >= ROWS:
                break
            threading.Event().wait(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert f"read     {plant['day']}: long table" in capsys.readouterr().out
    assert len(got) == ROWS
    first, last = json.loads(got[0].payload), json.loads(got[-1].payload)
    readings = _readings(2)
    assert first["ts"] == START.timestamp()
    assert first["values"] == dict(zip(TAGS, readings.loc[0, list(TAGS)], strict=True))
    assert last["ts"] == START.timestamp() + (ROWS - 1) * PERIOD_S
