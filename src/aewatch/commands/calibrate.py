"""``aewatch calibrate``: a bundle + recent normal history → the same network, a new threshold."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import torch

from aewatch.commands import parse_fpr
from aewatch.commands.read_options import add_read_options, read_options, read_summary_lines
from aewatch.commands.score import export_for_model
from aewatch.core.detector import DecisionSettings
from aewatch.core.messages import parse_time
from aewatch.core.threshold import MIN_TAIL_COUNT
from aewatch.errors import AewatchError
from aewatch.model.bundle import ModelBundle
from aewatch.model.calibrate import Recalibration, recalibrate_bundle
from aewatch.model.dataset import Table
from aewatch.report import false_alert_budget

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate`` verb."""
    p = sub.add_parser(
        "calibrate",
        help="recalibrate a model's threshold on recent normal history, without retraining",
        description="Keep a model bundle's network and scaler; score every normal window of "
        "the given history (rows labelled 1 left out, windows cut as training cuts them) and "
        "calibrate a new threshold and drift baseline the way training does. Writes a new "
        "bundle. For when the plant's normal shifted a little, or alerts come too often or "
        "too rarely; retrain when sensors or the process changed.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.aew")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FILE",
        help="CSV or Parquet export of recent normal operation (repeatable; oldest first, "
        "since the newest windows seed the drift baseline)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="NEW.aew")
    p.add_argument(
        "--fpr",
        type=parse_fpr,
        help="target false-alarm rate per window (default: the model's); lower gives a "
        "higher threshold and fewer alerts",
    )
    p.add_argument(
        "--label-column",
        help="0/1 column; rows marked 1 are left out (default: 'anomaly' if present)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_read_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Recalibrate, save the new bundle, print old → new."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise AewatchError(
            f"--device {args.device}: no CUDA device is available here; use --device cpu"
        )
    bundle = ModelBundle.load(args.model)
    options = read_options(args)
    exports = [
        export_for_model(bundle, p, label_column=args.label_column, options=options)
        for p in args.data
    ]
    print("\n".join(read_summary_lines(exports)), flush=True)
    tables = [e.table for e in exports]
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    result = recalibrate_bundle(
        bundle, tables, fpr=args.fpr, created_at=created_at, device=args.device
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.bundle.save(args.out)
    _print_summary(result, args.model, args.out)
    warning = fitted_rows_warning(bundle, tables)
    if warning:
        print(warning)
    return 0


def fitted_span(bundle: ModelBundle) -> tuple[float, float, bool] | None:
    """When the rows the model was fitted on start and end, in epoch seconds, and whether
    that end is exact.

    Training fits the network and the checks' predictor on the oldest part of its history
    (all but the calibration share) and records that part's first and last grid time in
    the bundle's provenance (``fitted``). Bundles from before that record get an estimate
    from the training files' first and last times and row counts, reading each file's rows
    as evenly spread over its span. None: the bundle does not record its history.
    """
    fitted = bundle.provenance.get("fitted") or {}
    try:
        return parse_time(fitted["first"]), parse_time(fitted["last"]), True
    except (KeyError, TypeError, ValueError):
        pass  # an older bundle: estimate it
    files = bundle.provenance.get("data") or []
    settings = bundle.provenance.get("settings") or {}
    try:
        spans = [(parse_time(f["first"]), parse_time(f["last"]), int(f["rows"])) for f in files]
        held = float(settings["calibration_fraction"])
    except (KeyError, TypeError, ValueError):
        return None
    total = sum(rows for _, _, rows in spans)
    if not spans or total < 1:
        return None
    rows_fitted = round(total * (1.0 - held))  # rows, oldest first, as training splits them
    for first, last, rows in spans:
        if rows_fitted <= rows:
            end = first + (last - first) * max(rows_fitted - 1, 0) / max(rows - 1, 1)
            return spans[0][0], end, False
        rows_fitted -= rows
    return spans[0][0], spans[-1][1], False


def fitted_rows_warning(bundle: ModelBundle, tables: list[Table]) -> str | None:
    """A warning when the history to calibrate on holds rows the model was fitted on:
    its window errors and residuals there are lower than on data it has not seen, so the
    threshold would come out low and alerts more often than the target says."""
    span = fitted_span(bundle)
    if span is None:
        return None
    first, end, is_exact = span
    inside = sum(int(((t.timestamps >= first) & (t.timestamps <= end)).sum()) for t in tables)
    rows = sum(len(t.timestamps) for t in tables)
    if inside == 0:
        return None
    after = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"warning   {inside} of {rows} rows lie in the part of the training history the "
        f"model was fitted on (up to {'' if is_exact else 'about '}{after}): its window "
        "errors there are lower than on data it has not seen, so this threshold is low and "
        f"alerts will come more often than the target says. Calibrate on normal history "
        f"from after {after}"
    )


def _print_summary(result: Recalibration, source: Path, target: Path) -> None:
    old, new = result.previous, result.bundle
    before, after = old.threshold, new.threshold
    raise_after = DecisionSettings.from_json(new.decision).raise_after
    budget = false_alert_budget(after.fpr, new.period_s, new.hop, raise_after)
    counts = result.counts
    fpr = f"{after.fpr:g}" if after.fpr == before.fpr else f"{before.fpr:g} → {after.fpr:g}"
    print(f"model     {target}  ({new.name}, from {source}: version {old.version} → {new.version})")
    print(
        f"data      {counts['rows']} rows ({counts['anomalous_rows']} labelled anomalous, left "
        f"out) → {counts['windows']} normal windows"
    )
    print(
        f"threshold {before.value:.4g} → {after.value:.4g} ({after.method}, target FPR {fpr} "
        f"per window) ≈ {budget['anomalous_windows_per_day']:.1f} anomalous windows/day, at "
        f"most {budget['false_alerts_per_day_at_most']:.1f} false alerts/day on normal operation"
    )
    if after.method.endswith("+margin"):
        print(
            f"note      the cut is 1.5 × the highest statistic of this history "
            f"({result.statistic.max():.4g}), above what the target FPR alone gives, as the "
            "model was trained"
        )
    checks = new.decision.get("checks")
    kinds = checks.get("kinds") if checks else None
    if checks and counts.get("checks_recalibrated") and kinds == ["stuck"]:
        print("checks    stuck only, recalibrated on this history (its longest still runs)")
    elif checks and counts.get("checks_recalibrated") and kinds == ["shift", "stuck"]:
        print(
            "checks    level shift and stuck, recalibrated on this history (its levels, "
            "spreads and longest still runs)"
        )
    elif checks and counts.get("checks_recalibrated"):
        noise = ", ".join(
            f"{name} {level:.3g}"
            for name, level in zip(new.channels, checks["model"]["noise"], strict=True)
        )
        print(f"checks    recalibrated on this history; residual noise levels: {noise}")
    elif checks:
        print(
            "checks    kept as trained: recalibrating them takes 2000 normal samples or more "
            "(their limits come from the highest values on normal data)"
        )
    if after.method.split("+")[0] != "quantile":
        print(
            f"note      fpr × windows = {after.fpr * counts['windows']:.3g} is under "
            f"{MIN_TAIL_COUNT}, so the cut comes from a {after.method} fit of the tail (the "
            f"highest window scores {result.statistic.max():.4g}), not an empirical quantile; "
            "more history, or a higher --fpr, gives the quantile"
        )
