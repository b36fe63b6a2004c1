"""``aewatch train --per-asset``: a folder of exports in, a folder of bundles out, served whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from aewatch.cli import main
from aewatch.config import ModelConfig
from aewatch.daemon.fleet import load_fleet
from aewatch.model.bundle import ModelBundle


def _exports(folder: Path, *seeds: int) -> None:
    folder.mkdir()
    for seed in seeds:
        simulate = ["simulate", "--scenario", "well", "--hours", "2", "--seed", str(seed)]
        assert main([*simulate, "--out", str(folder / f"well-{seed}.csv")]) == 0


def test_each_asset_gets_its_bundle_and_report_and_the_folder_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _exports(tmp_path / "history", 1, 2)
    (tmp_path / "history" / "readme.txt").write_text("not an export")
    out = tmp_path / "models"
    code = main(["train", "--per-asset", "--data", str(tmp_path / "history"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "training 2 assets" in printed
    assert "[1/2] well-1: ok" in printed and "[2/2] well-2: ok" in printed
    assert f"serve them with a models entry `- dir: {out}`" in printed
    for asset in ("well-1", "well-2"):
        assert ModelBundle.load(out / f"{asset}.aew").name == asset
        assert (out / f"{asset}.aew.report" / "index.html").is_file()
    fleet = load_fleet([ModelConfig(dir=out)])
    assert [m.name for m in fleet.models] == ["well-1", "well-2"]


def test_an_asset_that_fails_is_named_and_the_others_still_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _exports(tmp_path / "history", 3)
    (tmp_path / "history" / "pump-9.csv").write_text("timestamp,flow\n")
    out = tmp_path / "models"
    code = main(["train", "--per-asset", "--data", str(tmp_path / "history"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "pump-9: FAILED: " in printed and "pump-9.csv" in printed
    assert "1 of 2 assets failed: pump-9" in printed
    assert (out / "well-3.aew").is_file()
    assert not (out / "pump-9.aew").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "x"], "leave out --name"),
        (["--data", "other"], "takes one --data"),
    ],
)
def test_per_asset_refuses_what_it_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "history").mkdir()
    args = ["train", "--per-asset", "--data", str(tmp_path / "history"), "--out", str(tmp_path)]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_with_no_export_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "history").mkdir()
    args = ["train", "--per-asset", "--data", str(tmp_path / "history"), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "holds no .csv, .parquet, .pq file" in capsys.readouterr().err
