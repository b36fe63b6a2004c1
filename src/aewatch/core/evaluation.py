"""Offline scoring of binary alert streams against labels, following the SKAB protocol.

Not a pipeline stage: it judges what the pipeline produced. Three views, all pure numpy:
point-wise metrics (SKAB's "outlier" problem), event metrics (runs of alerts against runs
of labelled anomaly) and the NAB changepoint score exactly as SKAB's ``core/metrics.py``
(``chp_score(..., metric="nab", window_width="60s", anomaly_window_destination="righter")``)
computes it. Every ``y`` is a ``(n,)`` array of 0/1 (bool, int or float); every
``timestamps_s`` is a ``(n,)`` float array of seconds, strictly increasing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "EventMetrics",
    "NabScore",
    "PointMetrics",
    "event_metrics",
    "nab_score",
    "point_metrics",
    "pooled_event_metrics",
    "pooled_point_metrics",
]

# NAB application profiles (A_tp, A_fp, A_fn), SKAB's default table_of_coef.
_PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
# SKAB's my_scale() tabulates the reward on this many points and looks it up.
_DETAIL = 1000


@dataclass(frozen=True, slots=True)
class PointMetrics:
    """Point-wise confusion counts and rates; rates are fractions in [0, 1], not percent.

    ``f1 = tp / (tp + (fp + fn) / 2)``, ``far = fp / (fp + tn)``, ``mar = fn / (fn + tp)``.
    Empty denominators mean "nothing could go wrong": ``far`` is 0 without negatives,
    ``mar`` is 0 and ``recall`` 1 without positives, ``precision`` is 1 without alarms,
    and ``f1`` is 1 when tp = fp = fn = 0.

    >>> point_metrics([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]).to_dict()["far"]
    0.5
    """

    f1: float
    far: float
    mar: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    tn: int

    def to_dict(self) -> dict[str, float | int]:
        """All fields by name."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EventMetrics:
    """Event-wise precision, recall and detection delay.

    A true event is a maximal run of 1s in ``y_true``, a predicted event (an alert) a
    maximal run of 1s in ``y_pred``. Two events overlap when they share a row. A true
    event is detected when some predicted event overlaps it; a predicted event is false
    when it overlaps no true event. ``precision = (n_predicted - n_false) / n_predicted``
    (1 without alerts), ``recall = n_detected / n_true`` (1 without true events).
    The delay of a detected event is the timestamp of its first row with ``y_pred == 1``
    minus the timestamp of its first row, so it is 0 when an earlier alert is still on
    when the event starts. ``delays_s`` holds one delay per detected event in time order
    (files in the order given); ``mean_delay_s`` is their mean, ``None`` if none.

    >>> m = event_metrics([0, 1, 1, 0, 0], [0, 0, 1, 0, 1], [0.0, 1.0, 2.0, 3.0, 4.0])
    >>> m.precision, m.recall, m.delays_s
    (0.5, 1.0, (1.0,))
    """

    precision: float
    recall: float
    mean_delay_s: float | None
    n_true: int
    n_detected: int
    n_predicted: int
    n_false: int
    delays_s: tuple[float, ...]

    def to_dict(self) -> dict[str, float | int | list[float] | None]:
        """All fields by name; ``delays_s`` as a list."""
        out: dict[str, float | int | list[float] | None] = asdict(self)
        out["delays_s"] = list(self.delays_s)
        return out


@dataclass(frozen=True, slots=True)
class NabScore:
    """SKAB's NAB score per profile (null detector 0, perfect 100; see ``nab_score``), plus counts.

    ``missed`` counts detection windows without an alarm, ``false_positives`` alarms
    outside every window, ``n_changepoints`` the true changepoints (= windows).
    """

    standard: float
    low_fp: float
    low_fn: float
    missed: int
    false_positives: int
    n_changepoints: int

    def to_dict(self) -> dict[str, float | int]:
        """All fields by name."""
        return asdict(self)


def point_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> PointMetrics:
    """Point-wise metrics of one ``(n,)`` 0/1 prediction against ``(n,)`` 0/1 labels.

    Raises:
        ValueError: arrays not 1-D 0/1 of equal length.
    """
    truth, alert = _labels_pair(y_true, y_pred)
    return _point_from_counts(
        int(np.count_nonzero(truth & alert)),
        int(np.count_nonzero(~truth & alert)),
        int(np.count_nonzero(truth & ~alert)),
        int(np.count_nonzero(~truth & ~alert)),
    )


def pooled_point_metrics(pairs: Iterable[tuple[npt.ArrayLike, npt.ArrayLike]]) -> PointMetrics:
    """Point metrics from confusion counts summed over ``(y_true, y_pred)`` files (micro).

    This is how SKAB pools its 34 test parts; it equals ``point_metrics`` of the
    concatenated arrays.
    """
    parts = [point_metrics(y_true, y_pred) for y_true, y_pred in pairs]
    return _point_from_counts(
        sum(p.tp for p in parts),
        sum(p.fp for p in parts),
        sum(p.fn for p in parts),
        sum(p.tn for p in parts),
    )


def event_metrics(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, timestamps_s: npt.ArrayLike
) -> EventMetrics:
    """Event metrics (see ``EventMetrics``) of one file; ``timestamps_s`` is ``(n,)`` seconds.

    Raises:
        ValueError: arrays not 1-D 0/1 of equal length, or timestamps not strictly increasing.
    """
    truth, alert = _labels_pair(y_true, y_pred)
    t = _timestamps(timestamps_s, len(truth))
    true_starts, true_ends = _runs(truth)
    pred_starts, pred_ends = _runs(alert)
    truth_before = np.concatenate(([0], np.cumsum(truth)))
    n_false = int(np.count_nonzero(truth_before[pred_ends] == truth_before[pred_starts]))
    # next_alert[i]: first row >= i with an alert (n if none), so detection and delay
    # of every true event are one lookup each.
    n = len(alert)
    rows = np.where(alert, np.arange(n), n)
    next_alert = np.minimum.accumulate(rows[::-1])[::-1] if n else rows
    first = next_alert[true_starts]
    is_detected = first < true_ends
    delays = t[first[is_detected]] - t[true_starts[is_detected]]
    return _event_from_counts(
        n_true=len(true_starts),
        n_detected=int(np.count_nonzero(is_detected)),
        n_predicted=len(pred_starts),
        n_false=n_false,
        delays_s=tuple(float(d) for d in delays),
    )


def pooled_event_metrics(
    items: Iterable[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]],
) -> EventMetrics:
    """Event metrics from event counts summed over ``(y_true, y_pred, timestamps_s)`` files.

    Events never span files, so this equals ``event_metrics`` of the files concatenated
    with a 0/0 separator row between them.
    """
    parts = [event_metrics(y_true, y_pred, ts) for y_true, y_pred, ts in items]
    return _event_from_counts(
        n_true=sum(p.n_true for p in parts),
        n_detected=sum(p.n_detected for p in parts),
        n_predicted=sum(p.n_predicted for p in parts),
        n_false=sum(p.n_false for p in parts),
        delays_s=tuple(d for p in parts for d in p.delays_s),
    )


def nab_score(
    files: Iterable[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]],
    *,
    window_s: float = 60.0,
) -> NabScore:
    """SKAB's NAB score of ``(changepoints_true, y_pred, timestamps_s)`` files, all ``(n,)``.

    Per file, as upstream ``core/metrics.py`` (commit f3d94c4) with the notebooks'
    arguments: alarms are the rows where ``|diff(y_pred)|`` is 1, with the first row an
    alarm when ``y_pred[0]`` is 1 (notebooks: ``prediction_cp.iloc[0] = prediction.iloc[0]``).
    Each true changepoint at ``t`` opens the closed window ``[t, t + window_s]``; where it
    overlaps the previous window, its start moves to that window's end ("cut right
    window"). The first alarm in a window earns ``y[int(1000 * (a - start) / (end - start))]``
    (index capped at 999) from the tabulated ``y = A_fp + (A_tp - A_fp)/2 * (1 -
    tanh(x)/tanh(pi/2))``, ``x = linspace(-pi/2, pi/2, 1000)``: A_tp at the start, A_fp at
    the end. Later alarms in a window are ignored; alarms outside every window cost A_fp
    each; windows without an alarm cost A_fn. With S, S_null = n·A_fn and S_perfect = n·A_tp
    summed over files, each profile scores ``100 (S - S_null) / (S_perfect - S_null)``.

    Upstream behaviour kept on purpose, and our interpretations:

    - When changepoints lie at most ``window_s`` apart, the later one falls inside the
      earlier window and its own window starts after it, so even a detector that alarms
      exactly on every changepoint can miss that window and score below 100 (on SKAB's
      test parts 40 of the 127 changepoints are this close; such a detector misses 9
      windows and scores 92.91).
    - Window bounds are inclusive on both sides, so an alarm exactly on the end of one
      window and the start of the next counts as the first alarm of both.
    - Alarms in a file without changepoints still cost A_fp.
    - Times are float seconds instead of pandas nanosecond timestamps (identical for
      whole-second data); scores are not rounded (upstream rounds to 2 decimals).
    - ``missed`` and ``false_positives`` are upstream's ``metric="average_time"`` counts
      over the same windows, as the leaderboard reports them.

    >>> cps = [0, 1, 0, 0, 0]
    >>> nab_score([(cps, [0, 1, 1, 1, 1], [0.0, 1.0, 2.0, 3.0, 4.0])]).standard
    100.0

    Raises:
        ValueError: malformed arrays, ``window_s <= 0``, or no true changepoint at all
            (the score is 0/0 then).
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 seconds, got {window_s}; SKAB uses 60.0")
    totals = np.zeros(len(_PROFILES))
    n_changepoints = missed = false_positives = 0
    for changepoints_true, y_pred, timestamps_s in files:
        cp, alert = _labels_pair(changepoints_true, y_pred)
        t = _timestamps(timestamps_s, len(cp))
        rewards, n_missed, n_fp = _nab_file(t[cp], t[_alarm_rows(alert)], window_s)
        for k, (a_tp, a_fp, a_fn) in enumerate(_PROFILES.values()):
            reward = float(np.sum(_reward_curve(a_tp, a_fp)[rewards]))
            totals[k] += reward + a_fp * n_fp + a_fn * n_missed
        n_changepoints += int(np.count_nonzero(cp))
        missed += n_missed
        false_positives += n_fp
    if n_changepoints == 0:
        raise ValueError("nab_score needs at least one true changepoint; got none in any file")
    standard, low_fp, low_fn = (
        float(100.0 * (s - n_changepoints * a_fn) / (n_changepoints * (a_tp - a_fn)))
        for s, (a_tp, _, a_fn) in zip(totals, _PROFILES.values(), strict=True)
    )
    return NabScore(standard, low_fp, low_fn, missed, false_positives, n_changepoints)


def _nab_file(
    cp_s: npt.NDArray[np.float64], alarm_s: npt.NDArray[np.float64], window_s: float
) -> tuple[npt.NDArray[np.int64], int, int]:
    """Reward-table indices of detected windows, missed windows and false alarms of a file."""
    starts = cp_s.copy()
    ends = cp_s + window_s
    starts[1:] = np.maximum(starts[1:], ends[:-1])
    # Sentinels past both ends keep the lookups in range for empty arrays.
    padded_alarms = np.append(alarm_s, np.inf)
    first_s = padded_alarms[np.searchsorted(alarm_s, starts, side="left")]
    is_hit = first_s <= ends
    # Same expression as upstream's my_scale(), so the truncation matches bit for bit.
    fraction = (first_s[is_hit] - starts[is_hit]) / (ends[is_hit] - starts[is_hit]) * _DETAIL
    rewards = np.minimum(fraction.astype(np.int64), _DETAIL - 1)
    # An alarm inside any window is inside the last window starting at or before it.
    padded_ends = np.append(ends, -np.inf)
    last = np.searchsorted(starts, alarm_s, side="right") - 1
    n_inside = int(np.count_nonzero(alarm_s <= padded_ends[last]))
    n_missed = len(starts) - int(np.count_nonzero(is_hit))
    return rewards, n_missed, len(alarm_s) - n_inside


def _reward_curve(a_tp: float, a_fp: float) -> npt.NDArray[np.float64]:
    """SKAB's ``my_scale`` table ``(1000,)``: from ``a_tp`` down to ``a_fp`` (koef 1)."""
    x = np.linspace(-np.pi / 2, np.pi / 2, _DETAIL)
    half = (a_tp - a_fp) / 2
    curve: npt.NDArray[np.float64] = half * -1 * np.tanh(x) / np.tanh(np.pi / 2) + half + a_fp
    return curve


def _alarm_rows(alert: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Rows where the prediction changes, the first row counting when it is on."""
    return np.concatenate((alert[:1], alert[1:] != alert[:-1]))


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Start rows and exclusive end rows of the maximal runs of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _point_from_counts(tp: int, fp: int, fn: int, tn: int) -> PointMetrics:
    return PointMetrics(
        f1=_ratio(tp, tp + (fp + fn) / 2, empty=1.0),
        far=_ratio(fp, fp + tn, empty=0.0),
        mar=_ratio(fn, fn + tp, empty=0.0),
        precision=_ratio(tp, tp + fp, empty=1.0),
        recall=_ratio(tp, tp + fn, empty=1.0),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
    )


def _event_from_counts(
    *, n_true: int, n_detected: int, n_predicted: int, n_false: int, delays_s: tuple[float, ...]
) -> EventMetrics:
    return EventMetrics(
        precision=_ratio(n_predicted - n_false, n_predicted, empty=1.0),
        recall=_ratio(n_detected, n_true, empty=1.0),
        mean_delay_s=float(np.mean(delays_s)) if delays_s else None,
        n_true=n_true,
        n_detected=n_detected,
        n_predicted=n_predicted,
        n_false=n_false,
        delays_s=delays_s,
    )


def _ratio(num: float, den: float, *, empty: float) -> float:
    return float(num / den) if den else empty


def _labels_pair(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    truth, alert = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if truth.shape != alert.shape:
        raise ValueError(
            f"y_true has {truth.size} rows but y_pred has {alert.size}; pass one label per row"
        )
    return truth, alert


def _labels(values: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {arr.shape}")
    if arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))][:3].tolist()
        raise ValueError(f"{name} must hold only 0 and 1, found {bad}; threshold scores first")
    return arr.astype(np.bool_)


def _timestamps(values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    t = np.asarray(values, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"timestamps_s must have shape ({n},) like the labels, got {t.shape}")
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise ValueError(
            "timestamps_s must be finite and strictly increasing seconds; "
            "sort the rows and drop duplicate timestamps"
        )
    return t
