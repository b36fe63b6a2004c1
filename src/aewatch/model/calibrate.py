"""A trained bundle and newer normal history in, a recalibrated bundle out (offline, pure).

When the plant's normal moves a little (a new choke position) or alerts come too often or
too rarely, the network still reconstructs normal operation well; only the cut has to
move. :func:`recalibrate_bundle` keeps the network and the scaler, cuts every normal
window of the history as training cuts them, turns their errors into the decision
statistic as training does (the bundle's smoothing, a drift baseline seeded from the
newest windows, the bundle's adaptation and hysteresis settings) and calibrates a new
``Threshold`` for the target false-alarm rate; with 2 000 normal samples or more it also
re-measures each channel's noise level and the channel checks' limits there (the channels'
predictions are kept) and, for a model trained with it, holds the threshold to at least
1.5 times the highest statistic. The new bundle has a new version, and its provenance lists
the recalibration after the training it came from. Nothing here reads a
file or the clock: ``aewatch calibrate`` reads the history and passes the time in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from aewatch import __version__
from aewatch.core.checks import CHECK_MARGIN
from aewatch.core.detector import DecisionSettings, decision_statistic
from aewatch.core.threshold import Threshold
from aewatch.errors import BundleError, DataError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.scorer import Scorer
from aewatch.model.train import (
    MIN_CHECK_SAMPLES,
    TrainSettings,
    data_provenance,
    normal_blocks,
    normal_windows,
    recalibrated_checks,
)

__all__ = ["Recalibration", "recalibrate_bundle"]

_SCORE_CHUNK = 65_536  # windows scored at a time: errors are kept, reconstructions are not


@dataclass(frozen=True)
class Recalibration:
    """The recalibrated bundle, the one it came from, and what the command reports.

    ``statistic`` ``(n,)`` float64 is the decision statistic of every normal window, in time
    order, in the units of the new threshold; ``counts`` holds ``rows`` (all rows
    read), ``anomalous_rows`` (labelled 1, left out) and ``windows``.
    """

    bundle: ModelBundle
    previous: ModelBundle
    statistic: npt.NDArray[np.float64]
    counts: dict[str, int]


def recalibrate_bundle(
    bundle: ModelBundle,
    tables: Sequence[Table],
    *,
    created_at: str,
    fpr: float | None = None,
    device: str = "cpu",
) -> Recalibration:
    """Return ``bundle`` with its threshold calibrated on the normal rows of ``tables``.

    ``tables`` are read as they come (oldest first: the newest windows seed the drift
    baseline); the model's channels are picked from each by name. ``fpr`` defaults to the
    bundle's. ``created_at`` (ISO 8601) becomes the new bundle's creation time.

    Raises:
        ValueError: ``fpr`` outside (0, 1).
        BundleError: a table lacks one of the model's channels.
        DataError: no table, or too few normal windows for ``fpr``.
    """
    fpr = bundle.threshold.fpr if fpr is None else fpr
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}; typical values are 0.0001-0.01")
    if not tables:
        raise DataError("no data files given; pass at least one CSV or Parquet file")
    picked = [_model_columns(bundle, t) for t in tables]
    windows = normal_windows(
        picked,
        period_s=bundle.period_s,
        max_gap_periods=bundle.max_gap_periods,
        window_len=bundle.window_len,
        hop=bundle.hop,
    )
    if len(windows) == 0:
        raise DataError(_no_windows_message(bundle, picked))
    errors = _errors(bundle.scorer(device=device), windows)
    decision, statistic = decision_statistic(errors, DecisionSettings.from_json(bundle.decision))
    threshold = _calibrated(statistic, fpr, bundle=bundle, tables=picked)
    blocks = normal_blocks(picked, period_s=bundle.period_s, max_gap_periods=bundle.max_gap_periods)
    samples = sum(len(b) for b in blocks)
    checks = None
    if decision.checks is not None:
        checks = recalibrated_checks(
            decision.checks,
            blocks,
            period_s=bundle.period_s,
            settings=_train_settings(bundle),
            channels=bundle.channels,
        )
        if checks is not None:
            decision = replace(decision, checks=checks)
    if samples >= MIN_CHECK_SAMPLES and bundle.threshold.method.endswith("+margin"):
        # Trained with the margin over the highest held-out statistic: keep the rule.
        highest = CHECK_MARGIN * float(np.max(statistic))
        if highest > threshold.value:
            threshold = replace(threshold, value=highest, method=f"{threshold.method}+margin")
    counts = {
        "rows": sum(len(t.timestamps) for t in picked),
        "anomalous_rows": sum(
            int(np.count_nonzero(t.labels)) for t in picked if t.labels is not None
        ),
        "windows": len(windows),
        "checks_recalibrated": int(checks is not None),
    }
    new = replace(
        bundle,
        threshold=threshold,
        decision=decision.to_json(),
        provenance=_provenance(bundle, picked, counts=counts, created_at=created_at),
    )
    return Recalibration(new, bundle, statistic, counts)


def _train_settings(bundle: ModelBundle) -> TrainSettings:
    """The check settings training used (its provenance), or today's defaults."""
    chosen = bundle.provenance.get("settings", {})
    defaults = TrainSettings()
    return replace(
        defaults,
        false_alerts_per_day=float(
            chosen.get("false_alerts_per_day", defaults.false_alerts_per_day)
        ),
        stuck_s=float(chosen.get("stuck_s", defaults.stuck_s)),
        range_margin=float(chosen.get("range_margin", defaults.range_margin)),
        limits=tuple(
            (str(name), _optional(low), _optional(high))
            for name, low, high in chosen.get("limits", ())
        ),
    )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _model_columns(bundle: ModelBundle, table: Table) -> Table:
    """``table`` with the model's channels only, in the model's order."""
    missing = [c for c in bundle.channels if c not in table.channels]
    if missing:
        raise BundleError(
            f"{table.source} has no column {missing[0]!r}, which model {bundle.name!r} was "
            f"trained on (it needs {list(bundle.channels)}; the file has "
            f"{list(table.channels)}); export the history with those columns, or retrain "
            "with `aewatch train` if the sensors changed"
        )
    pick = [table.channels.index(c) for c in bundle.channels]
    return replace(table, values=table.values[:, pick], channels=bundle.channels)


def _errors(scorer: Scorer, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Window errors ``(n,)``, scored in chunks so reconstructions never pile up."""
    parts = [
        scorer.score(windows[i : i + _SCORE_CHUNK]).errors
        for i in range(0, len(windows), _SCORE_CHUNK)
    ]
    return np.concatenate(parts)


def _calibrated(
    statistic: npt.NDArray[np.float64],
    fpr: float,
    *,
    bundle: ModelBundle,
    tables: Sequence[Table],
) -> Threshold:
    try:
        return Threshold.calibrate(statistic, fpr)
    except ValueError as err:
        raise DataError(
            f"{_sources(tables)}: too few normal windows to calibrate ({err}); each window "
            f"of model {bundle.name!r} needs {bundle.window_len} consecutive normal rows "
            f"{bundle.period_s:g} s apart: export a longer stretch of normal operation, pass "
            "more --data files, or retrain with a shorter --window"
        ) from err


def _no_windows_message(bundle: ModelBundle, tables: Sequence[Table]) -> str:
    return (
        f"{_sources(tables)}: no unbroken run of {bundle.window_len} normal samples "
        f"{bundle.period_s:g} s apart (gaps over {bundle.max_gap_periods:g} periods and rows "
        f"labelled 1 break runs), so model {bundle.name!r} has no window to score; export a "
        "longer stretch of normal operation"
    )


def _sources(tables: Sequence[Table]) -> str:
    return ", ".join(t.source for t in tables)


def _provenance(
    bundle: ModelBundle, tables: Sequence[Table], *, counts: dict[str, int], created_at: str
) -> dict[str, Any]:
    """The training provenance, with this recalibration appended to ``recalibrations``."""
    entry = {
        "data": data_provenance(tables),
        "counts": counts,
        "previous_version": bundle.version,
        "previous_threshold": bundle.threshold.to_json(),
        "previous_created_at": bundle.provenance.get("created_at"),
        "aewatch": __version__,
    }
    earlier = list(bundle.provenance.get("recalibrations", []))
    return {**bundle.provenance, "created_at": created_at, "recalibrations": [*earlier, entry]}
