"""``aewatch score``: run a model over a file exactly as the daemon would, write scores.csv."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from aewatch.commands.alert_text import alert_line
from aewatch.daemon.messages import alert_message
from aewatch.errors import BundleError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table, read_table
from aewatch.model.offline import TableScores, score_table

__all__ = ["load_for_model", "register", "scores_frame"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``score`` verb."""
    p = sub.add_parser(
        "score",
        help="score a file with a model, as the daemon would",
        description="Score every row of a CSV/Parquet file. Output columns: timestamp, score, "
        "threshold, anomaly (the alert state the daemon would hold at that row, after "
        "hysteresis; 0 while the first window fills) and err_<channel> per channel.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.aew")
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--out", required=True, type=Path, metavar="SCORES.csv")
    p.add_argument("--timestamp-column")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score and write the CSV; print a one-line summary."""
    bundle = ModelBundle.load(args.model)
    table = load_for_model(bundle, args.data, timestamp_column=args.timestamp_column)
    scores = score_table(bundle, table, device=args.device)
    scores_frame(table, scores, bundle.channels).to_csv(args.out, index=False, float_format="%.6g")
    raised = sum(e.state == "raised" for e in scores.events)
    for line in envelope_warnings(bundle, table):
        print(line)
    for event in scores.events:
        print(alert_line(alert_message(event, model=bundle.name, model_version=bundle.version)))
    print(
        f"scored {len(table.timestamps)} rows ({len(scores.window_end)} windows) with "
        f"{bundle.name} {bundle.version}: {raised} alerts raised → {args.out}"
    )
    return 0


def envelope_warnings(bundle: ModelBundle, table: Table) -> list[str]:
    """A warning per channel with readings outside the training envelope (none: fine).

    The envelope is the range check's (the normal history's 0.1-99.9 % range widened by
    the margin); a model with the checks off has none to compare with.
    """
    checks = bundle.decision.get("checks")
    if not checks or len(table.timestamps) == 0:
        return []
    low, high = np.asarray(checks["low"]), np.asarray(checks["high"])
    values = np.asarray(table.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        outside = (values < low) | (values > high)
    lines = []
    for j, channel in enumerate(bundle.channels):
        rows = np.flatnonzero(outside[:, j])
        if not len(rows):
            continue
        first = pd.Timestamp(table.timestamps[rows[0]], unit="s", tz="UTC")
        lines.append(
            f"warning  {channel}: {len(rows) / len(values):.1%} of rows outside the training "
            f"envelope [{low[j]:.4g}, {high[j]:.4g}], the first at line {table.lines[rows[0]]} "
            f"({first:%Y-%m-%d %H:%M:%S}); the model was not calibrated on such readings, so "
            "its false-alert estimate does not hold there"
        )
    return lines


def load_for_model(
    bundle: ModelBundle,
    path: str,
    *,
    label_column: str | None = None,
    timestamp_column: str | None = None,
) -> Table:
    """Read ``path`` and keep the model's channels in the model's order.

    Raises:
        BundleError: the file lacks a channel the model was trained on.
    """
    table = read_table(path, label_column=label_column, timestamp_column=timestamp_column)
    missing = [c for c in bundle.channels if c not in table.channels]
    if missing:
        raise BundleError(
            f"{path} has no column {missing[0]!r}, which model {bundle.name!r} was trained on "
            f"(it needs {list(bundle.channels)}; the file has {list(table.channels)}); score "
            "a file with those columns or train a model on this data"
        )
    pick = [table.channels.index(c) for c in bundle.channels]
    return replace(table, values=table.values[:, pick], channels=bundle.channels)


def scores_frame(table: Table, scores: TableScores, channels: tuple[str, ...]) -> pd.DataFrame:
    """The scores.csv columns as a DataFrame, one row per input row."""
    stamps = pd.to_datetime(table.timestamps, unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(
                r"\.?0+Z$", "Z", regex=True
            ),
            "score": scores.score,
            "threshold": scores.threshold,
            "anomaly": scores.anomaly.astype(np.int8),
        }
    )
    for i, ch in enumerate(channels):
        frame[f"err_{ch}"] = scores.channel_errors[:, i]
    return frame
