"""``aewatch train --per-asset``: a folder of exports in, a folder of bundles out, served whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
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


def _fleet_export(folder: Path, *seeds: int) -> Path:
    """One long export (timestamp, asset, tag, value; ';'-separated, decimal commas) holding
    a simulated well per seed, named well-SEED, their rows interleaved as a historian
    writes them."""
    _exports(folder, *seeds)
    frames = []
    for seed in seeds:
        wide = pd.read_csv(folder / f"well-{seed}.csv").drop(columns=["anomaly"], errors="ignore")
        long = wide.melt(id_vars="timestamp", var_name="tag", value_name="value")
        frames.append(long.assign(asset=f"well-{seed}"))
    table = pd.concat(frames).sort_values(["timestamp", "asset", "tag"], kind="stable")
    path = folder / "fleet.csv"
    table[["timestamp", "asset", "tag", "value"]].to_csv(path, sep=";", decimal=",", index=False)
    return path


def test_one_export_holding_a_fleet_trains_a_model_per_asset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _fleet_export(tmp_path / "history", 1, 2)
    out = tmp_path / "models"
    args = ["train", "--per-asset", "--asset-column", "asset", "--data", str(fleet)]
    code = main([*args, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "training 2 assets" in printed and "[2/2] well-2: ok" in printed
    for seed in (1, 2):
        bundle = ModelBundle.load(out / f"well-{seed}.aew")
        assert bundle.name == f"well-{seed}"
        # The asset column is no channel; a long table's tags come sorted.
        wide = pd.read_csv(tmp_path / "history" / f"well-{seed}.csv", nrows=1)
        assert bundle.channels == tuple(sorted(set(wide.columns) - {"timestamp", "anomaly"}))
    # One asset's rows of the same export, for score and the other readers.
    scored = tmp_path / "scores.csv"
    score = ["score", "--model", str(out / "well-2.aew"), "--data", str(fleet)]
    assert main([*score, "--asset-column", "asset", "--asset", "well-2", "--out", str(scored)]) == 0
    assert len(pd.read_csv(scored)) == len(pd.read_csv(tmp_path / "history" / "well-2.csv"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--asset-column", "site"], "has no column 'site' (--asset-column)"),
        (["--asset-column", "asset", "--asset", "well-1"], "leave out --asset"),
    ],
)
def test_a_fleet_export_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    fleet = _fleet_export(tmp_path / "history", 4)
    args = ["train", "--per-asset", "--data", str(fleet), "--out", str(tmp_path / "m"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_an_asset_the_column_does_not_name_is_refused_naming_those_it_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _fleet_export(tmp_path / "history", 5)
    args = ["train", "--data", str(fleet), "--asset-column", "asset", "--asset", "well-9"]
    assert main([*args, "--out", str(tmp_path / "m.aew")]) == 2
    err = capsys.readouterr().err
    assert "no row has asset = 'well-9' (--asset)" in err and "1 assets: 'well-5'" in err
    assert main(["train", "--data", str(fleet), "--asset", "well-5", "--out", "x.aew"]) == 2
    assert "--asset well-5 needs --asset-column" in capsys.readouterr().err
