"""train and score on a day of simulated well data: the checks, their findings, the envelope."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A day of history (enough held-out samples for the checks) and a model trained on it."""
    d = tmp_path_factory.mktemp("findings")
    paths = {"history": d / "history.csv", "day": d / "day.csv", "model": d / "well.aew"}
    sim = ("simulate", "--scenario", "well", "--period", "10")
    assert main([*sim, "--hours", "24", "--seed", "1", "--out", str(paths["history"])]) == 0
    start = ("--start", "2026-01-02T00:00:00Z")
    assert main([*sim, "--hours", "6", "--seed", "2", *start, "--out", str(paths["day"])]) == 0
    return paths


def test_train_says_what_the_checks_watch_and_the_false_alerts_it_measured(
    plant: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(plant["history"]), "--out", str(plant["model"]), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    checks_line = (
        r"checks   shift, noise, stuck \(after [\d.]+ (s|min|h|d) or more\), range, spikes on 4"
    )
    assert re.search(checks_line, printed)
    assert "false alerts " in printed and "days of held-out normal data" in printed


def test_score_names_the_channel_its_reading_and_the_envelope(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not plant["model"].exists():
        main(["train", "--data", str(plant["history"]), "--out", str(plant["model"]), "--quiet"])
    day = pd.read_csv(plant["day"])
    day.loc[720:900, "whp_bar"] += 40.0  # far outside anything the history holds
    faulty = tmp_path / "day.csv"
    day.to_csv(faulty, index=False)
    capsys.readouterr()
    argv = ["score", "--model", str(plant["model"]), "--data", str(faulty)]
    assert main([*argv, "--out", str(tmp_path / "scores.csv")]) == 0
    printed = capsys.readouterr().out
    assert "warning  whp_bar: " in printed and "outside the training envelope" in printed
    raised = [line for line in printed.splitlines() if " raised " in line and "whp_bar" in line]
    assert raised, printed
    assert "2026-01-02 02:00:00" in raised[0]  # row 720 of a day from midnight, 10 s apart
    assert re.search(r"(range|shift): whp_bar reads", raised[0])


def test_a_clean_day_scores_without_a_warning(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not plant["model"].exists():
        main(["train", "--data", str(plant["history"]), "--out", str(plant["model"]), "--quiet"])
    capsys.readouterr()
    argv = ["score", "--model", str(plant["model"]), "--data", str(plant["day"])]
    assert main([*argv, "--out", str(tmp_path / "scores.csv")]) == 0
    assert "warning" not in capsys.readouterr().out


def test_physical_limits_replace_the_envelope(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A limit tighter than normal operation: a reading above it raises a range alert."""
    high = float(pd.read_csv(plant["day"])["whp_bar"].quantile(0.5))  # half the day is above
    model = tmp_path / "limited.aew"
    argv = ["train", "--data", str(plant["history"]), "--out", str(model), "--quiet"]
    assert main([*argv, "--limits", f"whp_bar=:{high}"]) == 0
    checks = ModelBundle.load(model).decision["checks"]
    assert checks["high"][1] == pytest.approx(high)
    assert checks["low"][1] < high  # the envelope's low side stays
    capsys.readouterr()
    argv = ["score", "--model", str(model), "--data", str(plant["day"])]
    assert main([*argv, "--out", str(tmp_path / "scores.csv")]) == 0
    printed = capsys.readouterr().out
    assert "range: whp_bar reads" in printed and "warning  whp_bar" in printed


def test_a_limit_on_a_channel_the_data_lacks_is_refused(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(plant["history"]), "--out", str(tmp_path / "m.aew")]
    assert main([*argv, "--quiet", "--limits", "whp=0:60"]) == 2
    assert "--limits names channel 'whp', which the data lacks" in capsys.readouterr().err


def test_a_limit_on_an_unknown_channel_is_refused_with_the_checks_off(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(plant["history"]), "--out", str(tmp_path / "m.aew")]
    assert main([*argv, "--quiet", "--no-checks", "--limits", "whp=0:60"]) == 2
    assert "--limits names channel 'whp'" in capsys.readouterr().err
