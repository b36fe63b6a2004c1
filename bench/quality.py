"""Detection quality of the shipped defaults, against the targets that decide whether it is good.

Six cases, every model trained with ``TrainSettings()`` as shipped (no per-data-set
settings; only the progress bar is off) through the Python API the daemon's core runs:
``train_bundle`` fits and calibrates, ``score_table`` scores (grid, windows, scorer,
detector with hysteresis).

1-2. Simulated well and pump: per seed s, a healthy week (``simulate --hours 168
     --period 10 --seed s``) to train on, then the day right after it with one fault of
     each kind (``--faults all --seed s+1000``). A fault is raised when an alert raised
     inside some fault's [start, end + 5 min] is on at some time in its own; a false alert
     is one raised inside none of them. Also per fault kind: that table is what detector
     work aims at.
3.   SKAB, upstream protocol, causal, through ``bench/skab.py``'s functions.
4.   Tennessee Eastman (Braatz): train on d00, detection rate on rows 161-960 of each
     fault file, false rate on d00_te and on rows 1-160 of the fault files.
5.   ``aewatch demo``'s day from the demo's own offline steps, scored offline and judged
     by the demo's own tally.
6.   Each channel of the simulated well and pump on its own, as a single-sensor machine
     streams it, with the sensor faults one channel can show (``quality_single``).

It writes section 5 of bench/RESULTS.md (in place of the old one) and every figure as JSON
into ``--out``. Cases 3-4 are skipped, saying so, where the data root has no skab/ or tep/
(a user's clone has no ../shared).

    .venv/bin/python bench/quality.py [--quick] [--data-root ../shared/data] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import skab  # bench/skab.py
import torch
from quality_report import (
    SECTION,
    CaseResult,
    Figure,
    at_least,
    at_most,
    checkout_commit,
    markdown,
    percent,
    run_record,
    write_section,
)
from quality_sim import simulated_case
from quality_single import single_channel_case

import aewatch
from aewatch.cli import main as aewatch_main
from aewatch.commands import demo
from aewatch.commands.demo.tally import Tally, fault_spans
from aewatch.commands.score import load_for_model
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim import DEFAULT_START_EPOCH_S, parse_faults, simulate
from aewatch.sim import cli as sim_cli

__all__ = ["main"]

BENCH = Path(__file__).resolve().parent

SIM_SEEDS, SIM_SEEDS_QUICK = (0, 1, 2, 3, 4), (0, 1)

SKAB_QUICK_STEP = 3  # quick: every third of the 34 files, from each folder

TEP_PERIOD_S = 180.0
TEP_FAULT_AFTER = 160  # rows 1..160 of a fault file are normal, 161..960 faulty
TEP_CHANNELS = (*(f"xmeas_{i}" for i in range(1, 42)), *(f"xmv_{i}" for i in range(1, 12)))
TEP_FAULTS = tuple(range(1, 22))
TEP_LEFT_OUT = (3, 9, 15)  # barely change the measurements; left out of the mean, as usual

DEMO_MIN_DETECTED = 6  # of the 7 kinds the demo is to inject, stuck among them


def main() -> None:
    """Run the cases in turn, print the section, write it into RESULTS.md and the JSON."""
    args = _arguments()
    torch.set_num_threads(1)  # two shared cores: leave one to the rest of the machine
    mode = "quick" if args.quick else "full"
    # The checkout the imported aewatch comes from (PYTHONPATH may name another one).
    commit = checkout_commit(Path(aewatch.__file__).resolve().parents[2])
    results = [_timed(run_case) for run_case in _cases(args)]
    section = markdown(results, mode=mode, label=args.label, commit=commit)
    print("\n" + section)
    write_section(BENCH / "RESULTS.md", section)
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / f"quality-{mode}.json"
    record.write_text(json.dumps(run_record(results, mode=mode, commit=commit), indent=1) + "\n")
    print(f"wrote bench/RESULTS.md ({SECTION[3:]}) and {record}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and SKAB files")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("../shared/data"),
        help="the folder holding skab/ and tep/ (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "quality")
    parser.add_argument("--label", default="run", help="this run in RESULTS.md, e.g. baseline")
    return parser.parse_args()


def _cases(args: argparse.Namespace) -> list[Callable[[], CaseResult]]:
    seeds = SIM_SEEDS_QUICK if args.quick else SIM_SEEDS
    return [
        lambda: simulated_case("1. simulated well", "well", seeds, settings=_defaults()),
        lambda: simulated_case("2. simulated pump", "pump", seeds, settings=_defaults()),
        lambda: skab_case(args.data_root / "skab", is_quick=args.quick),
        lambda: tep_case(args.data_root / "tep"),
        demo_case,
        lambda: single_channel_case("6. one channel alone", seeds, settings=_defaults()),
    ]


def _timed(run_case: Callable[[], CaseResult]) -> CaseResult:
    started = time.perf_counter()
    result = dataclasses.replace(run_case(), seconds=time.perf_counter() - started)
    print(f"{result.title}: {result.skipped or f'{result.seconds:.1f} s'}", flush=True)
    return result


def _defaults() -> TrainSettings:
    """The shipped defaults; only the progress bar is off (it changes no result)."""
    shipped = TrainSettings()
    return dataclasses.replace(shipped, fit=dataclasses.replace(shipped.fit, show_progress=False))


# -- case 3: SKAB -------------------------------------------------------------------------


def skab_case(root: Path, *, is_quick: bool) -> CaseResult:
    """SKAB's upstream protocol through ``bench/skab.py``: pooled causal F1, FAR, MAR."""
    title = "3. SKAB"
    if not root.is_dir():
        return _skipped(title, root)
    paths = skab.files(root)
    picked = paths[::SKAB_QUICK_STEP] if is_quick else paths
    scope = f"{len(picked)} of {len(paths)} files" + (", quick" if is_quick else "")
    result = skab.run_files(picked, _defaults())
    m = result["causal"]
    figures = (
        at_least("F1, causal", m.f1, 0.85, shown=f"{m.f1:.3f}", target="≥ 0.85"),
        at_most("FAR, causal", m.far, 0.10, shown=percent(m.far, 2), target="≤ 10 %"),
        at_most("MAR, causal", m.mar, 0.20, shown=percent(m.mar, 2), target="≤ 20 %"),
    )
    detail = {
        "files": [f"{p.parent.name}/{p.name}" for p in picked],
        "causal": m.to_dict(),
        "look_ahead": result["look_ahead"].to_dict(),
        "nab_causal": dataclasses.asdict(result["nab_causal"]),
        "nab_look_ahead": dataclasses.asdict(result["nab_look_ahead"]),
        "per_file": result["per_file"],
    }
    return CaseResult(title, scope, figures, (), detail)


# -- case 4: Tennessee Eastman ------------------------------------------------------------


def tep_case(root: Path) -> CaseResult:
    """Train on d00, score d00_te and each fault file on its own; detection and false rates."""
    title = "4. Tennessee Eastman"
    if not root.is_dir():
        return _skipped(title, root)
    bundle = train_bundle([tep_table(root / "d00.dat", is_transposed=True)], _defaults()).bundle
    normal = _tep_flags(bundle, root / "d00_te.dat")
    flags = {k: _tep_flags(bundle, root / f"d{k:02d}_te.dat") for k in TEP_FAULTS}
    detection = {k: float(f[TEP_FAULT_AFTER:].mean()) for k, f in flags.items()}
    before = {k: float(f[:TEP_FAULT_AFTER].mean()) for k, f in flags.items()}
    mean = float(np.mean([d for k, d in detection.items() if k not in TEP_LEFT_OUT]))
    false_d00 = float(normal.mean())
    false_before = float(np.mean(list(before.values())))  # equal row counts: the pooled share
    n_mean = len(TEP_FAULTS) - len(TEP_LEFT_OUT)
    figures = (
        at_least(
            f"mean detection, {n_mean} faults", mean, 0.935, shown=percent(mean), target="≥ 93.5 %"
        ),
        at_most("false rate, d00_te", false_d00, 0.01, shown=percent(false_d00, 2), target="≤ 1 %"),
        at_most(
            "false rate, rows 1-160",
            false_before,
            0.01,
            shown=percent(false_before, 2),
            target="≤ 1 %",
        ),
    )
    table = _tep_fault_table(detection, before)
    detail = {
        "left_out_of_mean": list(TEP_LEFT_OUT),
        "detection": detection,
        "false_rows_1_160": before,
    }
    return CaseResult(
        title, "trained on d00; d00_te and d01-d21_te scored", figures, (table,), detail
    )


def tep_table(path: Path, *, is_transposed: bool) -> Table:
    """A TEP file as a ``Table`` of rows ``(n, 52)``, 3 minutes apart from the sim's epoch.

    Raises:
        SystemExit: the file does not hold 52 variables.
    """
    values = np.loadtxt(path, dtype=np.float64)
    values = values.T if is_transposed else values
    if values.ndim != 2 or values.shape[1] != len(TEP_CHANNELS):
        raise SystemExit(
            f"{path} reads as {values.shape}, not (rows, 52); d00.dat is stored transposed "
            "(52 x 500) and the *_te.dat files as 960 x 52 (see tep/README.md)"
        )
    n = len(values)
    return Table(
        source=str(path),
        timestamps=DEFAULT_START_EPOCH_S + TEP_PERIOD_S * np.arange(n, dtype=np.float64),
        values=values,
        channels=TEP_CHANNELS,
        labels=None,
        changepoints=None,
        lines=np.arange(1, n + 1, dtype=np.int64),
    )


def _tep_fault_table(detection: dict[int, float], before: dict[int, float]) -> str:
    """Markdown: per fault, the share of rows 161-960 and of rows 1-160 flagged."""
    rows = [
        f"| {k}{' (not in the mean)' if k in TEP_LEFT_OUT else ''} | {percent(detection[k])} "
        f"| {percent(before[k])} |"
        for k in detection
    ]
    head = "| fault | rows 161-960 flagged (detection) | rows 1-160 flagged (false) |"
    return "\n".join(["Tennessee Eastman per fault:", "", head, "|---|---|---|", *rows])


def _tep_flags(bundle: ModelBundle, path: Path) -> npt.NDArray[np.int8]:
    """Each row's alert state ``(n,)`` when ``path`` is scored on its own."""
    return score_table(bundle, tep_table(path, is_transposed=False)).anomaly


# -- case 5: the demo's day ---------------------------------------------------------------


def demo_case() -> CaseResult:
    """Run the demo's offline steps (simulate, train, simulate), score the day, tally it."""
    with tempfile.TemporaryDirectory(prefix="aewatch-quality-demo-") as folder:
        args = _demo_arguments(Path(folder))
        files = demo._Files.under(args.out, args.scenario)
        steps = demo._offline_steps(args, files)
        for _, argv in steps:
            _run_quietly(argv)
        bundle = ModelBundle.load(files.model)
        table = load_for_model(bundle, str(files.day))
        events = score_table(bundle, table, asset=args.scenario).events
    assert table.labels is not None  # the simulator always writes the anomaly column
    tally = Tally.of(
        fault_spans(table.timestamps, table.labels), [(e.alert_id, e.state, e.at) for e in events]
    )
    kinds = _demo_kinds(steps, tally.faults)
    caught = [k for k, ids in zip(kinds, tally.detected_by, strict=True) if ids]
    has_stuck = "stuck" in kinds
    n_false = len(tally.false_alerts)
    figures = (
        Figure(
            "faults detected",
            f"{len(caught)} of {len(kinds)}" + ("" if has_stuck else " (stuck not injected)"),
            f"≥ {DEMO_MIN_DETECTED}, stuck injected",
            len(caught) >= DEMO_MIN_DETECTED and has_stuck,
            len(caught),
        ),
        at_most("false alerts", n_false, 0, shown=str(n_false), target="0"),
    )
    detail = {
        "steps": [" ".join(argv) for _, argv in steps],
        "faults": [
            {"kind": k, "first_s": first, "last_s": last, "detected_by": list(ids)}
            for k, (first, last), ids in zip(kinds, tally.faults, tally.detected_by, strict=True)
        ],
        "alerts": {a: list(span) for a, span in tally.alerts.items()},
        "false_alerts": list(tally.false_alerts),
    }
    missed = ", ".join(k for k in kinds if k not in caught) or "none"
    return CaseResult("5. demo day", f"{args.scenario} day; missed: {missed}", figures, (), detail)


def _demo_arguments(out: Path) -> argparse.Namespace:
    """``aewatch demo``'s arguments at their defaults, writing under ``out``."""
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", "--out", str(out)])


def _run_quietly(argv: list[str]) -> None:
    """Run one ``aewatch`` command line; show its output only when it fails."""
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        status = aewatch_main(argv)
    if status != 0:
        raise SystemExit(f"aewatch {' '.join(argv)} exited {status}:\n{said.getvalue()}")


def _demo_kinds(
    steps: Sequence[tuple[str, list[str]]], spans: Sequence[tuple[float, float]]
) -> list[str]:
    """The kind of each labelled span of the demo's day, from the simulation its step ran."""
    parser = argparse.ArgumentParser()
    sim_cli.register(parser.add_subparsers())
    sims = [parser.parse_args(argv) for _, argv in steps if argv[0] == "simulate"]
    day = next(a for a in sims if a.faults)
    stream = simulate(
        day.scenario,
        hours=day.hours,
        period_s=day.period,
        faults=parse_faults(day.faults),
        seed=day.seed,
        start_epoch_s=day.start,
    )
    t0 = float(stream.timestamps[0])
    return [
        next(f.kind for f in stream.faults if t0 + f.start_s <= first < t0 + f.end_s)
        for first, _ in spans
    ]


def _skipped(title: str, root: Path) -> CaseResult:
    reason = f"skipped: no {root} (the data sets live in the project's ../shared/data)"
    return CaseResult(title, "", skipped=reason)


if __name__ == "__main__":
    main()
