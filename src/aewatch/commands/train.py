"""``aewatch train``: normal history → model bundle + report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from aewatch.commands import parse_channels, parse_fpr, parse_lags, parse_limits, report_dir_for
from aewatch.commands.durations import samples_text, window_and_hop
from aewatch.commands.read_options import (
    add_read_options,
    read_options,
    read_summary_json,
    read_summary_lines,
)
from aewatch.commands.train_fleet import run_per_asset
from aewatch.core.checks import OFF_LIMIT
from aewatch.errors import AewatchError
from aewatch.model.dataset import read_exports
from aewatch.model.detectability import Detectability, detectability
from aewatch.model.fit import FitSettings
from aewatch.model.networks import ARCHITECTURES
from aewatch.model.scorer import SCORE_KINDS
from aewatch.model.train import (
    SHIFT_K_CANDIDATES,
    FalseAlertEstimate,
    TrainSettings,
    sample_period,
    train_bundle,
)
from aewatch.readable import duration
from aewatch.report import false_alert_budget, write_training_report

__all__ = ["register"]

_D = TrainSettings()
_F = FitSettings()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` verb."""
    p = sub.add_parser(
        "train",
        help="train a model bundle on normal history",
        description="Train on normal history (CSV or Parquet, wide or long) and write one "
        "model bundle plus a report folder MODEL.aew.report/ beside it.",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FILE",
        help="CSV or Parquet export of normal operation (repeatable)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL.aew",
        help="the bundle to write; its report goes to MODEL.aew.report/ beside it",
    )
    p.add_argument(
        "--per-asset",
        action="store_true",
        help="one model per asset: --data is a folder with one export per asset (well-3.csv "
        "trains well-3), or one export with --asset-column naming each row's asset; --out "
        "the folder that gets ASSET.aew and its report for each, the folder a `models: - "
        "dir:` entry serves; an asset that fails is named and the others still trained "
        "(exit 1)",
    )
    p.add_argument("--name", help="model name in alerts and metrics (default: file stem)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--channels",
        help="comma-separated channel columns, or a long table's tags (default: every numeric "
        "column, every tag)",
    )
    g.add_argument(
        "--label-column",
        help="0/1 column; rows marked 1 are left out of training (default: 'anomaly' if present)",
    )
    g.add_argument(
        "--period", type=float, metavar="S", help="sample period in seconds (default: inferred)"
    )
    g.add_argument(
        "--max-gap",
        type=float,
        default=_D.max_gap_periods,
        metavar="PERIODS",
        help="a longer gap splits the data; no window spans it (default %(default)s)",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=_D.arch,
        help="pca (linear autoencoder), dense, conv or vae (default %(default)s)",
    )
    m.add_argument(
        "--window",
        default=str(_D.window_len),
        metavar="LENGTH",
        help="window length: a whole number of samples (60) or a duration with a unit "
        "(500ms, 90s, 10min, 1.5h), turned into samples with the sample period; it must "
        "come to a whole number of samples (default %(default)s samples)",
    )
    m.add_argument(
        "--hop",
        default=str(_D.hop),
        metavar="LENGTH",
        help="score a window every HOP: samples (6) or a duration (1min), at most the "
        "window (default %(default)s sample)",
    )
    m.add_argument(
        "--latent",
        type=int,
        help="code size (default: the principal components of the training windows whose "
        "variance is above the sensors' noise, at most 64)",
    )
    m.add_argument(
        "--hidden",
        metavar="WIDTHS",
        help="comma-separated hidden layer widths, e.g. 64,32 (dense, vae; default: one "
        "layer of half the window's values, at most 256 and at least twice the code size)",
    )
    m.add_argument(
        "--score-kind",
        choices=SCORE_KINDS,
        default=_D.score_kind,
        help="vae only: elbo scores by the negative ELBO (default %(default)s)",
    )
    f = p.add_argument_group("fitting (dense, conv, vae)")
    f.add_argument(
        "--epochs",
        type=int,
        default=_F.epochs,
        metavar="N",
        help="most passes over the training windows; early stopping (--patience) usually "
        "ends sooner (default %(default)s)",
    )
    f.add_argument(
        "--batch-size",
        type=int,
        default=_F.batch_size,
        metavar="WINDOWS",
        help="windows per optimiser step (default %(default)s)",
    )
    f.add_argument(
        "--lr", type=float, default=_F.lr, help="Adam's learning rate (default %(default)s)"
    )
    f.add_argument(
        "--noise",
        type=float,
        default=_F.noise_std,
        metavar="STD",
        help="denoising input noise in robust-std units; 0 turns denoising off "
        "(default %(default)s)",
    )
    f.add_argument(
        "--patience",
        type=int,
        default=_F.patience,
        metavar="EPOCHS",
        help="stop after this many epochs without a better validation loss (default %(default)s)",
    )
    f.add_argument(
        "--seed",
        type=int,
        default=_F.seed,
        help="random seed: the same data and seed give the same bundle (default %(default)s)",
    )
    f.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    f.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch; small networks train fastest on one, and "
        "extra threads slow down a shared machine (default %(default)s)",
    )
    c = p.add_argument_group("decisions")
    c.add_argument(
        "--fpr",
        type=parse_fpr,
        default=_D.fpr,
        help="target false-alarm rate per window (default %(default)s)",
    )
    c.add_argument(
        "--raise-after",
        type=int,
        default=_D.raise_after,
        metavar="K",
        help="raise after K anomalous windows in a row (default %(default)s)",
    )
    c.add_argument(
        "--resolve-after",
        type=int,
        default=_D.resolve_after,
        metavar="M",
        help="resolve after M normal windows in a row (default %(default)s)",
    )
    c.add_argument(
        "--smoothing",
        type=float,
        default=_D.smoothing_halflife,
        metavar="WINDOWS",
        help="half-life of the score's moving average; 0 turns it off (default %(default)s)",
    )
    c.add_argument(
        "--adapt",
        type=int,
        default=_D.adapt_depth,
        metavar="WINDOWS",
        help="let the threshold follow slow drift: divide the score by the mean of "
        "the last WINDOWS scores judged normal; 0 keeps it fixed (default %(default)s)",
    )
    c.add_argument(
        "--rebaseline-drop",
        type=float,
        default=_D.rebaseline_drop,
        metavar="RATIO",
        help="an alert older than --rebaseline-after windows whose score falls below "
        "RATIO x its median resolves and makes the new level normal; 0 turns it off "
        "(default %(default)s)",
    )
    c.add_argument(
        "--rebaseline-after",
        type=int,
        default=_D.rebaseline_min_alert,
        metavar="WINDOWS",
        help="how long an alert must last before --rebaseline-drop may end it "
        "(default %(default)s)",
    )
    c.add_argument(
        "--adapt-floor",
        type=float,
        default=_D.adapt_floor,
        metavar="RATIO",
        help="the drift baseline never falls below RATIO x its starting level (the "
        "calibration's), so a quiet spell cannot shrink the threshold below the calibrated "
        "one; below 1 lets it (default %(default)s)",
    )
    k = p.add_argument_group(
        "channel checks (each channel's residual and health, beside the window error)"
    )
    k.add_argument(
        "--no-checks",
        dest="checks",
        action="store_false",
        help="the window error alone decides (default: checks on)",
    )
    k.add_argument(
        "--false-alerts-per-day",
        type=float,
        default=_D.false_alerts_per_day,
        metavar="N",
        help="false-alert budget per asset and day the checks' limits are calibrated for, "
        "shared with the window error (default %(default)s)",
    )
    k.add_argument(
        "--stuck-after",
        type=float,
        default=_D.stuck_s,
        metavar="S",
        help="a channel that has not moved for S seconds is stuck; longer where the "
        "history holds longer still runs (default %(default)s)",
    )
    k.add_argument(
        "--range-margin",
        type=float,
        default=_D.range_margin,
        metavar="SHARE",
        help="a reading outside the history's 0.1-99.9 %% range widened by SHARE of its "
        "width is out of range (default %(default)s)",
    )
    k.add_argument(
        "--limits",
        metavar="CH=LO:HI,...",
        help="physical limits that replace the training envelope for the range check, "
        "in the channels' units, e.g. whp_bar=0:60,flow_kg_s=0: (a side left empty keeps "
        "the envelope's; default: none)",
    )
    k.add_argument(
        "--lags",
        type=parse_lags,
        default=_D.lags,
        metavar="SAMPLES",
        help="samples of the past each channel is predicted from, at most window - 1 "
        "(default %(default)s)",
    )
    k.add_argument(
        "--shift-k",
        type=float,
        default=None,
        metavar="NOISE_LEVELS",
        help="the shift check's CUSUM allowance: a residual under this many noise levels "
        "does not add up; smaller reaches slower, smaller drifts (default: chosen from the "
        f"data among {', '.join(f'{c:g}' for c in SHIFT_K_CANDIDATES)} by faults injected "
        "into the held-out history, within the false-alert budget)",
    )
    k.add_argument(
        "--select-budget",
        type=float,
        default=_D.select_budget_s,
        metavar="SECONDS",
        help="time to spend choosing --shift-k from the data: fewer injected faults when "
        "more would not fit, 0 keeps the default (default %(default)g s; a week of 10 s "
        "data with 6 channels takes about 12 s)",
    )
    p.add_argument(
        "--no-detectability",
        dest="detectability",
        action="store_false",
        help="skip the detectability table: the smallest fault of each kind on each channel "
        "the model raises, and how soon, measured on the held-out history (default: on; "
        "about a second for a week of 10 s data)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_read_options(p)
    p.set_defaults(func=run)


def false_alerts_line(estimate: FalseAlertEstimate | None, budget: float) -> str:
    """The false alerts measured on held-out normal data, in one line of the summary.

    >>> false_alerts_line(FalseAlertEstimate(1, 2.0), 0.5)
    'false alerts 1 in 2 days of held-out normal data (0.5/day; budget 0.5/day)'
    """
    if estimate is None:
        return "false alerts not measured: the held-out part is too short to halve"
    return (
        f"false alerts {estimate.alerts} in {estimate.days:.3g} days of held-out normal data "
        f"({estimate.per_day:.2g}/day; budget {budget:g}/day)"
    )


def detectability_lines(table: Detectability) -> list[str]:
    """The detectability table in a few lines of the train summary (the grid, indented)."""
    largest = f"{max(table.sizes):g}" if table.sizes else "the largest size"
    head = (
        "detect   smallest fault raised (noise levels) and median delay; - not seen up to "
        f"{largest}, in {table.placements} placements"
    )
    return [head, *(f"         {line}" for line in table.grid())]


def checks_line(checks: dict[str, Any] | None, channels: tuple[str, ...], period_s: float) -> str:
    """What the channel checks watch, in one line of the train summary.

    >>> checks_line(None, ("a",), 10.0)
    'checks   off: the window error alone decides'
    """
    if not checks:
        return "checks   off: the window error alone decides"
    stuck_s = min(checks["stuck_after"]) * period_s
    kinds = checks.get("kinds", ["shift"])
    if kinds == ["stuck"]:
        return (
            f"checks   stuck only (after {duration(stuck_s)} or more) on {len(channels)} channels"
        )
    if kinds == ["shift", "stuck"]:
        steady = [
            n for n, lim in zip(channels, checks["shift_limit"], strict=True) if lim < OFF_LIMIT
        ]
        return (
            f"checks   level shift on {len(steady)} of {len(channels)} channels (those whose "
            f"level held over the history), stuck (after {duration(stuck_s)} or more) "
            f"on {len(channels)} channels"
        )
    noise = ", ".join(
        f"{name} {level:.3g}"
        for name, level in zip(channels, checks["model"]["noise"], strict=True)
    )
    spikes = ", spikes" if checks.get("spike_limit") is not None else ""
    return (
        f"checks   shift, noise, stuck (after {duration(stuck_s)} or more), range{spikes} on "
        f"{len(channels)} channels; residual noise levels: {noise}"
    )


def run(args: argparse.Namespace) -> int:
    """Train, save the bundle, write the report, print a summary (per asset: see
    :mod:`aewatch.commands.train_fleet`)."""
    if args.per_asset:
        return run_per_asset(args, run)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise AewatchError(
            f"--device {args.device}: no CUDA device is available here; use --device cpu"
        )
    torch.set_num_threads(max(1, args.threads))
    started = time.perf_counter()
    exports = read_exports(
        args.data,
        channels=parse_channels(args.channels),
        label_column=args.label_column,
        options=read_options(args),
    )
    print("\n".join(read_summary_lines(exports)), flush=True)
    tables = [e.table for e in exports]
    window_len, hop = window_and_hop(args.window, args.hop, sample_period(tables, args.period))
    settings = TrainSettings(
        arch=args.arch,
        window_len=window_len,
        hop=hop,
        latent=args.latent,
        score_kind=args.score_kind,
        fpr=args.fpr,
        hidden=tuple(int(h) for h in args.hidden.split(",")) if args.hidden else None,
        period_s=args.period,
        max_gap_periods=args.max_gap,
        raise_after=args.raise_after,
        resolve_after=args.resolve_after,
        name=args.name or args.out.stem,
        smoothing_halflife=args.smoothing,
        adapt_depth=args.adapt,
        rebaseline_drop=args.rebaseline_drop,
        adapt_floor=args.adapt_floor,
        rebaseline_min_alert=args.rebaseline_after,
        checks=args.checks,
        false_alerts_per_day=args.false_alerts_per_day,
        stuck_s=args.stuck_after,
        range_margin=args.range_margin,
        limits=parse_limits(args.limits),
        lags=args.lags,
        shift_k=args.shift_k,
        select_budget_s=args.select_budget,
        fit=FitSettings(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            noise_std=args.noise,
            patience=args.patience,
            seed=args.seed,
            device=args.device,
            show_progress=not args.quiet,
        ),
    )
    outcome = train_bundle(tables, settings)
    bundle = outcome.bundle
    caught = (
        detectability(bundle, outcome.held_out_rows, seed=args.seed, device=args.device)
        if args.detectability
        else None
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bundle.save(args.out)
    budget = false_alert_budget(
        bundle.threshold.fpr, bundle.period_s, bundle.hop, settings.raise_after
    )
    summary = {
        "model": bundle.name,
        "version": bundle.version,
        "bundle": str(args.out),
        "architecture": bundle.arch.kind,
        "latent": bundle.arch.latent,
        "channels": list(bundle.channels),
        "window": bundle.window_len,
        "hop": bundle.hop,
        "period_s": bundle.period_s,
        "threshold": bundle.threshold.value,
        "threshold_method": bundle.threshold.method,
        "fpr": bundle.threshold.fpr,
        **budget,
        "false_alerts_per_day_budget": settings.false_alerts_per_day,
        "held_out_false_alerts": None
        if outcome.false_alerts is None
        else {
            "alerts": outcome.false_alerts.alerts,
            "days": outcome.false_alerts.days,
            "per_day": outcome.false_alerts.per_day,
        },
        **outcome.counts,
        "epochs_run": len(outcome.fit.train_loss),
        "best_epoch": outcome.fit.best_epoch,
        "seconds": round(time.perf_counter() - started, 2),
        "decision": bundle.decision,
        "provenance": bundle.provenance,
        "detectability": None if caught is None else caught.to_json(),
        "data_read": read_summary_json(exports),
    }
    index = write_training_report(outcome, report_dir_for(args.out), summary)
    chosen = "" if args.latent else " above the sensors' noise"
    print(
        f"model    {args.out}  ({bundle.arch.kind}, latent {bundle.arch.latent}{chosen}, "
        f"window {samples_text(bundle.window_len, bundle.period_s)}, "
        f"hop {samples_text(bundle.hop, bundle.period_s)}, {len(bundle.channels)} channels, "
        f"period {bundle.period_s:g} s)"
    )
    print(
        f"data     {outcome.counts['rows']} rows → {outcome.counts['fit_windows']} fit, "
        f"{outcome.counts['validation_windows']} validation, "
        f"{outcome.counts['calibration_windows']} calibration windows"
    )
    relative = " × the asset's normal level" if bundle.decision.get("adaptation") else ""
    print(
        f"threshold window error over {bundle.threshold.value:.4g}{relative} "
        f"({bundle.threshold.method}, target FPR {bundle.threshold.fpr:g} per window) ≈ "
        f"{budget['anomalous_windows_per_day']:.1f} anomalous windows/day of the window "
        "error alone"
    )
    print(false_alerts_line(outcome.false_alerts, settings.false_alerts_per_day))
    checks = bundle.decision.get("checks")
    line = checks_line(checks, bundle.channels, bundle.period_s)
    if not checks:
        line = f"checks   {outcome.checks_note}"
    elif outcome.checks_note:  # some checks are off: say why
        line += f": {outcome.checks_note}"
    print(line)
    if outcome.selection is not None:
        print(f"chosen   {outcome.selection.line()}")
    if caught is not None:
        print("\n".join(detectability_lines(caught)))
    print(f"report   {index}")
    print(f"took     {summary['seconds']} s")
    return 0
