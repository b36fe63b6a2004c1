"""The detectability table of a model trained on a simulated day of a well, and its CLI."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import read_tables
from aewatch.model.detectability import (
    Detectability,
    DetectabilityRow,
    detectability,
    noise_levels,
)
from aewatch.model.offline import score_many, score_table
from aewatch.model.train import TrainSettings, held_out_blocks
from aewatch.sim import simulate, write_csv
from aewatch.sim.inject import SIZED_KINDS, FaultSite, inject_sized

# A day at 10 s: just enough held-out history (6 h) for the channel checks and 7 placements.
HOURS, PERIOD_S, SEED = 24.0, 10.0, 5


@dataclass(frozen=True)
class Plant:
    history: Path
    model: Path
    printed: str  # what `aewatch train` printed
    bundle: ModelBundle
    held_out: list[npt.NDArray[np.float32]]
    stored: Detectability  # the table training wrote to summary.json


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Plant:
    folder = tmp_path_factory.mktemp("well")
    history, model = folder / "history.csv", folder / "well.aew"
    write_csv(simulate("well", hours=HOURS, period_s=PERIOD_S, seed=SEED), history)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--data", str(history), "--out", str(model), "--quiet"]) == 0
    bundle = ModelBundle.load(model)
    tables = read_tables([history], channels=list(bundle.channels))
    held_out = held_out_blocks(tables, TrainSettings(), period_s=bundle.period_s)
    summary = json.loads((folder / "well.aew.report" / "summary.json").read_text())
    stored = Detectability.from_json(summary["detectability"])
    return Plant(history, model, printed.getvalue(), bundle, held_out, stored)


def _row(table: Detectability, kind: str, channel: str) -> DetectabilityRow:
    return next(r for r in table.rows if r.kind == kind and r.channel == channel)


def test_a_large_step_is_raised_at_every_placement(plant: Plant) -> None:
    table = plant.stored
    assert table.placements >= 3, table.note
    assert len(table.rows) == len(SIZED_KINDS) * len(plant.bundle.channels)
    for channel in ("whp_bar", "wht_c", "vibration_mm_s"):
        row = _row(table, "step", channel)
        largest = row.trials[0]
        assert largest.size == 8.0
        assert largest.raised == table.placements, row.sentence()
        assert row.smallest is not None
        assert row.sentence().startswith(f"step on {channel}: raised from ")


def test_a_fault_of_size_zero_is_never_raised(plant: Plant) -> None:
    # The clean copies: whatever the table counts as raised comes from the fault.
    clean = detectability(plant.bundle, plant.held_out, sizes=(0.0,))
    sized = [r for r in clean.rows if r.kind != "stuck"]
    assert len(sized) == (len(SIZED_KINDS) - 1) * len(plant.bundle.channels)
    for row in sized:
        assert [t.raised for t in row.trials] == [0], row.sentence()
        assert row.smallest is None


def test_score_many_gives_what_score_table_gives_each_block(plant: Plant) -> None:
    bundle = plant.bundle
    clean = np.asarray(plant.held_out[0][:400], dtype=np.float64)
    noise, _ = noise_levels(bundle, plant.held_out)
    site = FaultSite(
        values=clean[150:330],
        clean=clean[150:330],
        noise=np.zeros((180, len(bundle.channels))),
        before=clean[149],
        scale=noise,
        column=bundle.channels.index("whp_bar"),
        period_s=PERIOD_S,
    )
    faulty = clean.copy()
    faulty[150:330] = inject_sized("step", np.random.default_rng(1), site, size=8.0)
    start_s = 1_767_225_600.0
    fleet = score_many(bundle, [clean, faulty, clean], start_s=start_s)
    table = read_tables([plant.history], channels=list(bundle.channels))[0]
    for events, values in zip(fleet, [clean, faulty, clean], strict=True):
        alone = score_table(
            bundle,
            type(table)(
                "block",
                start_s + PERIOD_S * np.arange(len(values)),
                values,
                bundle.channels,
                None,
                None,
                np.arange(1, len(values) + 1),
            ),
        ).events
        assert [(e.state, e.at, e.kind) for e in events] == [(e.state, e.at, e.kind) for e in alone]
    assert fleet[1], "an 8-noise-level step on whp_bar raises an alert"


def test_too_short_a_history_says_so(plant: Plant) -> None:
    table = detectability(plant.bundle, [plant.held_out[0][:100]])
    assert table.rows == ()
    assert "placement needs" in table.note
    assert table.grid() == [f"not measured: {table.note}"]


def test_a_spent_time_budget_leaves_rows_unmeasured_and_says_so(plant: Plant) -> None:
    table = detectability(plant.bundle, plant.held_out, time_budget_s=0.0)
    assert table.rows and all(not r.trials and not r.is_complete for r in table.rows)
    assert "time budget of 0 s ran out" in table.note
    assert table.rows[0].sentence().endswith("not measured (the time budget ran out first)")
    assert set(" ".join(table.grid()[1:]).split()) - set(plant.bundle.channels) == {"?"}


def test_train_prints_the_grid_and_the_report_holds_the_sentences(plant: Plant) -> None:
    assert "detect   smallest fault raised" in plant.printed
    for channel in plant.bundle.channels:
        assert f"\n         {channel} " in plant.printed
    index = (plant.model.parent / "well.aew.report" / "index.html").read_text()
    assert "What the model catches" in index
    assert "step on whp_bar: raised from " in index


def test_report_prints_the_stored_table_and_measures_the_same_one(
    plant: Plant, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(plant.model)]) == 0
    printed = capsys.readouterr().out
    for sentence in plant.stored.sentences():
        assert sentence in printed
    # Measured again with the same seed on the held-out part cut again from the file: the
    # same table, so the cut is training's and the measurement deterministic.
    assert main(["report", str(plant.model), "--data", str(plant.history), "--json"]) == 0
    measured = Detectability.from_json(json.loads(capsys.readouterr().out))
    assert measured == plant.stored
    assert measured.seed == 0


def test_report_without_a_table_says_how_to_get_one(
    plant: Plant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "copy.aew"
    shutil.copy(plant.model, model)
    assert main(["report", str(model)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "copy.aew.report").mkdir()
    (tmp_path / "copy.aew.report" / "summary.json").write_text('{"detectability": null}')
    assert main(["report", str(model)]) == 2
    err = capsys.readouterr().err
    assert "no detectability table" in err and "--data HISTORY.csv" in err


def test_train_no_detectability_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history, model = tmp_path / "history.csv", tmp_path / "short.aew"
    write_csv(simulate("well", hours=2.0, period_s=PERIOD_S, seed=SEED), history)
    argv = ["train", "--data", str(history), "--out", str(model), "--quiet"]
    assert main([*argv, "--no-detectability"]) == 0
    assert "detect   " not in capsys.readouterr().out
    summary = json.loads((tmp_path / "short.aew.report" / "summary.json").read_text())
    assert summary["detectability"] is None
