"""SKAB benchmark with the upstream protocol, scored causally by the code the daemon runs.

Per labelled file (34): the first 400 rows are training data (no labels used), the rest is
the test part. ``aewatch``'s own training recipe (``train_bundle``) fits and calibrates a
model on those 400 rows; ``score_table`` (the daemon's path: grid, windows, scorer,
detector with hysteresis) flags each test row from windows ending at or before it.
Point-wise F1 / FAR / MAR pool the 34 test parts (upstream rule 4); the NAB changepoint
score uses the ``changepoint`` column (rule 5).

The upstream Conv-AE rule, "flag a point only when every window covering it exceeds the
limit", needs the windows ending up to ``window−1`` rows later: it is reported too, as
"look-ahead", to compare like with like, but our number is the causal one.

    .venv/bin/python bench/skab.py --data ../shared/data/skab
    .venv/bin/python bench/skab.py --data ../shared/data/skab --set arch=dense --set window_len=30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aewatch.core.evaluation import PointMetrics, nab_score, pooled_point_metrics
from aewatch.model.dataset import Table, read_table
from aewatch.model.fit import FitSettings
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle

TRAIN_ROWS = 400
FOLDERS = ("valve1", "valve2", "other")
LEADERBOARD = [  # upstream README, SKAB v0.9: name, F1, FAR %, MAR %
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA-based)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
    ("T-squared", 0.66, 19.21, 42.6),
    ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53),
    ("Vanilla AE", 0.39, 2.59, 75.15),
    ("Isolation forest", 0.29, 2.56, 82.89),
]
NAB_LEADERBOARD = [
    ("MSCRED", 32.42, 16.53, 40.28),
    ("Isolation forest", 26.16, 19.5, 30.82),
    ("T-squared+Q (PCA-based)", 25.35, 14.51, 31.33),
    ("Conv-AE", 23.61, 21.54, 27.55),
    ("LSTM-AE", 23.51, 20.11, 25.91),
]


def files(root: Path) -> list[Path]:
    """The 34 labelled files in a fixed order."""
    found = [
        p
        for folder in FOLDERS
        for p in sorted((root / folder).glob("*.csv"), key=lambda p: int(p.stem))
    ]
    if len(found) != 34:
        raise SystemExit(f"expected 34 labelled SKAB files under {root}, found {len(found)}")
    return found


def split(table: Table) -> tuple[Table, Table]:
    """First 400 rows (labels dropped) and the rest."""

    def rows(sl: slice, *, keep_labels: bool) -> Table:
        return dataclasses.replace(
            table,
            timestamps=table.timestamps[sl],
            values=table.values[sl],
            lines=table.lines[sl],
            labels=table.labels[sl] if keep_labels and table.labels is not None else None,
            changepoints=table.changepoints[sl]
            if keep_labels and table.changepoints is not None
            else None,
        )

    return (
        rows(slice(0, TRAIN_ROWS), keep_labels=False),
        rows(slice(TRAIN_ROWS, None), keep_labels=True),
    )


def look_ahead_flags(
    test: Table, window_end: np.ndarray, anomalous: np.ndarray, window_len: int
) -> np.ndarray:
    """Upstream Conv-AE rule: row t is flagged when all windows covering it are anomalous."""
    flags = np.zeros(len(test.timestamps), dtype=np.int8)
    index = {float(t): i for i, t in enumerate(test.timestamps)}
    by_row = np.full(len(flags), -1, dtype=np.int8)
    for end, bad in zip(window_end, anomalous, strict=True):
        i = index.get(float(end))
        if i is not None:
            by_row[i] = int(bad)
    for t in range(len(flags)):
        covering = by_row[t : t + window_len]
        flags[t] = int(len(covering) == window_len and (covering == 1).all())
    return flags


def run(root: Path, settings: TrainSettings) -> dict[str, Any]:
    """Train and score every file; return pooled metrics for both rules."""
    return run_files(files(root), settings)


def run_files(paths: Sequence[Path], settings: TrainSettings) -> dict[str, Any]:
    """Train and score each of ``paths``; return pooled metrics for both rules."""
    causal, ahead, nab_causal, nab_ahead, per_file = [], [], [], [], []
    started = time.perf_counter()
    for path in paths:
        train, test = split(read_table(path))
        bundle = train_bundle([train], settings).bundle
        scores = score_table(bundle, test)
        assert test.labels is not None and test.changepoints is not None
        anomalous = scores.window_score > scores.window_threshold
        flags = look_ahead_flags(test, scores.window_end, anomalous, bundle.window_len)
        causal.append((test.labels, scores.anomaly))
        ahead.append((test.labels, flags))
        nab_causal.append((test.changepoints, scores.anomaly, test.timestamps))
        nab_ahead.append((test.changepoints, flags, test.timestamps))
        m = pooled_point_metrics([(test.labels, scores.anomaly)])
        per_file.append(
            {
                "file": f"{path.parent.name}/{path.name}",
                "f1": round(m.f1, 3),
                "far": round(m.far, 3),
                "mar": round(m.mar, 3),
            }
        )
    return {
        "causal": pooled_point_metrics(causal),
        "look_ahead": pooled_point_metrics(ahead),
        "nab_causal": nab_score(nab_causal),
        "nab_look_ahead": nab_score(nab_ahead),
        "per_file": per_file,
        "seconds": time.perf_counter() - started,
    }


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable), read by :func:`train_settings`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainSettings/FitSettings field (JSON value)",
    )


def train_settings(overrides: list[str]) -> TrainSettings:
    """The shipped defaults (no progress bar) with ``KEY=VALUE`` overrides of TrainSettings
    or FitSettings fields (JSON values)."""
    base = TrainSettings(fit=FitSettings(show_progress=False))
    fit_fields = {f.name for f in dataclasses.fields(FitSettings)}
    top: dict[str, Any] = {}
    fit: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        value = json.loads(raw) if raw[:1] in "-0123456789[{tfn" else raw
        (fit if key in fit_fields else top)[key] = (
            tuple(value) if isinstance(value, list) else value
        )
    return dataclasses.replace(base, **top, fit=dataclasses.replace(base.fit, **fit))


def _row(name: str, m: PointMetrics) -> str:
    return f"| {name} | {m.f1:.3f} | {m.far * 100:.2f} | {m.mar * 100:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the SKAB data folder")
    add_settings_argument(parser)
    parser.add_argument("--per-file", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = train_settings(args.set)
    result = run(args.data, settings)
    label = "aewatch defaults" if not args.set else "aewatch " + " ".join(args.set)
    print("| algorithm | F1 | FAR, % | MAR, % |\n|---|---|---|---|")
    print(_row(f"**{label}, causal**", result["causal"]))
    print(_row(f"{label}, look-ahead (upstream Conv-AE rule)", result["look_ahead"]))
    for name, f1, far, mar in LEADERBOARD:
        print(f"| {name} (published) | {f1:.2f} | {far:.2f} | {mar:.2f} |")
    print("\n| algorithm | NAB standard | NAB LowFP | NAB LowFN | missed CPs | FPs |")
    print("|---|---|---|---|---|---|")
    for name, n in (("causal", result["nab_causal"]), ("look-ahead", result["nab_look_ahead"])):
        print(
            f"| {label}, {name} | {n.standard:.2f} | {n.low_fp:.2f} | {n.low_fn:.2f} | "
            f"{n.missed} | {n.false_positives} |"
        )
    for name, std, low_fp, low_fn in NAB_LEADERBOARD:
        print(f"| {name} (published) | {std:.2f} | {low_fp:.2f} | {low_fn:.2f} | | |")
    if args.per_file:
        for row in result["per_file"]:
            print(row)
    print(f"\n{result['seconds']:.1f} s for 34 files (train + score)")


if __name__ == "__main__":
    main()
