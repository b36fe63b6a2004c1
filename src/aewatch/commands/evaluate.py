"""``aewatch evaluate``: score labelled files and report how well alerts match the labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aewatch.commands import print_json
from aewatch.commands.read_options import add_read_options, read_options
from aewatch.commands.score import export_for_model
from aewatch.core.evaluation import (
    nab_score,
    pooled_event_metrics,
    pooled_point_metrics,
)
from aewatch.errors import DataError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import ReadOptions
from aewatch.model.offline import score_table
from aewatch.report import plot_evaluation

__all__ = ["evaluate_files", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` verb."""
    p = sub.add_parser(
        "evaluate",
        help="score labelled files and compare alerts with the labels",
        description="Point-wise F1, FAR, MAR (SKAB definitions), event-wise precision/recall "
        "and detection delay, NAB score when the file has a changepoint column, and a plot "
        "of signals, score, threshold and labels per file. Metrics pool all files.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.aew")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE",
        help="labelled CSV/Parquet file (repeatable)",
    )
    p.add_argument("--label-column", default="anomaly", help="0/1 column (default %(default)s)")
    p.add_argument(
        "--plot-dir",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where FILE-evaluation.png goes (default: current directory)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_read_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a table (or JSON)."""
    bundle = ModelBundle.load(args.model)
    result = evaluate_files(
        bundle,
        args.data,
        label_column=args.label_column,
        options=read_options(args),
        device=args.device,
        plot_dir=None if args.no_plot else args.plot_dir,
    )
    if args.json:
        print_json(result)
    else:
        _print_table(result)
    return 0


def evaluate_files(
    bundle: ModelBundle,
    paths: list[str],
    *,
    label_column: str = "anomaly",
    options: ReadOptions | None = None,
    device: str = "cpu",
    plot_dir: Path | None = None,
) -> dict[str, Any]:
    """Score each labelled file and pool the metrics; optionally plot each file.

    ``data_read`` in the result holds what reading each file found.
    """
    points, events, nab_files, plots, read = [], [], [], [], []
    for path in paths:
        export = export_for_model(bundle, path, label_column=label_column, options=options)
        table = export.table
        read.append(export.summary)
        if table.labels is None:
            raise DataError(
                f"{path} has no label column {label_column!r}; pass "
                "--label-column NAME for the 0/1 anomaly column"
            )
        scores = score_table(bundle, table, device=device)
        points.append((table.labels, scores.anomaly))
        events.append((table.labels, scores.anomaly, table.timestamps))
        if table.changepoints is not None and table.changepoints.any():
            nab_files.append((table.changepoints, scores.anomaly, table.timestamps))
        if plot_dir is not None:
            plot_dir.mkdir(parents=True, exist_ok=True)
            target = plot_dir / f"{Path(path).stem}-evaluation.png"
            plot_evaluation(
                target,
                timestamps=table.timestamps,
                values=table.values,
                channels=table.channels,
                score=scores.score,
                threshold=scores.threshold,
                alert=scores.anomaly,
                labels=table.labels,
            )
            plots.append(str(target))
    point = pooled_point_metrics(points)
    event = pooled_event_metrics(events)
    result: dict[str, Any] = {
        "model": bundle.name,
        "version": bundle.version,
        "files": len(paths),
        "rows": sum(len(p[0]) for p in points),
        "f1": point.f1,
        "far": point.far,
        "mar": point.mar,
        "precision": point.precision,
        "recall": point.recall,
        "event_precision": event.precision,
        "event_recall": event.recall,
        "mean_detection_delay_s": event.mean_delay_s,
        "true_events": event.n_true,
        "detected_events": event.n_detected,
        "alert_events": event.n_predicted,
        "false_alert_events": event.n_false,
        "counts": {"tp": point.tp, "fp": point.fp, "fn": point.fn, "tn": point.tn},
    }
    if nab_files:
        result["nab"] = nab_score(nab_files).to_dict()
    if plots:
        result["plots"] = plots
    result["data_read"] = [summary.to_json() for summary in read]
    return result


def _print_table(r: dict[str, Any]) -> None:
    delay = r["mean_detection_delay_s"]
    lines = [
        *(line for f in r["data_read"] for line in f["text"]),
        f"model {r['model']} {r['version']} on {r['files']} file(s), {r['rows']} rows",
        f"point-wise (SKAB):  F1 {r['f1']:.3f}   FAR {r['far']:.2%}   MAR {r['mar']:.2%}",
        f"events:             detected {r['detected_events']}/{r['true_events']} "
        f"(recall {r['event_recall']:.2f}), alerts {r['alert_events']} of which "
        f"{r['false_alert_events']} false (precision {r['event_precision']:.2f})",
        "mean detection delay: " + ("n/a" if delay is None else f"{delay:.1f} s"),
    ]
    if "nab" in r:
        n = r["nab"]
        lines.append(
            f"NAB: standard {n['standard']:.2f}  low-FP {n['low_fp']:.2f}  low-FN {n['low_fn']:.2f}"
        )
    lines += [f"plot: {p}" for p in r.get("plots", [])]
    print("\n".join(lines))
