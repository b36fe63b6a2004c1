"""``aewatch train --window 100s``: a duration becomes samples at the data's sample period."""

from __future__ import annotations

from pathlib import Path

import pytest

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("durations") / "history.csv"
    argv = ["simulate", "--scenario", "well", "--hours", "12", "--period", "10"]
    assert main([*argv, "--seed", "1", "--out", str(path)]) == 0
    return path


def _train(history: Path, model: Path, *options: str) -> int:
    argv = ["train", "--data", str(history), "--out", str(model), "--quiet"]
    return main([*argv, "--no-detectability", *options])


def test_window_in_time_becomes_samples(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.aew"
    capsys.readouterr()
    assert _train(history, model, "--window", "100s", "--hop", "20 s") == 0
    bundle = ModelBundle.load(model)
    assert (bundle.window_len, bundle.hop, bundle.period_s) == (10, 2, 10.0)
    out = capsys.readouterr().out
    assert "window 10 samples = 100 s, hop 2 samples = 20 s" in out


def test_a_duration_off_the_grid_exits_2_naming_what_works(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.aew"
    capsys.readouterr()
    assert _train(history, model, "--window", "95s") == 2
    err = capsys.readouterr().err
    assert "--window 95s is 9.5 samples at a sample period of 10 s" in err
    assert "90s (9 samples) or 100s (10 samples)" in err
    assert not model.exists()


def test_help_shows_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--window LENGTH window length: a whole number of samples (60) or a duration" in text
    assert "10min" in text and "--hop LENGTH" in text
