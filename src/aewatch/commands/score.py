"""``aewatch score``: run a model over a file exactly as the daemon would, write scores.csv."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from aewatch.commands.alert_text import alert_line
from aewatch.commands.read_options import add_read_options, read_options
from aewatch.core.messages import alert_message
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Export, ReadOptions, Table, read_export
from aewatch.model.offline import TableScores, score_table
from aewatch.model.tables import listing

__all__ = ["export_for_model", "load_for_model", "missing_channel_fix", "register", "scores_frame"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``score`` verb."""
    p = sub.add_parser(
        "score",
        help="score a file with a model, as the daemon would",
        description="Score every row of a CSV/Parquet file (wide, or a long table of the "
        "model's tags). Output columns: timestamp, score, threshold, anomaly (the alert state "
        "the daemon would hold at that row, after hysteresis; 0 while the first window "
        "fills) and err_<channel> per channel.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.aew")
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--out", required=True, type=Path, metavar="SCORES.csv")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_read_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score and write the CSV; print what was read and a one-line summary."""
    bundle = ModelBundle.load(args.model)
    export = export_for_model(bundle, args.data, options=read_options(args))
    print("\n".join(export.summary.lines()), flush=True)
    table = export.table
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
            f"warning  {channel}: {_rows_share(len(rows), len(values))} outside the training "
            f"envelope [{low[j]:.4g}, {high[j]:.4g}], the first at line {table.lines[rows[0]]} "
            f"({first:%Y-%m-%d %H:%M:%S}); the model was not calibrated on such readings, so "
            "its false-alert estimate does not hold there"
        )
    return lines


def _rows_share(count: int, total: int) -> str:
    """``count`` of ``total`` rows in words, the share never rounded to nothing.

    >>> _rows_share(2, 86400), _rows_share(1, 1), _rows_share(300, 1000)
    ('2 rows (<0.1%)', '1 row (100.0%)', '300 rows (30.0%)')
    """
    share = count / total
    shown = "<0.1%" if share < 0.001 else f"{share:.1%}"
    return f"{count} row{'' if count == 1 else 's'} ({shown})"


def load_for_model(
    bundle: ModelBundle,
    path: str,
    *,
    label_column: str | None = None,
    options: ReadOptions | None = None,
) -> Table:
    """Read ``path`` and keep the model's channels in the model's order.

    Raises:
        DataError: as :func:`export_for_model`.
    """
    return export_for_model(bundle, path, label_column=label_column, options=options).table


def export_for_model(
    bundle: ModelBundle,
    path: str,
    *,
    label_column: str | None = None,
    options: ReadOptions | None = None,
) -> Export:
    """Read ``path`` (only the model's channels, or a long table's tags of those names, in
    the model's order) with the summary of what was read.

    Raises:
        DataError: the file cannot be read as the options say, or lacks a channel the
            model was trained on.
    """
    return read_export(
        path,
        channels=bundle.channels,
        label_column=label_column,
        options=options or ReadOptions(),
        channels_fix=missing_channel_fix(bundle),
    )


def missing_channel_fix(bundle: ModelBundle) -> str:
    """What to do about a file that lacks one of the model's channels, for its message."""
    return (
        f"model {bundle.name!r} was trained on {listing(bundle.channels)}; give a file with "
        "those channels, or train a model on this data with `aewatch train`"
    )


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
