"""Normal history in, model bundle out: the training recipe (shell: runs the fit loop).

1. Put every file's readings on the sample grid; long gaps and rows labelled anomalous
   split the history into segments, so no window spans either.
2. Split the history in time: the oldest part fits the scaler and the network, the next
   part drives early stopping, the newest part is held out for calibration (windows never
   cross a split).
3. Fit a robust scaler, pick the latent size from the data unless given, fit the network.
4. Score the held-out windows and calibrate the threshold for the target false-alarm rate.
5. Fit each channel's residual model (``aewatch.core.residual``) on the fit and validation
   rows, measure its noise on the held-out rows and calibrate the channel checks there
   (``aewatch.core.checks``), sharing the false-alert budget with the window error.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from aewatch.core.checks import (
    CHECK_KINDS,
    CHECK_MARGIN,
    MOVE_CHANNELS,
    MOVE_NEXT,
    OFF_LIMIT,
    SPREAD_MOVE_CHANNELS,
    ChannelChecks,
    calibrate_checks,
    steady_levels,
)
from aewatch.core.detector import Adaptation, DecisionSettings, decision_statistic
from aewatch.core.grid import DEFAULT_MAX_GAP_PERIODS, infer_period, regularize
from aewatch.core.residual import DEFAULT_LAGS, ResidualModel
from aewatch.core.scaler import RobustScaler
from aewatch.core.threshold import MIN_TAIL_COUNT, Threshold, min_calibration_windows
from aewatch.core.window import sliding_windows
from aewatch.errors import DataError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.detectability import caught
from aewatch.model.fit import FitResult, FitSettings, auto_latent, fit_network
from aewatch.model.networks import ARCHITECTURES, ArchSpec
from aewatch.model.offline import score_table
from aewatch.model.selection import Candidate, Selection, choose

__all__ = [
    "MIN_CHECK_SAMPLES",
    "SHIFT_K",
    "SHIFT_K_CANDIDATES",
    "FalseAlertEstimate",
    "TrainOutcome",
    "TrainSettings",
    "data_provenance",
    "held_out_blocks",
    "held_out_false_alerts",
    "normal_blocks",
    "normal_windows",
    "recalibrated_checks",
    "sample_period",
    "train_bundle",
]


_Cell = TypeVar("_Cell", bound=np.generic)  # what _split cuts: rows (float32) or times

# Held-out samples the channel checks need: their limits are the highest values the
# statistics reach there (times a margin), which a few hundred samples do not pin down.
MIN_CHECK_SAMPLES = 2000
# The checks of a history too short to fit predictions (see _level_checks).
_STUCK_ONLY = ("stuck",)
_LEVEL_ONLY = ("shift", "stuck")  # in CHECK_KINDS order, as ChannelChecks keeps them
LEVEL_MIN_SPAN_S = 86_400.0  # a level is trusted from a history covering a day or more
# The level shift's CUSUM allowance, in the channel's whole normal spread (the residual
# checks' k = 1 is in noise about a prediction): a process wanders about a spread from its
# median for hours; a level held two to three spreads away is raised.
LEVEL_K = 1.5
# The residual shift check's allowance in noise levels where training does not choose
# (a short history, --shift-k given), and the candidates it chooses among, default first.
SHIFT_K = 1.0
SHIFT_K_CANDIDATES = (SHIFT_K, 0.5)


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Every choice ``aewatch train`` makes; the defaults are the best general ones we found."""

    arch: str = "pca"
    window_len: int = 10
    hop: int = 1
    latent: int | None = None  # None: the principal components above the sensors' noise
    hidden: tuple[int, ...] | None = None  # None: one layer of about half the window size
    score_kind: str = "mse"
    fpr: float = 1e-4  # target false-alarm rate per window
    val_fraction: float = 0.15
    calibration_fraction: float = 0.25
    period_s: float | None = None  # None: inferred from the timestamps
    max_gap_periods: float = DEFAULT_MAX_GAP_PERIODS
    raise_after: int = 1
    resolve_after: int = 10
    smoothing_halflife: float = 5.0  # windows
    adapt_depth: int = 100  # windows of normal scores in the drift baseline; 0: off
    rebaseline_drop: float = 0.3  # re-baseline after a fault (see detector); 0: off
    rebaseline_min_alert: int = 30  # windows an alert must last before a drop counts
    adapt_floor: float = 1.0  # the baseline never falls below this × its starting level
    checks: bool = True  # per-channel residual and sensor-health checks beside the window error
    false_alerts_per_day: float = 0.5  # the checks' share of false alerts, per asset and day
    stuck_s: float = 60.0  # a channel that has not moved for this long is stuck
    range_margin: float = 0.25  # envelope: normal range widened by this share of its width
    # Physical limits (channel, low, high) that replace the envelope; None keeps that side.
    limits: tuple[tuple[str, float | None, float | None], ...] = ()
    lags: int = DEFAULT_LAGS  # samples of the past each channel is predicted from
    # The shift check's CUSUM allowance in noise levels; None: chosen from the data among
    # SHIFT_K_CANDIDATES by injected faults (aewatch.model.selection).
    shift_k: float | None = None
    select_budget_s: float = 120.0  # time to choose settings from the data; 0: defaults
    name: str = "model"
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.window_len < 2 or self.hop < 1:
            raise ValueError(
                f"window length must be >= 2 and hop >= 1, got {self.window_len}, {self.hop}"
            )
        if self.shift_k is not None and not 0.0 < self.shift_k <= 5.0:
            raise ValueError(f"shift allowance must be in (0, 5] noise levels, got {self.shift_k}")
        if not self.select_budget_s >= 0.0:
            raise ValueError(f"selection time budget must be >= 0 s, got {self.select_budget_s}")
        if self.lags < 1:
            raise ValueError(f"lags must be >= 1, got {self.lags}")


@dataclass(frozen=True)
class TrainOutcome:
    """The bundle plus what the report shows about how it came to be."""

    bundle: ModelBundle
    fit: FitResult
    calibration_scores: npt.NDArray[np.float32]  # (n_cal,)
    example_windows: npt.NDArray[np.float32]  # (k, channels, length) held-out normal
    example_reconstructions: npt.NDArray[np.float32]  # (k, channels, length)
    counts: dict[str, int]
    checks_note: str = ""  # why some or all of the channel checks are off, when they are
    # The held-out normal history, contiguous blocks (m, channels) on the grid, oldest
    # first: what calibrated the threshold and the checks.
    held_out_rows: tuple[npt.NDArray[np.float32], ...] = ()
    false_alerts: FalseAlertEstimate | None = None  # measured on held-out normal data
    selection: Selection | None = None  # how the shift allowance was chosen, when it was


@dataclass(frozen=True, slots=True)
class FalseAlertEstimate:
    """False alerts measured on held-out normal data the detectors were not calibrated on.

    The held-out part is cut into two halves by time; the detectors are calibrated on one
    half exactly as training calibrates them on the whole, and the other half is scored as
    the daemon would score it; then the other way round. ``alerts`` raised in ``days``
    of normal operation.
    """

    alerts: int
    days: float

    @property
    def per_day(self) -> float:
        return self.alerts / self.days if self.days > 0 else float("nan")


def train_bundle(tables: Sequence[Table], settings: TrainSettings) -> TrainOutcome:
    """Fit, calibrate and package a model on the normal rows of ``tables``.

    Raises:
        DataError: too little normal data for one window in each split.
    """
    channel_limits(settings.limits, tables[0].channels)  # refuse a limit on no channel
    period = settings.period_s or _infer_period(tables)
    blocks, times = _normal_grid(tables, period, settings.max_gap_periods)
    fit_rows, val_rows, cal_rows = _split(blocks, settings)
    parts = {"fit": fit_rows, "validation": val_rows, "calibration": cal_rows}
    channels = len(tables[0].channels)
    windows = {
        name: _windows(rows, channels, window_len=settings.window_len, hop=settings.hop)
        for name, rows in parts.items()
    }
    for name, w in windows.items():
        if len(w) == 0 and not (name == "validation" and settings.arch == "pca"):
            raise DataError(_too_short_message(tables, name, settings, parts[name]))
    if len(windows["calibration"]) < min_calibration_windows(settings.fpr):
        raise DataError(_too_few_calibration_message(tables, settings, blocks, cal_rows, period))
    scaler = RobustScaler.fit(np.concatenate(fit_rows))
    scaled = {name: scaler.transform(w) for name, w in windows.items()}
    spec = _arch_spec(scaled["fit"], settings)
    fit = fit_network(spec, scaled["fit"], scaled["validation"], settings.fit)
    bundle = ModelBundle(
        name=settings.name,
        arch=spec,
        network=fit.network,
        scaler=scaler,
        threshold=Threshold(0.0, settings.fpr, 0, "pending"),
        channels=tables[0].channels,
        window_len=settings.window_len,
        hop=settings.hop,
        period_s=period,
        max_gap_periods=settings.max_gap_periods,
        score_kind=settings.score_kind,
    )
    scores = bundle.scorer(device=settings.fit.device).score(windows["calibration"])
    counts = {f"{name}_windows": len(w) for name, w in windows.items()}
    counts["rows"] = sum(len(t.timestamps) for t in tables)
    train_rows = fit_rows + val_rows
    can_choose = (
        settings.shift_k is None
        and settings.checks
        and settings.select_budget_s > 0
        and sum(len(r) for r in cal_rows) >= MIN_CHECK_SAMPLES
    )
    ks = SHIFT_K_CANDIDATES if can_choose else (settings.shift_k or SHIFT_K,)
    variants = [
        _calibrated_variant(
            bundle, scores.errors, train_rows, cal_rows, replace(settings, shift_k=k)
        )
        for k in ks
    ]
    selection = _select(variants, cal_rows, settings) if can_choose else None
    chosen = next(v for v in variants if selection is None or v.k == selection.shift_k)
    provenance = _provenance(tables, replace(settings, shift_k=chosen.k), counts, fit)
    provenance["fitted"] = _fitted_span(times, settings)
    if selection is not None:
        provenance["selection"] = selection.to_json()
    bundle = replace(chosen.bundle, provenance=provenance)
    pick = np.linspace(0, len(scores) - 1, num=min(4, len(scores))).astype(int)
    assert scores.reconstructions is not None  # scored with them
    return TrainOutcome(
        bundle,
        fit,
        scores.errors,
        windows["calibration"][pick],
        scores.reconstructions[pick],
        counts,
        chosen.checks_note,
        tuple(cal_rows),
        chosen.false_alerts,
        selection,
    )


@dataclass(frozen=True, slots=True)
class _Variant:
    """The fitted model calibrated with one shift allowance ``k``."""

    k: float
    bundle: ModelBundle
    checks_note: str
    false_alerts: FalseAlertEstimate | None


def _calibrated_variant(
    bundle: ModelBundle,
    errors: npt.NDArray[np.float32],
    train_rows: list[npt.NDArray[np.float32]],
    cal_rows: list[npt.NDArray[np.float32]],
    settings: TrainSettings,
) -> _Variant:
    """``bundle`` with its threshold and checks calibrated for ``settings`` (whose
    ``shift_k`` is set), and its false alerts on held-out data counted."""
    threshold, decision, checks_note = _calibrate(
        errors, train_rows, cal_rows, bundle.period_s, settings, channels=bundle.channels
    )
    calibrated = replace(bundle, threshold=threshold, decision=decision.to_json())
    estimate = held_out_false_alerts(calibrated, train_rows, cal_rows, settings)
    assert settings.shift_k is not None
    return _Variant(settings.shift_k, calibrated, checks_note, estimate)


def _select(
    variants: list[_Variant], cal_rows: list[npt.NDArray[np.float32]], settings: TrainSettings
) -> Selection:
    """Measure each variant on the same injected faults and choose (see ``selection``)."""
    started = time.perf_counter()
    measured, note = caught(
        [v.bundle for v in variants],
        cal_rows,
        seed=settings.fit.seed,
        device=settings.fit.device,
        time_budget_s=settings.select_budget_s,
    )
    candidates = tuple(
        Candidate(
            v.k,
            m.raised,
            m.tried,
            m.delay_s,
            None if v.false_alerts is None else v.false_alerts.alerts,
            0.0 if v.false_alerts is None else v.false_alerts.days,
        )
        for v, m in zip(variants, measured, strict=True)
    )
    k, reason = choose(candidates)
    if candidates[0].tried == 0 and note:
        reason = f"the default: nothing measured ({note})"
    return Selection(candidates, k, reason, time.perf_counter() - started)


def normal_windows(
    tables: Sequence[Table],
    *,
    period_s: float,
    max_gap_periods: float,
    window_len: int,
    hop: int,
) -> npt.NDArray[np.float32]:
    """Every window ``(n, channels, window_len)`` of the normal rows of ``tables``, oldest first.

    Cut as training cuts them: on the sample grid, never across a gap longer than
    ``max_gap_periods`` periods or a row labelled anomalous.
    """
    blocks = _normal_blocks(tables, period_s, max_gap_periods)
    return _windows(blocks, len(tables[0].channels), window_len=window_len, hop=hop)


def normal_blocks(
    tables: Sequence[Table], *, period_s: float, max_gap_periods: float
) -> list[npt.NDArray[np.float32]]:
    """The normal rows of ``tables`` as contiguous grid blocks ``(m, channels)``, oldest
    first, never across a gap longer than ``max_gap_periods`` periods or a labelled row."""
    return _normal_blocks(tables, period_s, max_gap_periods)


def recalibrated_checks(
    checks: ChannelChecks,
    blocks: list[npt.NDArray[np.float32]],
    *,
    period_s: float,
    settings: TrainSettings,
    channels: Sequence[str],
) -> ChannelChecks | None:
    """``checks`` with each channel's noise level and every limit measured on ``blocks``
    (normal history the predictions were not fitted on), as training calibrates them;
    None when ``blocks`` hold fewer than ``MIN_CHECK_SAMPLES`` samples. Checks trained
    on a short history (``stuck`` alone) stay ``stuck`` alone, on ``blocks``."""
    if sum(len(b) for b in blocks) < MIN_CHECK_SAMPLES:
        return None
    if checks.kinds in (_LEVEL_ONLY, _STUCK_ONLY):
        return _level_checks(blocks, period_s, settings, channels)
    model = checks.model.with_noise_from(blocks)
    return _calibrated_checks(
        model,
        blocks,
        blocks,
        period_s=period_s,
        hop=checks.hop,
        settings=settings,
        channels=channels,
        k=checks.k,
        moves=checks.moves,
        spread_moves=checks.spread_moves,
        move_next=checks.move_next,
    )


def held_out_blocks(
    tables: Sequence[Table], settings: TrainSettings, *, period_s: float
) -> list[npt.NDArray[np.float32]]:
    """The held-out normal rows, contiguous grid blocks ``(m, channels)``, oldest first.

    Cut as ``train_bundle`` cuts ``TrainOutcome.held_out_rows``: the newest
    ``settings.calibration_fraction`` of the normal rows of ``tables``, never across a gap
    longer than ``settings.max_gap_periods`` periods.
    """
    blocks = _normal_blocks(tables, period_s, settings.max_gap_periods)
    return _split(blocks, settings)[2]


def data_provenance(tables: Sequence[Table]) -> list[dict[str, Any]]:
    """Each table's file name, rows, first and last time and the sha256 of its readings."""
    files = []
    for table in tables:
        digest = hashlib.sha256(table.timestamps.tobytes())
        digest.update(np.ascontiguousarray(table.values).tobytes())
        files.append(
            {
                "file": Path(table.source).name,
                "rows": len(table.timestamps),
                "first": _iso(table.timestamps[0]),
                "last": _iso(table.timestamps[-1]),
                "sha256": digest.hexdigest(),
            }
        )
    return files


def _decision(
    errors: npt.NDArray[np.float32], settings: TrainSettings
) -> tuple[DecisionSettings, npt.NDArray[np.float64]]:
    """Decision settings and the calibration windows' decision statistic (see detector)."""
    adaptation = None
    if settings.adapt_depth > 0:
        adaptation = Adaptation(
            depth=settings.adapt_depth,
            drop=settings.rebaseline_drop,
            min_alert=settings.rebaseline_min_alert,
            floor=settings.adapt_floor,
        )
    decision = DecisionSettings(
        settings.raise_after, settings.resolve_after, settings.smoothing_halflife, adaptation
    )
    return decision_statistic(errors, decision)


def held_out_false_alerts(
    bundle: ModelBundle,
    train_rows: list[npt.NDArray[np.float32]],
    held_out: list[npt.NDArray[np.float32]],
    settings: TrainSettings,
) -> FalseAlertEstimate | None:
    """Alerts on each half of ``held_out`` when the other half calibrated the detectors.

    None when a half is too short to calibrate on (fewer windows than the threshold
    needs).
    """
    halves = _halves(held_out)
    scorer = bundle.scorer(device=settings.fit.device)
    channels = len(bundle.channels)
    alerts, days = 0, 0.0
    for calibrate_on, score_on in (halves, halves[::-1]):
        w = _windows(calibrate_on, channels, window_len=bundle.window_len, hop=bundle.hop)
        if len(w) == 0 or not any(len(b) >= bundle.window_len for b in score_on):
            return None
        try:
            threshold, decision, _ = _calibrate(
                scorer.score(w).errors,
                train_rows,
                calibrate_on,
                bundle.period_s,
                settings,
                held_out_samples=sum(len(b) for b in held_out),  # decide as for the whole
                channels=bundle.channels,
            )
        except ValueError:
            return None  # too few windows in a half for the false-alarm target
        half_model = replace(bundle, threshold=threshold, decision=decision.to_json())
        for i, block in enumerate(score_on):
            table = _grid_table(block, bundle, f"held-out half, block {i}")
            result = score_table(half_model, table, asset="held-out")
            alerts += sum(e.state == "raised" for e in result.events)
            days += len(block) * bundle.period_s / 86_400.0
    return FalseAlertEstimate(alerts, days)


def _calibrate(
    errors: npt.NDArray[np.float32],
    train_rows: list[npt.NDArray[np.float32]],
    held_out: list[npt.NDArray[np.float32]],
    period_s: float,
    settings: TrainSettings,
    *,
    channels: Sequence[str],
    held_out_samples: int | None = None,
) -> tuple[Threshold, DecisionSettings, str]:
    """Threshold, decision settings with the checks, and why the checks are off (or "").

    Whether the held-out part is long enough for the checks and the margin is judged on
    ``held_out_samples`` (default: the rows of ``held_out``).
    """
    if held_out_samples is None:
        held_out_samples = sum(len(r) for r in held_out)
    decision, statistic = _decision(errors, settings)
    threshold = Threshold.calibrate(statistic, settings.fpr)
    checks_note = "off (--no-checks): the window error alone decides"
    if settings.checks:
        checks, checks_note = _checks(
            train_rows,
            held_out,
            period_s,
            settings,
            held_out_samples=held_out_samples,
            channels=channels,
        )
        decision = replace(decision, checks=checks)
    if held_out_samples >= MIN_CHECK_SAMPLES:
        # Enough held-out history to trust its highest value: the window error gets the
        # same margin over it as the checks' statistics (see calibrate_checks).
        highest = CHECK_MARGIN * float(np.max(statistic))
        if highest > threshold.value:
            threshold = replace(threshold, value=highest, method=f"{threshold.method}+margin")
    return threshold, decision, checks_note


def _halves(
    blocks: list[npt.NDArray[np.float32]],
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """``blocks`` cut in two at the middle sample, oldest half first."""
    total = sum(len(b) for b in blocks)
    first: list[npt.NDArray[np.float32]] = []
    second: list[npt.NDArray[np.float32]] = []
    offset = 0
    for block in blocks:
        cut = min(max(total // 2 - offset, 0), len(block))
        if cut:
            first.append(block[:cut])
        if cut < len(block):
            second.append(block[cut:])
        offset += len(block)
    return first, second


def _grid_table(rows: npt.NDArray[np.float32], bundle: ModelBundle, source: str) -> Table:
    """Grid rows as a ``Table`` one period apart (rows numbered from 1)."""
    n = len(rows)
    return Table(
        source=source,
        timestamps=np.arange(n, dtype=np.float64) * bundle.period_s,
        values=np.asarray(rows, dtype=np.float64),
        channels=bundle.channels,
        labels=None,
        changepoints=None,
        lines=np.arange(1, n + 1, dtype=np.int64),
    )


def _checks(
    train_rows: list[npt.NDArray[np.float32]],
    held_out: list[npt.NDArray[np.float32]],
    period_s: float,
    settings: TrainSettings,
    *,
    held_out_samples: int,
    channels: Sequence[str],
) -> tuple[ChannelChecks | None, str]:
    """Residual model fitted on the training rows, its checks calibrated on held-out rows.

    The limits come from what the residuals do on the held-out rows, so these need at
    least ``MIN_CHECK_SAMPLES``; with fewer only the checks that need no prediction run
    (``stuck``, and on a history of a day or more ``shift`` of each channel's level from
    its median; see ``_level_checks``) and the note says why. A short history gets fewer
    lags (each channel's prediction needs about twice as many samples as it has weights).
    """
    if held_out_samples < MIN_CHECK_SAMPLES:
        need_h = MIN_CHECK_SAMPLES / settings.calibration_fraction * period_s / 3600.0
        why = (
            f"the held-out part of the history holds {held_out_samples} samples and "
            f"calibrating the other checks' limits takes {MIN_CHECK_SAMPLES}; train on about "
            f"{need_h:.3g} h of normal history or more to turn them on"
        )
        checks = _level_checks(train_rows + held_out, period_s, settings, channels)
        if checks is None:
            return None, f"off: {why}. The window error alone decides"
        if checks.kinds == _LEVEL_ONLY:
            why += "; the level shift is each channel's distance from its normal median"
        return checks, why
    for lags in range(min(settings.lags, settings.window_len - 1), 0, -1):
        try:
            model = ResidualModel.fit(train_rows, lags).with_noise_from(held_out)
        except ValueError:
            continue  # too few rows to pin down this many weights: try fewer lags
        break
    else:
        return None, "off: too few consecutive normal rows to fit the channels' predictions"
    normal = train_rows + held_out
    checks = _calibrated_checks(
        model,
        held_out,
        normal,
        period_s=period_s,
        hop=settings.hop,
        settings=settings,
        channels=channels,
        k=SHIFT_K if settings.shift_k is None else settings.shift_k,
        moves=MOVE_CHANNELS,
        spread_moves=SPREAD_MOVE_CHANNELS,
        move_next=MOVE_NEXT,
    )
    return checks, ""


def _level_checks(
    blocks: list[npt.NDArray[np.float32]],
    period_s: float,
    settings: TrainSettings,
    channels: Sequence[str],
) -> ChannelChecks | None:
    """The checks of a history too short to fit predictions; None when no block holds
    two rows.

    ``stuck`` on each channel's sample-to-sample spread. On a history covering
    ``LEVEL_MIN_SPAN_S`` or more also ``shift``: a CUSUM (allowance ``LEVEL_K``) of each
    channel's distance from its normal median in units of its normal spread
    (``ResidualModel.level``), on the channels whose level held over the history
    (``steady_levels``; with none, ``stuck`` alone). A controller that moves a valve to
    hold a disturbed process at set point leaves the valve away from its normal level for
    as long as the disturbance lasts, which a window's error, spread over every channel,
    hardly shows. A shorter history has not seen a day's swings (ambient temperature,
    demand) and its level is not trusted. The limits are set on ``blocks`` themselves,
    with the checks' margin over their highest value.
    """
    try:
        moves = ResidualModel.level(blocks)
    except ValueError:
        return None
    covered_s = sum(len(b) for b in blocks) * period_s
    kinds = _LEVEL_ONLY if covered_s >= LEVEL_MIN_SPAN_S else _STUCK_ONLY
    checks = _calibrated_checks(
        moves.with_noise_from(blocks),
        blocks,
        blocks,
        period_s=period_s,
        hop=settings.hop,
        settings=settings,
        channels=channels,
        kinds=kinds,
        still_unit=moves.noise,
        k=LEVEL_K,
    )
    if kinds == _STUCK_ONLY:
        return checks
    assert checks.shift_scale is not None  # calibrate_checks always measures it
    steady = steady_levels(blocks, checks.model, checks.shift_scale)
    shift_limit = np.where(steady, checks.shift_limit, OFF_LIMIT)
    return replace(checks, shift_limit=shift_limit, kinds=kinds if steady.any() else _STUCK_ONLY)


def _calibrated_checks(
    model: ResidualModel,
    held_out: list[npt.NDArray[np.float32]],
    normal: list[npt.NDArray[np.float32]],
    *,
    period_s: float,
    hop: int,
    settings: TrainSettings,
    channels: Sequence[str],
    kinds: tuple[str, ...] = CHECK_KINDS,
    still_unit: npt.NDArray[np.float64] | None = None,
    k: float = 1.0,
    moves: int = 0,
    spread_moves: int = 0,
    move_next: bool = False,
) -> ChannelChecks:
    """``model``'s checks (``kinds``) calibrated with the budget, stuck time, margin and
    limits of ``settings`` (``held_out`` sets the limits, ``normal`` the envelope and still
    runs; ``still_unit`` the stuck check's unit, ``k`` the shift's allowance, ``moves``,
    ``spread_moves`` and ``move_next`` what makes a sample a process move, see
    ``calibrate_checks``)."""
    return calibrate_checks(
        model,
        held_out,
        normal,
        period_s=period_s,
        hop=hop,
        false_alerts_per_day=settings.false_alerts_per_day,
        stuck_s=settings.stuck_s,
        range_margin=settings.range_margin,
        limits=channel_limits(settings.limits, channels),
        kinds=kinds,
        still_unit=still_unit,
        k=k,
        moves=moves,
        spread_moves=spread_moves,
        move_next=move_next,
    )


def channel_limits(
    limits: Sequence[tuple[str, float | None, float | None]], channels: Sequence[str]
) -> dict[int, tuple[float | None, float | None]]:
    """Physical limits by channel index.

    Raises:
        DataError: a limit names a channel the model does not have.
    """
    out: dict[int, tuple[float | None, float | None]] = {}
    for name, low, high in limits:
        if name not in channels:
            raise DataError(
                f"--limits names channel {name!r}, which the data lacks; use one of "
                f"{', '.join(channels)}"
            )
        out[list(channels).index(name)] = (low, high)
    return out


def sample_period(tables: Sequence[Table], period_s: float | None = None) -> float:
    """Return the sample period in seconds training puts ``tables`` on: ``period_s`` if given.

    Otherwise the median of each table's inferred period, as :func:`train_bundle` does.

    Raises:
        DataError: no period given and no table has two rows to infer it from.
    """
    return period_s or _infer_period(tables)


def _infer_period(tables: Sequence[Table]) -> float:
    steps = [infer_period(t.timestamps) for t in tables if len(t.timestamps) >= 2]
    if not steps:
        raise DataError(
            f"{tables[0].source}: need at least 2 rows to infer the sample period; "
            "add data or pass --period"
        )
    return float(np.median(steps))


def _normal_blocks(
    tables: Sequence[Table], period: float, max_gap: float
) -> list[npt.NDArray[np.float32]]:
    """Contiguous grid blocks ``(m, channels)`` of normal rows, oldest first."""
    return _normal_grid(tables, period, max_gap)[0]


def _normal_grid(
    tables: Sequence[Table], period: float, max_gap: float
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float64]]]:
    """:func:`_normal_blocks` and each block's grid times ``(m,)`` (epoch seconds)."""
    blocks: list[npt.NDArray[np.float32]] = []
    times: list[npt.NDArray[np.float64]] = []
    for table in tables:
        for seg in regularize(
            table.timestamps, table.values, period_s=period, max_gap_periods=max_gap
        ):
            if table.labels is None:
                blocks.append(seg.values)
                times.append(seg.timestamps)
                continue
            is_normal = table.labels[seg.source_index] == 0
            for a, b in _runs(is_normal):
                blocks.append(seg.values[a:b])
                times.append(seg.timestamps[a:b])
    return blocks, times


def _runs(keep: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in ``keep``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _fitted_span(times: list[npt.NDArray[np.float64]], settings: TrainSettings) -> dict[str, Any]:
    """The first and last grid time of the rows the network and the checks' predictor
    were fitted on (the fit and validation parts :func:`_split` cuts), and how many rows
    that is: what ``aewatch calibrate`` warns about."""
    fit, validation, _ = _split(times, settings)
    fitted = fit + validation
    rows = sum(len(t) for t in fitted)
    if rows == 0:
        return {"rows": 0}
    return {"first": _iso(fitted[0][0]), "last": _iso(fitted[-1][-1]), "rows": rows}


def _split(
    blocks: list[npt.NDArray[_Cell]], settings: TrainSettings
) -> tuple[list[npt.NDArray[_Cell]], ...]:
    """``blocks`` (rows, or their times) cut into the fit, validation and calibration
    parts, oldest first: the newest ``calibration_fraction`` calibrates, the
    ``val_fraction`` before it validates a network (none for PCA)."""
    total = sum(len(b) for b in blocks)
    cal_start = round(total * (1.0 - settings.calibration_fraction))
    val_fraction = 0.0 if settings.arch == "pca" else settings.val_fraction
    val_start = round(total * (1.0 - settings.calibration_fraction - val_fraction))
    parts: tuple[list[npt.NDArray[_Cell]], ...] = ([], [], [])
    offset = 0
    for block in blocks:
        for part, (lo, hi) in zip(
            parts, ((0, val_start), (val_start, cal_start), (cal_start, total)), strict=True
        ):
            a, b = max(lo - offset, 0), min(hi - offset, len(block))
            if b > a:
                part.append(block[a:b])
        offset += len(block)
    return parts


def _windows(
    rows: list[npt.NDArray[np.float32]], channels: int, *, window_len: int, hop: int
) -> npt.NDArray[np.float32]:
    cut = [sliding_windows(r, window_len, hop) for r in rows]
    cut = [c for c in cut if len(c)]
    if not cut:
        return np.empty((0, channels, window_len), dtype=np.float32)
    return np.concatenate(cut).astype(np.float32)


def _arch_spec(scaled_fit: npt.NDArray[np.float32], settings: TrainSettings) -> ArchSpec:
    _, channels, length = scaled_fit.shape
    latent = settings.latent or auto_latent(scaled_fit)
    hidden = settings.hidden
    if hidden is None:
        hidden = (
            ()
            if settings.arch in ("pca", "conv")
            else (max(2 * latent, min(256, channels * length // 2)),)
        )
    return ArchSpec(
        kind=settings.arch, channels=channels, length=length, latent=latent, hidden=hidden
    )


def _too_short_message(
    tables: Sequence[Table],
    part: str,
    settings: TrainSettings,
    rows: list[npt.NDArray[np.float32]],
) -> str:
    sources = ", ".join(t.source for t in tables)
    longest = max((len(r) for r in rows), default=0)
    return (
        f"{sources}: the {part} part of the normal history has no unbroken run of "
        f"{settings.window_len} samples (longest {longest}); a window needs "
        f"{settings.window_len} consecutive normal rows in each of the fit, validation and "
        "calibration parts. Add history, or shorten the window with --window"
    )


def _too_few_calibration_message(
    tables: Sequence[Table],
    settings: TrainSettings,
    blocks: list[npt.NDArray[np.float32]],
    cal_rows: list[npt.NDArray[np.float32]],
    period_s: float,
) -> str:
    """Why the threshold cannot be calibrated, and each setting that would make do."""
    need = min_calibration_windows(settings.fpr)
    window, hop = settings.window_len, settings.hop

    def count(length: int, step: int) -> int:
        return sum((len(r) - length) // step + 1 for r in cal_rows if len(r) >= length)

    have = count(window, hop)
    # One unbroken stretch whose calibration part holds `need` windows.
    rows = math.ceil((window + (need - 1) * hop) / settings.calibration_fraction)
    fixes = [
        f"train on about {rows} normal rows ({_span(rows * period_s)}) in one unbroken "
        "stretch or more"
    ]
    shorter = [w for w in range(window - 1, max(hop, 2) - 1, -1) if count(w, hop) >= need]
    if shorter:
        fixes.append(f"a shorter window, --window {shorter[0]} or less")
    smaller = [h for h in range(hop - 1, 0, -1) if count(window, h) >= need]
    if smaller:
        fixes.append(f"a smaller hop, --hop {smaller[0]} or less")
    if have > MIN_TAIL_COUNT:
        fpr = MIN_TAIL_COUNT / have
        fixes.append(
            f"a higher false-alarm target, --fpr {math.ceil(fpr * 1000) / 1000:g} or more "
            "(so many normal windows over the threshold that it suits a trial only)"
        )
    return (
        f"{', '.join(t.source for t in tables)}: {sum(len(b) for b in blocks)} normal rows "
        f"leave {sum(len(r) for r in cal_rows)} (the newest "
        f"{settings.calibration_fraction:.0%}) for calibrating the threshold, which make "
        f"{have} windows of {window} samples every {hop}; --fpr {settings.fpr:g} needs at "
        f"least {need} calibration windows. Any of these makes do: " + "; ".join(fixes)
    )


def _span(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps it at least 1 (s, min, h or days)."""
    for unit, size in (("days", 86_400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _provenance(
    tables: Sequence[Table], settings: TrainSettings, counts: dict[str, int], fit: FitResult
) -> dict[str, Any]:
    chosen = asdict(settings)
    chosen.pop("fit")
    chosen["fit"] = {k: v for k, v in asdict(settings.fit).items() if k != "show_progress"}
    return {
        "data": data_provenance(tables),
        "settings": chosen,
        "counts": counts,
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.train_loss),
        "libraries": {name: _version(name) for name in ("aewatch", "torch", "numpy")},
        "python": platform.python_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), tz=UTC).isoformat().replace("+00:00", "Z")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
