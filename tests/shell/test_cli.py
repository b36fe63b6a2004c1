"""The command line end to end on a tiny simulated plant: simulate, train, score, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle


def _ok(*argv: str) -> None:
    assert main(list(argv)) == 0


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plant")
    paths = {"history": d / "history.csv", "day": d / "day.csv", "model": d / "well.aew"}
    sim = ("simulate", "--scenario", "well", "--period", "10")
    _ok(*sim, "--hours", "12", "--seed", "1", "--out", str(paths["history"]))
    _ok(
        *sim,
        "--hours",
        "6",
        "--seed",
        "2",
        "--start",
        "2026-01-02T00:00:00Z",
        "--out",
        str(paths["day"]),
    )
    # One unmistakable fault: wellhead pressure 3 bar high for half an hour, labelled.
    day = pd.read_csv(paths["day"])
    fault = slice(720, 900)
    day.loc[fault, "whp_bar"] += 3.0
    day.loc[fault, "anomaly"] = 1
    day.to_csv(paths["day"], index=False)
    _ok("train", "--data", str(paths["history"]), "--out", str(paths["model"]), "--quiet")
    return paths


def test_train_writes_bundle_and_report(plant: dict[str, Path]) -> None:
    bundle = ModelBundle.load(plant["model"])
    assert bundle.channels == ("flow_kg_s", "whp_bar", "wht_c", "vibration_mm_s")
    report = plant["model"].with_name("well.aew.report")
    for name in (
        "index.html",
        "summary.json",
        "learning.png",
        "calibration.png",
        "reconstructions.png",
    ):
        assert (report / name).stat().st_size > 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["false_alerts_per_day_at_most"] >= 0
    assert summary["version"] == bundle.version


def test_one_epoch_dense_round_trips_and_scores(plant: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "dense.aew"
    assert (
        main(
            [
                "train",
                "--data",
                str(plant["history"]),
                "--out",
                str(model),
                "--arch",
                "dense",
                "--epochs",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "scores.csv"
    assert (
        main(["score", "--model", str(model), "--data", str(plant["day"]), "--out", str(out)]) == 0
    )
    assert pd.read_csv(out)["score"].notna().sum() > 0


def test_score_columns(plant: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(plant["model"]),
                "--data",
                str(plant["day"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "timestamp",
        "score",
        "threshold",
        "anomaly",
        "err_flow_kg_s",
        "err_whp_bar",
        "err_wht_c",
        "err_vibration_mm_s",
    ]
    assert len(frame) == 6 * 360
    window = ModelBundle.load(plant["model"]).window_len
    assert frame["score"].iloc[: window - 1].isna().all()  # the first window fills
    assert (frame["anomaly"].iloc[: window - 1] == 0).all()
    assert frame["score"].iloc[window - 1 :].notna().all()
    assert set(frame["anomaly"].unique()) <= {0, 1}


def test_evaluate_json_finds_the_step(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(plant["model"]),
                "--data",
                str(plant["day"]),
                "--json",
                "--plot-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for key in ("f1", "far", "mar", "event_precision", "event_recall"):
        assert 0.0 <= result[key] <= 1.0
    assert result["event_recall"] == 1.0  # one injected step, and it is found
    assert (tmp_path / "day-evaluation.png").stat().st_size > 0


def test_bad_input_exits_2_with_a_message(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    rows = "".join(f"2026-01-01T00:00:0{i}Z,{i}\n" for i in range(5))
    bad.write_text("timestamp,a\n" + rows + "2026-01-01T00:00:05Z,oops\n")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "m.aew")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:7" in err and "'a'" in err and "oops" in err
    other = tmp_path / "other.csv"
    other.write_text("timestamp,x\n" + "".join(f"{i},{i}\n" for i in range(50)))
    assert (
        main(
            [
                "score",
                "--model",
                str(plant["model"]),
                "--data",
                str(other),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    assert "flow_kg_s" in capsys.readouterr().err


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aewatch", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("aewatch ")
