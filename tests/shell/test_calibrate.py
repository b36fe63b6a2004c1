"""``aewatch calibrate`` end to end: a trained bundle, its history, a recalibrated bundle."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle
from aewatch.model.calibrate import recalibrate_bundle
from aewatch.model.dataset import read_table
from aewatch.model.offline import score_table

FPR = 0.01  # the model's: its 711 calibration windows give a stable chi2 fit
HOURS, PERIOD_S = 48, 60


def _ok(*argv: str) -> None:
    assert main(list(argv)) == 0


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("calibrate")
    paths = {"history": d / "history.csv", "model": d / "well.aew"}
    _ok(
        *("simulate", "--scenario", "well", "--period", str(PERIOD_S), "--hours", str(HOURS)),
        *("--seed", "1", "--out", str(paths["history"])),
    )
    _ok(
        *("train", "--data", str(paths["history"]), "--out", str(paths["model"])),
        *("--fpr", str(FPR), "--quiet"),
    )
    return paths


def _calibrate(plant: dict[str, Path], out: Path, *extra: str) -> ModelBundle:
    _ok("calibrate", "--model", str(plant["model"]), "--out", str(out), *extra)
    return ModelBundle.load(out)


def test_training_calibration_rows_give_training_threshold_exactly(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Training calibrates on the newest quarter of the rows; recalibrating on just those
    # rows must reproduce its threshold and drift-baseline seed to the last bit.
    lines = plant["history"].read_text().splitlines(keepends=True)
    rows = len(lines) - 1
    newest = tmp_path / "newest.csv"
    newest.write_text(lines[0] + "".join(lines[1 + round(rows * 0.75) :]))
    old = ModelBundle.load(plant["model"])
    new = _calibrate(plant, tmp_path / "new.aew", "--data", str(newest))
    assert new.threshold == old.threshold
    assert new.decision == old.decision
    assert new.version != old.version  # the provenance records the recalibration
    assert "warning" not in capsys.readouterr().out  # the network did not fit these rows


def test_whole_training_history_gives_nearly_the_same_threshold(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = ModelBundle.load(plant["model"])
    capsys.readouterr()
    new = _calibrate(plant, tmp_path / "new.aew", "--data", str(plant["history"]))
    out = capsys.readouterr().out
    assert new.threshold.fpr == FPR
    # The whole history holds the rows the network fitted, and its 2871 windows are read
    # by their quantile where training fitted 711 with chi2: within 15 % (10.4 → 9.06 with
    # the 13 components the noise rule keeps here; 2.875 → 2.929 with the 2 of the 80 %
    # variance rule it replaced).
    assert new.threshold.value == pytest.approx(old.threshold.value, rel=0.15)
    assert f"{old.threshold.value:.4g} → {new.threshold.value:.4g}" in out
    assert "false alerts/day" in out
    fitted = round(HOURS * 3600 // PERIOD_S * 0.75)  # the rows training fitted the network on
    assert f"warning   {fitted} of {HOURS * 3600 // PERIOD_S} rows lie in the part" in out
    assert "Calibrate on normal history from after 2026-01-02 11:59:00 UTC" in out  # 36 h in
    assert "fitted on (up to 2026-01-02 11:59:00 UTC)" in out  # exact: the bundle records it
    assert old.provenance["fitted"] == {
        "first": "2026-01-01T00:00:00Z",
        "last": "2026-01-02T11:59:00Z",
        "rows": fitted,
    }
    assert f"from {plant['model']}: version {old.version} → {new.version}" in out
    windows = HOURS * 3600 // PERIOD_S - old.window_len + 1
    assert f"→ {windows} normal windows" in out


def test_a_bundle_without_the_fitted_record_gets_an_estimate(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Bundles trained before training recorded the fitted rows' span: the time comes from
    # the training file's span and row count, and the warning says it is an estimate.
    old = ModelBundle.load(plant["model"])
    provenance = {k: v for k, v in old.provenance.items() if k != "fitted"}
    older = tmp_path / "older.aew"
    replace(old, provenance=provenance).save(older)
    capsys.readouterr()
    _ok("calibrate", "--model", str(older), "--out", str(tmp_path / "new.aew"),
        "--data", str(plant["history"]))  # fmt: skip
    assert "fitted on (up to about 2026-01-02 11:59:00 UTC)" in capsys.readouterr().out


def test_lower_fpr_gives_a_higher_threshold(plant: dict[str, Path], tmp_path: Path) -> None:
    data = ("--data", str(plant["history"]))
    usual = _calibrate(plant, tmp_path / "usual.aew", *data)
    strict = _calibrate(plant, tmp_path / "strict.aew", *data, "--fpr", str(FPR / 10))
    assert strict.threshold.fpr == FPR / 10
    assert strict.threshold.value > usual.threshold.value


def test_result_loads_like_the_daemon_and_scores(plant: dict[str, Path], tmp_path: Path) -> None:
    old = ModelBundle.load(plant["model"])
    new = _calibrate(plant, tmp_path / "new.aew", "--data", str(plant["history"]))
    # Same network and scaler, new threshold and seed.
    for key, tensor in old.network.state_dict().items():
        assert torch.equal(tensor, new.network.state_dict()[key])
    assert new.scaler.to_json() == old.scaler.to_json()
    assert (new.channels, new.window_len, new.hop, new.period_s) == (
        old.channels,
        old.window_len,
        old.hop,
        old.period_s,
    )
    assert len(new.decision["adaptation"]["seed"]) == old.decision["adaptation"]["depth"]
    # The provenance keeps training's and adds the recalibration.
    assert new.provenance["data"] == old.provenance["data"]
    (entry,) = new.provenance["recalibrations"]
    assert entry["previous_version"] == old.version
    assert entry["previous_threshold"] == old.threshold.to_json()
    assert entry["data"][0]["file"] == "history.csv"
    assert entry["data"][0]["sha256"] == old.provenance["data"][0]["sha256"]
    assert entry["counts"]["rows"] == HOURS * 3600 // PERIOD_S
    # A second recalibration appends to the list.
    again = tmp_path / "again.aew"
    _ok(
        *("calibrate", "--model", str(tmp_path / "new.aew")),
        *("--data", str(plant["history"]), "--out", str(again)),
    )
    assert len(ModelBundle.load(again).provenance["recalibrations"]) == 2
    scores = tmp_path / "scores.csv"
    _ok(
        *("score", "--model", str(tmp_path / "new.aew")),
        *("--data", str(plant["history"]), "--out", str(scores)),
    )
    frame = pd.read_csv(scores)
    assert frame["score"].notna().sum() == HOURS * 3600 // PERIOD_S - old.window_len + 1


def test_labelled_rows_are_left_out(plant: dict[str, Path]) -> None:
    bundle = ModelBundle.load(plant["model"])
    table = read_table(plant["history"])
    labels = np.zeros(len(table.timestamps), dtype=np.int8)
    labels[1000:1100] = 1
    values = table.values.copy()
    values[1000:1100] += 1e3  # a fault the threshold must never see
    faulty = replace(table, values=values, labels=labels)
    clean = recalibrate_bundle(bundle, [table], created_at="2026-01-03T00:00:00Z")
    result = recalibrate_bundle(bundle, [faulty], created_at="2026-01-03T00:00:00Z")
    w = bundle.window_len
    assert result.counts["anomalous_rows"] == 100
    assert result.counts["windows"] == (1000 - w + 1) + (len(labels) - 1100 - w + 1)
    assert math.isfinite(result.bundle.threshold.value)
    assert result.bundle.threshold.value == pytest.approx(clean.bundle.threshold.value, rel=0.1)


def test_missing_channel_exits_2_naming_file_and_column(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.csv"
    pd.read_csv(plant["history"]).drop(columns=["whp_bar"]).to_csv(other, index=False)
    out = tmp_path / "new.aew"
    argv = ["calibrate", "--model", str(plant["model"]), "--data", str(other), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other.csv" in err and "'whp_bar'" in err and "aewatch train" in err
    assert not out.exists()


def test_too_few_windows_exits_2_naming_file_and_fix(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = plant["history"].read_text().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:31]))  # 30 rows: 21 windows of 10
    out = tmp_path / "new.aew"
    argv = ["calibrate", "--model", str(plant["model"]), "--data", str(short), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "short.csv" in err and "got 21" in err and "longer stretch" in err
    assert not out.exists()


def test_fpr_out_of_range_is_a_usage_error(plant: dict[str, Path], tmp_path: Path) -> None:
    argv = ["calibrate", "--model", str(plant["model"]), "--data", str(plant["history"])]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x.aew"), "--fpr", "1.5"])
    assert exit_info.value.code == 2


def test_a_long_enough_history_recalibrates_the_channel_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A day of history trains the checks; a noisier day recalibrates their noise levels."""
    sim = ("simulate", "--scenario", "well", "--period", "10", "--hours", "24")
    history, later = tmp_path / "history.csv", tmp_path / "later.csv"
    assert main([*sim, "--seed", "1", "--out", str(history)]) == 0
    assert main([*sim, "--seed", "2", "--start", "2026-01-02T00:00:00Z", "--out", str(later)]) == 0
    frame = pd.read_csv(later)
    frame["whp_bar"] += np.random.default_rng(0).normal(
        0.0, 0.1, len(frame)
    )  # noisier, still normal
    frame.to_csv(later, index=False)
    model = tmp_path / "well.aew"
    assert main(["train", "--data", str(history), "--out", str(model), "--quiet"]) == 0
    capsys.readouterr()
    target = tmp_path / "recalibrated.aew"
    assert (
        main(["calibrate", "--model", str(model), "--data", str(later), "--out", str(target)]) == 0
    )
    assert "checks    recalibrated on this history" in capsys.readouterr().out
    old = ModelBundle.load(model).decision["checks"]["model"]["noise"]
    new = ModelBundle.load(target).decision["checks"]["model"]["noise"]
    whp = 1  # the channels: flow_kg_s, whp_bar, wht_c, vibration_mm_s
    assert new[whp] > 1.5 * old[whp]
    assert new[0] == pytest.approx(old[0], rel=0.3)


def test_a_short_history_keeps_the_stuck_check(
    plant: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two days at 60 s hold about 700 held-out samples: too few to calibrate the shift,
    noise, range and spikes limits, enough for a stuck transmitter, which needs none."""
    model = tmp_path / "short.aew"
    _ok("train", "--data", str(plant["history"]), "--out", str(model), "--fpr", str(FPR))
    printed = capsys.readouterr().out
    assert "checks   stuck only (after " in printed
    assert "calibrating the other checks' limits takes 2000" in printed
    bundle = ModelBundle.load(model)
    assert bundle.decision["checks"]["kinds"] == ["stuck"]
    frame = pd.read_csv(plant["history"]).tail(360).reset_index(drop=True)
    frame.loc[120:, "whp_bar"] = frame.loc[119, "whp_bar"]  # the transmitter freezes
    frozen = tmp_path / "frozen.csv"
    frame.to_csv(frozen, index=False)
    events = score_table(bundle, read_table(frozen)).events
    raised = [e for e in events if e.state == "raised"]
    assert [(e.kind, e.findings[0].channel) for e in raised] == [("stuck", "whp_bar")]
    start = read_table(frozen).timestamps[120]
    assert 0 < raised[0].at - start <= 2 * 3600  # within the history's longest still run x 2
    # Recalibrated, the checks stay the stuck check alone.
    capsys.readouterr()
    target = tmp_path / "again.aew"
    _ok("calibrate", "--model", str(model), "--data", str(plant["history"]), "--out", str(target))
    assert "checks    stuck only, recalibrated on this history" in capsys.readouterr().out
    assert ModelBundle.load(target).decision["checks"]["kinds"] == ["stuck"]
