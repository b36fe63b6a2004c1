"""Pictures and a JSON summary of a training run or an evaluation (shell: writes files).

``write_training_report`` puts, in a folder next to the bundle: the learning curves (or
PCA's explained variance), the calibration score histogram with the threshold line, a few
held-out normal windows with their reconstructions, ``summary.json`` and an ``index.html``
that shows them together, with the detectability table (what the model catches) when the
summary holds one. ``plot_evaluation`` draws signals, score, threshold, labels and
alerts of a scored file.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from aewatch.model.detectability import Detectability
from aewatch.model.networks import LinearAutoencoder
from aewatch.model.train import TrainOutcome

__all__ = ["false_alert_budget", "plot_evaluation", "write_training_report"]

_DAY_S = 86_400.0


def false_alert_budget(fpr: float, period_s: float, hop: int, raise_after: int) -> dict[str, float]:
    """What a per-window false-alarm rate means per day of one asset's normal operation.

    ``windows_per_day`` windows are scored; ``fpr`` of them exceed the threshold; an alert
    needs ``raise_after`` of those in a row, so at most ``anomalous/raise_after`` false
    alerts a day (fewer when false exceedances come in runs, which they usually do).
    """
    windows = _DAY_S / (period_s * hop)
    anomalous = fpr * windows
    return {
        "windows_per_day": windows,
        "anomalous_windows_per_day": anomalous,
        "false_alerts_per_day_at_most": anomalous / raise_after,
    }


def write_training_report(outcome: TrainOutcome, folder: Path, summary: dict[str, Any]) -> Path:
    """Write the report into ``folder`` (created); return the path of ``index.html``."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = [
        ("learning.png", "How training went", _plot_learning(outcome)),
        ("calibration.png", "Held-out normal scores and the threshold", _plot_calibration(outcome)),
        (
            "reconstructions.png",
            "Held-out normal windows and their reconstructions",
            _plot_examples(outcome),
        ),
    ]
    for name, _, fig in figures:
        fig.savefig(folder / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    index = folder / "index.html"
    index.write_text(_html(summary, [(n, t) for n, t, _ in figures]))
    return index


def plot_evaluation(
    path: Path,
    *,
    timestamps: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    channels: Sequence[str],
    score: npt.NDArray[np.float64],
    threshold: npt.NDArray[np.float64],
    alert: npt.NDArray[np.int8],
    labels: npt.NDArray[np.int8] | None,
) -> None:
    """Signals (one panel each), then score against threshold with labels and alerts shaded."""
    hours = (timestamps - timestamps[0]) / 3600.0
    n = len(channels)
    fig, axes = plt.subplots(
        n + 1,
        1,
        sharex=True,
        figsize=(11, 1.4 * n + 2.6),
        gridspec_kw={"height_ratios": [1] * n + [1.8]},
    )
    for ax, ch, col in zip(axes[:-1], channels, values.T, strict=True):
        ax.plot(hours, col, lw=0.6, color="0.25")
        ax.set_ylabel(ch, rotation=0, ha="right", fontsize=8)
        _shade(ax, hours, labels, "tab:orange", 0.25)
        _shade(ax, hours, alert, "tab:red", 0.15)
    ax = axes[-1]
    ax.semilogy(hours, score, lw=0.7, label="score")
    ax.semilogy(hours, threshold, lw=1.0, color="tab:red", ls="--", label="threshold")
    _shade(ax, hours, labels, "tab:orange", 0.25)
    _shade(ax, hours, alert, "tab:red", 0.15)
    ax.set_xlabel("hours from start")
    ax.legend(
        loc="upper left",
        fontsize=8,
        title="orange: labelled anomaly · red: alert",
        title_fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shade(
    ax: Any, x: npt.NDArray[np.float64], mask: npt.NDArray[np.int8] | None, color: str, alpha: float
) -> None:
    if mask is None or not mask.any():
        return
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        ax.axvspan(x[a], x[min(b, len(x) - 1)], color=color, alpha=alpha, lw=0)


def _plot_learning(outcome: TrainOutcome) -> Any:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    net = outcome.bundle.network
    if isinstance(net, LinearAutoencoder):
        share = net.explained.numpy()
        ax.bar(np.arange(1, len(share) + 1), share, color="tab:blue")
        ax.plot(
            np.arange(1, len(share) + 1),
            np.cumsum(share),
            "o-",
            color="tab:red",
            label="cumulative",
        )
        ax.set(
            xlabel="principal component",
            ylabel="share of variance",
            title=f"PCA: {len(share)} components keep {share.sum():.0%} of the variance",
        )
        ax.legend()
        return fig
    ax.semilogy(outcome.fit.train_loss, label="train (denoising)")
    ax.semilogy(outcome.fit.val_loss, label="validation")
    ax.axvline(outcome.fit.best_epoch, color="0.5", ls=":", label="best epoch (kept)")
    ax.set(xlabel="epoch", ylabel="mean squared error (scaled)", title="Learning curves")
    ax.legend()
    return fig


def _plot_calibration(outcome: TrainOutcome) -> Any:
    t = outcome.bundle.threshold
    scores = outcome.calibration_scores
    fig, ax = plt.subplots(figsize=(6, 3.4))
    top = max(float(scores.max()), t.value) * 1.05
    ax.hist(scores, bins=np.linspace(0.0, top, 60).tolist(), color="tab:blue", alpha=0.8)
    ax.axvline(t.value, color="tab:red", lw=2, label=f"threshold {t.value:.3g} ({t.method})")
    ax.set_yscale("log")
    ax.set(
        xlabel="window score (mean squared scaled residual)",
        ylabel="windows",
        title=f"{len(scores)} held-out normal windows; target FPR {t.fpr:g}",
    )
    ax.legend()
    return fig


def _plot_examples(outcome: TrainOutcome) -> Any:
    windows, recon = outcome.example_windows, outcome.example_reconstructions
    channels = outcome.bundle.channels
    shown = min(len(channels), 4)
    fig, axes = plt.subplots(
        shown,
        len(windows),
        figsize=(2.6 * len(windows), 1.6 * shown + 0.6),
        squeeze=False,
        sharex=True,
    )
    for j in range(len(windows)):
        for i in range(shown):
            ax = axes[i][j]
            ax.plot(windows[j, i], color="0.4", lw=1, label="input")
            ax.plot(recon[j, i], color="tab:blue", lw=1.2, ls="--", label="reconstruction")
            if j == 0:
                ax.set_ylabel(channels[i], fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Held-out normal windows (first channels)")
    fig.tight_layout()
    return fig


def _html(summary: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, dict | list)
    )
    imgs = "".join(
        f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"
        for name, title in figures
    )
    table = summary.get("detectability")
    caught = "" if not table else _detectability_html(Detectability.from_json(table))
    read = _data_read_html(summary.get("data_read") or [])
    chosen = _selection_html((summary.get("provenance") or {}).get("selection"))
    return (
        f"<!doctype html><meta charset='utf-8'><title>aewatch training report</title>"
        f"<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}"
        f"th{{text-align:left;padding-right:1em}}img{{max-width:100%}}</style>"
        f"<h1>Training report: {html.escape(str(summary.get('model', '')))}</h1>"
        f"<table>{rows}</table>{read}{chosen}{caught}{imgs}"
        f"<p>Full details: <a href='summary.json'>summary.json</a></p>\n"
    )


def _data_read_html(files: list[dict[str, Any]]) -> str:
    """What reading the data files found, as training printed it."""
    if not files:
        return ""
    text = "\n".join(line for f in files for line in f.get("text", []))
    return f"<h2>What was read</h2><pre>{html.escape(text)}</pre>"


def _selection_html(selection: dict[str, Any] | None) -> str:
    """How training chose the shift check's allowance: each candidate as measured."""
    if not selection:
        return ""
    rows = "".join(
        f"<tr><td>{c['shift_k']:g}</td><td>{c['raised']} of {c['tried']}</td>"
        f"<td>{_fmt(c['median_delay_s'])}</td><td>{_fmt(c['held_out_false_alerts'])} in "
        f"{c['held_out_days']:.3g} days</td></tr>"
        for c in selection["candidates"]
    )
    intro = (
        f"Shift allowance k = {selection['shift_k']:g} noise levels: {selection['reason']}. "
        "Each candidate was calibrated to the same false-alert budget, then scored on the "
        "same faults (every sensor fault kind on every channel, 2 and 4 noise levels) "
        "written into quiet stretches of the held-out history, and on held-out normal "
        f"data it was not calibrated on; measured in {selection['seconds']:g} s."
    )
    return (
        f"<h2>Settings chosen from the data</h2><p>{html.escape(intro)}</p><table><tr>"
        "<th>k</th><th>injected faults raised</th><th>median delay, s</th>"
        f"<th>held-out false alerts</th></tr>{rows}</table>"
    )


def _detectability_html(table: Detectability) -> str:
    """What the model catches: how it was measured, then one sentence per fault and channel."""
    intro = (
        f"Faults of known sizes written into {table.placements} stretches of the held-out "
        f"normal history, {table.span_s / 60:g} min each, and scored as the daemon scores; "
        "a size counts as raised when at least half the stretches raise an alert during the "
        f"fault or up to {table.grace_s / 60:g} min after it, and the delay is the median "
        f"time from the fault's start to the alert. Sizes are in noise levels, from "
        f"{table.noise_source}; measured in {table.seconds:g} s."
    )
    note = f"<p>{html.escape(table.note)}</p>" if table.note else ""
    rows = "".join(
        f"<tr><td>{html.escape(r.kind)}</td><td>{html.escape(r.channel)}</td>"
        f"<td>{html.escape(r.sentence())}</td></tr>"
        for r in table.rows
    )
    return (
        f"<h2>What the model catches</h2><p>{html.escape(intro)}</p>{note}"
        f"<table><tr><th>fault</th><th>channel</th><th>smallest raised, median delay</th></tr>"
        f"{rows}</table>"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
