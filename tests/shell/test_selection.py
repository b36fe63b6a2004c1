"""Training chooses the shift check's allowance from the history by injected faults."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from aewatch.cli import main
from aewatch.model.bundle import ModelBundle
from aewatch.model.calibrate import recalibrate_bundle
from aewatch.model.dataset import Table, read_tables
from aewatch.model.detectability import caught
from aewatch.model.selection import MARGIN, Candidate, Selection, choose
from aewatch.model.train import (
    SHIFT_K,
    SHIFT_K_CANDIDATES,
    TrainOutcome,
    TrainSettings,
    train_bundle,
)
from aewatch.sim import simulate, write_csv

# A day at 10 s: 6 h held out, enough for the checks (2 000 samples) and the placements.
HOURS, PERIOD_S, SEED = 24.0, 10.0, 5


def _table(tmp_path: Path, hours: float = HOURS) -> Table:
    path = tmp_path / "history.csv"
    write_csv(simulate("well", hours=hours, period_s=PERIOD_S, seed=SEED), path)
    return read_tables([path])[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    return train_bundle([_table(tmp_path_factory.mktemp("well"))], TrainSettings())


def _candidate(k: float, raised: int, false_alerts: int | None, tried: int = 400) -> Candidate:
    return Candidate(k, raised, tried, 60.0, false_alerts, 2.0)


def test_the_default_stands_unless_another_catches_clearly_more() -> None:
    default = _candidate(1.0, 200, 1)
    barely = round(200 + MARGIN * 400) - 1
    assert choose([default, _candidate(0.5, barely, 1)])[0] == 1.0
    assert choose([default, _candidate(0.5, barely + 2, 1)])[0] == 0.5
    assert choose([default, _candidate(0.5, 190, 0)])[0] == 1.0  # fewer caught


def test_a_candidate_with_more_held_out_false_alerts_is_never_chosen() -> None:
    default = _candidate(1.0, 200, 1)
    assert choose([default, _candidate(0.5, 300, 2)])[0] == 1.0
    assert choose([default, _candidate(0.5, 300, None)])[0] == 1.0
    k, reason = choose([_candidate(1.0, 200, None), _candidate(0.5, 300, 0)])
    assert k == 1.0 and "too little held-out history" in reason


def test_nothing_to_inject_into_keeps_the_default() -> None:
    k, reason = choose([_candidate(1.0, 0, 0, tried=0), _candidate(0.5, 0, 0, tried=0)])
    assert k == 1.0 and "no quiet held-out stretch" in reason


def test_training_measures_every_candidate_and_ships_the_chosen_one(
    trained: TrainOutcome,
) -> None:
    selection = trained.selection
    assert selection is not None
    assert [c.shift_k for c in selection.candidates] == list(SHIFT_K_CANDIDATES)
    tried = {c.tried for c in selection.candidates}
    assert len(tried) == 1 and tried.pop() > 0  # the same faults for every candidate
    assert all(c.false_alerts is not None for c in selection.candidates)
    assert trained.bundle.decision["checks"]["k"] == selection.shift_k
    assert trained.bundle.provenance["settings"]["shift_k"] == selection.shift_k
    assert trained.bundle.provenance["selection"]["shift_k"] == selection.shift_k
    expected, _ = choose(selection.candidates)
    assert selection.shift_k == expected


def test_caught_compares_models_on_the_same_faults(trained: TrainOutcome) -> None:
    bundle = trained.bundle
    blind = replace(bundle, decision={**bundle.decision, "checks": None})  # window error only
    (same, twin, without), note = caught([bundle, bundle, blind], list(trained.held_out_rows))
    assert same == twin, note  # same placements, same faults: same outcome
    assert same.tried == without.tried > 0
    assert without.raised < same.raised  # the checks catch what the window error misses


def test_caught_measures_fewer_placements_or_none_within_its_time_budget(
    trained: TrainOutcome,
) -> None:
    bundle, rows = trained.bundle, list(trained.held_out_rows)
    (full,), _ = caught([bundle], rows)
    (none,), note = caught([bundle], rows, time_budget_s=1e-6)
    assert none.tried == 0 and none.raised == 0
    assert "time budget" in note and "none measured" in note
    assert full.tried > 0


def test_no_time_to_choose_keeps_the_default(tmp_path: Path) -> None:
    table = _table(tmp_path)
    skipped = train_bundle([table], TrainSettings(select_budget_s=0.0))
    assert skipped.selection is None
    assert skipped.bundle.decision["checks"]["k"] == SHIFT_K
    rushed = train_bundle([table], TrainSettings(select_budget_s=1e-6))
    assert rushed.selection is not None and rushed.selection.shift_k == SHIFT_K
    assert "nothing measured" in rushed.selection.reason
    assert all(c.tried == 0 for c in rushed.selection.candidates)
    with pytest.raises(ValueError, match="time budget"):
        TrainSettings(select_budget_s=-1.0)


def test_a_given_allowance_is_used_as_given(tmp_path: Path) -> None:
    outcome = train_bundle([_table(tmp_path)], TrainSettings(shift_k=0.5))
    assert outcome.selection is None
    assert outcome.bundle.decision["checks"]["k"] == 0.5
    assert "selection" not in outcome.bundle.provenance


def test_a_history_too_short_for_the_checks_is_not_chosen_for(tmp_path: Path) -> None:
    outcome = train_bundle([_table(tmp_path, hours=6.0)], TrainSettings())
    assert outcome.selection is None
    assert outcome.bundle.provenance["settings"]["shift_k"] == SHIFT_K


def test_recalibration_keeps_the_chosen_allowance(tmp_path: Path) -> None:
    table = _table(tmp_path)
    bundle = train_bundle([table], TrainSettings(shift_k=0.5)).bundle
    again = recalibrate_bundle(bundle, [table], created_at="2026-12-07T00:00:00Z").bundle
    assert again.decision["checks"]["k"] == 0.5
    assert again.decision["checks"]["shift_limit"] != bundle.decision["checks"]["shift_limit"]


def test_train_prints_and_reports_the_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history, model = tmp_path / "history.csv", tmp_path / "well.aew"
    write_csv(simulate("well", hours=HOURS, period_s=PERIOD_S, seed=SEED), history)
    assert main(["train", "--data", str(history), "--out", str(model), "--quiet"]) == 0
    trained = capsys.readouterr().out
    chosen = next(line for line in trained.splitlines() if line.startswith("chosen"))
    k = ModelBundle.load(model).decision["checks"]["k"]
    assert chosen.startswith(f"chosen   shift k {k:g} (")
    summary = json.loads((tmp_path / "well.aew.report" / "summary.json").read_text())
    assert summary["provenance"]["selection"]["shift_k"] == k
    html = (tmp_path / "well.aew.report" / "index.html").read_text()
    assert "Settings chosen from the data" in html
    assert main(["report", str(model)]) == 0  # prints the choice again, from the bundle
    assert chosen in capsys.readouterr().out.splitlines()


def test_a_selection_survives_json(trained: TrainOutcome) -> None:
    selection = trained.selection
    assert selection is not None
    again = Selection.from_json(json.loads(json.dumps(selection.to_json())))
    assert again.candidates == selection.candidates
    assert (again.shift_k, again.reason) == (selection.shift_k, selection.reason)
