"""Window errors to per-asset decisions and alert events (pipeline stages: Threshold → AlertState).

The scorer's errors arrive in batches; the detector walks each asset's windows in time
order and turns each error into a decision statistic:

1. **Smoothing.** An exponentially weighted moving average of the window errors
   (half-life ``smoothing_halflife`` windows), so one noisy window is not an alarm while a
   sustained rise is.
2. **Drift baseline** (``Adaptation``). The smoothed error is divided by the mean of the
   asset's last ``depth`` smoothed errors *judged normal* — never anomalous ones, and none
   while an alert fires — in the spirit of DSPOT (Siffer et al., KDD 2017). A threshold
   learnt on a short history then follows slow drift of the plant instead of being carried
   unchanged over it. The baseline starts from the calibration windows.

3. **Re-baselining after a fault** (``Adaptation.drop``). Plant often settles into a new
   steady state after a fault ends (SKAB's rig comes back with 3–5× its old error). While
   an alert has fired for at least ``min_alert`` windows, a window whose statistic falls
   below ``drop`` × the alert's median counts as normal for resolving it; an alert closed
   that way restarts the baseline at the current level, so the new plateau is the new normal.

The statistic is compared with the calibrated ``Threshold``. Beside it, each channel's
residual and sensor-health checks (``aewatch.core.checks``: shift, noise, stuck, range, spikes)
watch the newest samples of every window; a window is anomalous when the window error is
over the threshold in force *or* any check is at its limit, and the outcome is fed to the
``AlertState`` (hysteresis). What a caller sees is in the error's own units: ``score``
(the smoothed error) against the threshold in force (``thresholds``: threshold × baseline);
an alert also says which check and which channels (``AlertEvent.kind``, ``findings``).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from aewatch.core.alerts import (
    RECONSTRUCTION,
    AlertEvent,
    AlertState,
    AlertTrack,
    Finding,
    OpenAlert,
)
from aewatch.core.checks import (
    CHECK_KINDS,
    RANGE,
    SPIKES,
    ChannelChecks,
    ChannelMonitor,
    Observation,
)
from aewatch.core.ewma import ewma_from
from aewatch.core.threshold import Threshold

__all__ = [
    "Adaptation",
    "AssetState",
    "DecisionSettings",
    "Detector",
    "Verdicts",
    "WindowScores",
    "decision_statistic",
    "smooth",
]


class WindowScores(Protocol):
    """What the detector reads of a scorer's output for ``n`` windows of ``channels``.

    ``errors`` ``(n,)`` float32, each window's anomaly score; ``channel_errors``
    ``(n, channels)`` float32, its error per channel. ``aewatch.model.scorer.Scores``
    has both, so the core needs no torch to name it.
    """

    @property
    def errors(self) -> npt.NDArray[np.float32]: ...

    @property
    def channel_errors(self) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class Adaptation:
    """Drift baseline: mean of the last ``depth`` smoothed errors judged normal.

    ``seed`` holds the smoothed calibration errors the baseline starts from (the newest
    ``depth`` of them), so a fresh asset is judged like the held-out history was.
    ``drop`` and ``min_alert`` set re-baselining after a fault (module docstring); ``drop``
    0 turns it off.
    """

    depth: int = 100
    seed: tuple[float, ...] = ()
    drop: float = 0.0
    min_alert: int = 30
    floor: float = 0.0  # the baseline never falls below floor × the seed's mean

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"adaptation depth must be >= 1 window, got {self.depth}")


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """Smoothing, adaptation and hysteresis, stored in the bundle next to the threshold."""

    raise_after: int = 1
    resolve_after: int = 1
    smoothing_halflife: float = 0.0  # windows; 0 turns smoothing off
    adaptation: Adaptation | None = None
    checks: ChannelChecks | None = None  # None: the window error alone decides

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        adapt = self.adaptation
        return {
            "raise_after": self.raise_after,
            "resolve_after": self.resolve_after,
            "smoothing_halflife": self.smoothing_halflife,
            "adaptation": None if adapt is None else {**asdict(adapt), "seed": list(adapt.seed)},
            "checks": None if self.checks is None else self.checks.to_json(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``; missing keys take their defaults."""
        adapt = obj.get("adaptation")
        checks = obj.get("checks")
        return cls(
            raise_after=int(obj.get("raise_after", 1)),
            resolve_after=int(obj.get("resolve_after", 1)),
            smoothing_halflife=float(obj.get("smoothing_halflife", 0.0)),
            adaptation=None
            if not adapt
            else Adaptation(**{**adapt, "seed": tuple(float(v) for v in adapt.get("seed", ()))}),
            checks=None if not checks else ChannelChecks.from_json(checks),
        )

    @property
    def alpha(self) -> float:
        """Weight of the newest window in the moving average (1 = no smoothing)."""
        if self.smoothing_halflife <= 0:
            return 1.0
        return 1.0 - math.pow(0.5, 1.0 / self.smoothing_halflife)


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Per-window outcome for ``k`` windows of one asset, in time order.

    ``scores`` ``(k,)`` the smoothed error; ``thresholds`` ``(k,)`` the threshold in force,
    in the same units; ``is_anomalous`` ``(k,)`` score above it or a check at its limit;
    ``is_firing`` ``(k,)`` the asset's alert state after the window; ``severity`` ``(k,)``
    the worst of score / threshold and each check's statistic / its limit (1 or more:
    anomalous); ``events`` the raise/resolve events those windows caused;
    ``outside_envelope`` how many of the windows have a new reading outside the training
    envelope (the range check's), where the calibration, and so the false-alert estimate,
    does not hold.
    """

    scores: npt.NDArray[np.float32]
    thresholds: npt.NDArray[np.float32]
    is_anomalous: npt.NDArray[np.bool_]
    is_firing: npt.NDArray[np.bool_]
    severity: npt.NDArray[np.float32]
    events: list[AlertEvent] = field(default_factory=list)
    outside_envelope: int = 0


_NON_FINITE_FACTOR = 1000.0  # a non-finite window error counts as this many thresholds
_TINY = 1e-12
_ALERT_MEDIAN_SPAN = 1000  # in-alert statistics kept for the median: bounded memory
_RUN_MIN = 8  # fewer windows than this left: one by one (a run's fixed cost is ~20 µs)
_RUN_SPAN = 1024  # windows a run looks ahead at once


@dataclass(slots=True)
class AssetState:
    """Everything a detector knows of one asset: its smoothing, drift baseline, in-alert
    statistics and alert (``alert``: the hysteresis, the open alert and its peak). Its
    channel checks' statistics are row ``row`` of the model's :class:`ChannelMonitor`
    arrays (-1: the model has no checks), so the checks of many assets run together.

    The daemon's pipeline keeps one in each asset's track, beside its grid and window
    (:meth:`Detector.new_state`, :meth:`Detector.adopt` on a reload); offline scoring
    keeps them by name in the detector (:meth:`Detector.decide`).

    The baseline's normal values live in a ring of doubles (8 bytes each, not a deque of
    float objects at 32): with 10 000 assets and depth 100 that is 8 MB, not 32. The
    in-alert statistics exist only once the asset has fired.
    """

    asset: str = ""
    row: int = -1
    smoothed: float | None = None
    normal: array[float] = field(default_factory=lambda: array("d"))
    normal_count: int = 0
    normal_next: int = 0  # where the next normal value goes (the oldest, once full)
    normal_sum: float = 0.0
    in_alert: deque[float] | None = None
    in_alert_sorted: list[float] = field(default_factory=list)  # the same, in order
    alert_windows: int = 0
    dropped: bool = False  # the current normal run counted a relative drop as normal
    floor: float = 0.0
    alert: AlertTrack = field(default_factory=AlertTrack)

    def baseline(self) -> float:
        return self.normal_sum / self.normal_count if self.normal_count else 1.0

    def learn(self, value: float, depth: int) -> None:
        """Add a normal value; beyond ``depth`` values the oldest leaves the mean."""
        if len(self.normal) != depth:
            self._resize(depth)
        self.normal_sum += value
        if self.normal_count == depth:
            self.normal_sum -= self.normal[self.normal_next]
        else:
            self.normal_count += 1
        self.normal[self.normal_next] = value
        self.normal_next = (self.normal_next + 1) % depth

    def restart_baseline(self, value: float, depth: int) -> None:
        self.normal_count = self.normal_next = 0
        self.normal_sum = 0.0
        for _ in range(depth):
            self.learn(value, depth)

    def note_alert(self, statistic: float) -> None:
        """Keep one in-alert statistic (the newest ``_ALERT_MEDIAN_SPAN`` are kept)."""
        if self.in_alert is None:
            self.in_alert = deque(maxlen=_ALERT_MEDIAN_SPAN)
            self.in_alert_sorted = []
        if len(self.in_alert) == self.in_alert.maxlen:
            del self.in_alert_sorted[bisect.bisect_left(self.in_alert_sorted, self.in_alert[0])]
        self.in_alert.append(statistic)
        bisect.insort(self.in_alert_sorted, statistic)

    def alert_median(self) -> float:
        """The median of the kept in-alert statistics, as ``np.median`` gives it."""
        ordered = self.in_alert_sorted
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    def normals(self) -> npt.NDArray[np.float64]:
        """The normal values the baseline averages, oldest first."""
        ring = np.frombuffer(self.normal, dtype=np.float64)
        if self.normal_count < len(ring):
            return ring[: self.normal_count].copy()
        return np.concatenate((ring[self.normal_next :], ring[: self.normal_next]))

    def _resize(self, depth: int) -> None:
        """A ring of ``depth`` slots holding the newest normal values (a reload changed it)."""
        self.keep_normals(self.normals(), depth)

    def keep_normals(self, values: npt.NDArray[np.float64], depth: int) -> None:
        """The baseline averages the newest ``depth`` of ``values`` (oldest first) from now.

        ``normals()`` followed by new normal values is as many :meth:`learn` calls in one
        step; the mean is summed afresh, so it rounds a little differently from the running
        sum ``learn`` keeps.
        """
        kept = values[len(values) - min(depth, len(values)) :]
        ring = np.zeros(depth, dtype=np.float64)
        ring[: len(kept)] = kept
        self.normal = array("d", ring.tobytes())
        self.normal_count = len(kept)
        self.normal_next = len(kept) % depth
        self.normal_sum = float(kept.sum())


class Detector:
    """Decides, per asset and window, whether the asset behaves abnormally."""

    def __init__(
        self, threshold: Threshold, channels: tuple[str, ...], settings: DecisionSettings
    ) -> None:
        self.threshold = threshold
        self.channels = channels
        self.settings = settings
        # The hysteresis rules; each asset's alert is kept in its own state (AssetState).
        self.alerts = AlertState(settings.raise_after, settings.resolve_after)
        self.monitor = None if settings.checks is None else ChannelMonitor(settings.checks)
        self._named: dict[str, AssetState] = {}  # decide()'s states, by asset

    def decide(
        self,
        asset: str,
        end_timestamps: npt.ArrayLike,
        scores: WindowScores,
        windows: npt.NDArray[np.floating] | None = None,
    ) -> Verdicts:
        """Walk ``asset``'s windows (time order) through smoothing, threshold and hysteresis.

        The detector keeps ``asset``'s state by name from one call to the next (offline
        scoring, a self-check); the daemon keeps each asset's own (:meth:`decide_states`).
        """
        return self.decide_many([asset], [0, len(scores.errors)], end_timestamps, scores, windows)

    def decide_many(
        self,
        assets: Sequence[str],
        bounds: Sequence[int] | npt.NDArray[np.int64],
        end_timestamps: npt.ArrayLike,
        scores: WindowScores,
        windows: npt.NDArray[np.floating] | None = None,
    ) -> Verdicts:
        """:meth:`decide` for the windows of many assets at once, in one set of arrays.

        The windows of ``assets[g]`` are ``bounds[g]:bounds[g + 1]``, in time order; the
        verdicts come in the same order as the windows. ``windows`` ``(n, c, L)`` are the
        raw windows the scores came from: the channel checks watch their newest samples
        (without them only the window error decides).
        """
        states = [self._state(asset) for asset in assets]
        return self.decide_states(states, bounds, end_timestamps, scores, windows)

    def decide_states(
        self,
        states: Sequence[AssetState],
        bounds: Sequence[int] | npt.NDArray[np.int64],
        end_timestamps: npt.ArrayLike,
        scores: WindowScores,
        windows: npt.NDArray[np.floating] | None = None,
    ) -> Verdicts:
        """:meth:`decide_many` on states the caller keeps (:meth:`new_state`): the windows
        of ``states[g]``'s asset are ``bounds[g]:bounds[g + 1]``."""
        ends = np.asarray(end_timestamps, dtype=np.float64).tolist()
        raw_array = np.asarray(scores.errors, dtype=np.float64)
        raws = raw_array.tolist()
        adapt = self.settings.adaptation
        alpha = self.settings.alpha
        value = self.threshold.value
        alerts = self.alerts
        total = len(ends)
        out_scores = [0.0] * total
        thresholds = [0.0] * total
        anomalous = [False] * total
        firing = [False] * total
        events: list[AlertEvent] = []
        cap = _NON_FINITE_FACTOR * max(value, _TINY)
        finite_errors: npt.NDArray[np.float32] | None = None
        checked = self._check(states, bounds, windows, total)
        check_ratio = checked.worst.tolist()
        severity = list(check_ratio)
        for group, state in enumerate(states):
            i, k = int(bounds[group]), int(bounds[group + 1])
            asset = state.asset
            next_run = i  # the first window a run of normal windows may be tried from
            while i < k:
                if i >= next_run and k - i >= _RUN_MIN and not state.alert.is_firing:
                    # A run of normal windows (the common case) in one step, up to the first
                    # anomalous one; that one, and a few after it, go one by one below.
                    end = min(k, i + _RUN_SPAN)
                    scores_run, thresholds_run = self._normal_run(
                        state, raw_array[i:end], checked.is_over[i:end]
                    )
                    n = len(scores_run)
                    if n:
                        alerts.fold_normal(state.alert, asset, ends[i], n)
                        out_scores[i : i + n] = scores_run.tolist()
                        thresholds[i : i + n] = thresholds_run.tolist()
                        severity[i : i + n] = np.maximum(
                            scores_run / np.maximum(thresholds_run, _TINY), checked.worst[i : i + n]
                        ).tolist()
                        i += n
                        if i == k:
                            break
                    if n == _RUN_SPAN:
                        continue  # a long run: the next span at once
                    next_run = i + _RUN_MIN
                raw = raws[i]
                if not math.isfinite(raw):
                    # A value so large the scaled window overflowed: anomalous, but capped, so
                    # the smoothed score comes back once the value has left the window.
                    raw = cap
                smoothed = (
                    raw
                    if state.smoothed is None
                    else (alpha * raw + (1.0 - alpha) * state.smoothed)
                )
                state.smoothed = smoothed
                baseline = max(state.baseline(), state.floor) if adapt else 1.0
                in_force = value * baseline
                out_scores[i], thresholds[i] = smoothed, in_force
                ae_ratio = smoothed / max(in_force, _TINY)
                severity[i] = window_severity = max(ae_ratio, check_ratio[i])
                is_over = smoothed > in_force
                is_anomalous = anomalous[i] = is_over or check_ratio[i] >= 1.0
                was_firing = state.alert.is_firing
                if not (is_anomalous or was_firing):  # a normal window, kept short
                    alerts.fold_normal(state.alert, asset, ends[i])
                    if adapt is not None:
                        state.learn(smoothed, adapt.depth)
                        state.dropped = False
                    i += 1
                    continue
                counts_anomalous = (
                    is_over and not (was_firing and self._has_dropped(state, smoothed / baseline))
                ) or check_ratio[i] >= 1.0
                # Channel errors and findings matter only to a new peak of an alert: build
                # them only then.
                channel_errors = None
                kind = RECONSTRUCTION
                findings: tuple[Finding, ...] = ()
                if (counts_anomalous or was_firing) and window_severity > state.alert.peak_severity:
                    if finite_errors is None:
                        finite_errors = np.nan_to_num(scores.channel_errors, nan=cap, posinf=cap)
                    row = finite_errors[i].tolist()
                    channel_errors = dict(zip(self.channels, row, strict=True))
                    kind, findings = checked.findings(i, ae_ratio, finite_errors[i], self.channels)
                event = alerts.fold(
                    state.alert,
                    asset,
                    is_anomalous=counts_anomalous,
                    at=ends[i],
                    score=smoothed,
                    threshold=in_force,
                    channel_errors=channel_errors,
                    severity=window_severity,
                    kind=kind,
                    findings=findings,
                )
                if event is not None:
                    events.append(event)
                is_firing = firing[i] = state.alert.is_firing
                if adapt is not None:
                    self._adapt(
                        state,
                        adapt,
                        smoothed,
                        baseline,
                        is_normal=not is_over,
                        was_firing=was_firing,
                        is_firing=is_firing,
                    )
                i += 1
        return Verdicts(
            np.array(out_scores, dtype=np.float32),
            np.array(thresholds, dtype=np.float32),
            np.array(anomalous, dtype=np.bool_),
            np.array(firing, dtype=np.bool_),
            np.array(severity, dtype=np.float32),
            events,
            checked.outside_envelope(),
        )

    def _check(
        self,
        states: Sequence[AssetState],
        bounds: Sequence[int] | npt.NDArray[np.int64],
        windows: npt.NDArray[np.floating] | None,
        total: int,
    ) -> _Checked:
        """Run the channel checks over the windows of ``states`` (none: nothing over)."""
        monitor = self.monitor
        if monitor is None or windows is None or total == 0:
            return _Checked(None, np.zeros(total), np.zeros(total, dtype=np.bool_))
        sizes = np.diff(np.asarray(bounds, dtype=np.int64)).astype(np.int64)
        slots = np.repeat(np.array([s.row for s in states], dtype=np.int64), sizes)
        observed = monitor.observe(slots, windows)
        worst = observed.worst()
        return _Checked(observed, worst, worst >= 1.0, monitor.checks)

    def _normal_run(
        self,
        state: AssetState,
        raws: npt.NDArray[np.float64],
        is_blocked: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Smoothed scores and thresholds in force of the leading normal windows of ``raws``,
        applied.

        For an asset that does not fire: every window is first taken to be normal, which
        fixes each one's baseline; the run ends before the first window whose score then
        meets its threshold, or that a channel check flags (``is_blocked``). The run's windows
        are folded into the smoothing and the baseline as the one-by-one path would fold
        them (sums rounded differently); the caller notes them in the alert state.
        """
        settings = self.settings
        value = self.threshold.value
        x = raws
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, _NON_FINITE_FACTOR * max(value, _TINY))
        smoothed = ewma_from(x, settings.alpha, state.smoothed)
        adapt = settings.adaptation
        if adapt is None:
            in_force = np.full(len(x), value)
        else:
            known = state.normals()
            normals = np.concatenate((known, smoothed))  # if all windows are normal
            total = np.concatenate(([0.0], np.cumsum(normals[:-1])))
            stop = len(known) + np.arange(len(x))
            start = np.maximum(stop - adapt.depth, 0)
            count = stop - start
            with np.errstate(invalid="ignore", divide="ignore"):
                baseline = np.where(count > 0, (total[stop] - total[start]) / count, 1.0)
            in_force = value * np.maximum(baseline, state.floor)
        over = np.flatnonzero((smoothed > in_force) | is_blocked)
        n = int(over[0]) if len(over) else len(x)
        if n:
            state.smoothed = float(smoothed[n - 1])
            if adapt is not None:
                state.keep_normals(normals[: len(known) + n], adapt.depth)
                state.dropped = False
        return smoothed[:n], in_force[:n]

    def _has_dropped(self, state: AssetState, statistic: float) -> bool:
        """True when a long alert's statistic fell far below its median (a new plateau)."""
        adapt = self.settings.adaptation
        if adapt is None or adapt.drop <= 0 or state.alert_windows < adapt.min_alert:
            return False
        if not state.in_alert:
            return False  # an alert resumed from an earlier process: no statistics yet
        if statistic < adapt.drop * state.alert_median():
            state.dropped = True
            return True
        return False

    @staticmethod
    def _adapt(
        state: AssetState,
        adapt: Adaptation,
        smoothed: float,
        baseline: float,
        *,
        is_normal: bool,
        was_firing: bool,
        is_firing: bool,
    ) -> None:
        """Update the baseline: never while firing; restart it after a drop resolution."""
        if is_firing:
            if not was_firing:
                state.in_alert = None
                state.in_alert_sorted = []
                state.alert_windows = 0
                state.dropped = False
            state.note_alert(smoothed / baseline)
            state.alert_windows += 1
            return
        if was_firing and state.dropped:
            # Resolved through a relative drop: the plateau the plant settled on is normal now.
            state.restart_baseline(smoothed, adapt.depth)
        elif is_normal:
            state.learn(smoothed, adapt.depth)
        state.dropped = False

    def mark_stale(
        self,
        state: AssetState,
        at: float,
        silent: Sequence[tuple[str, float, float]],
        silent_s: float,
    ) -> AlertEvent | None:
        """An anomalous moment for ``state``'s asset: the ``silent`` channels stopped reporting.

        ``silent`` holds ``(channel, time of its last reading, that reading)``; ``silent_s``
        is how long a channel may go without a reading before the asset's rows are given
        up. Raises a ``stale`` alert (or adds to the open one); the windows that come
        once the channels are back resolve it as any other.
        """
        findings = []
        worst = 1.0
        for channel, last_s, value in silent[:_MAX_FINDINGS]:
            ratio = (at - last_s) / silent_s if math.isfinite(last_s) and silent_s > 0 else 1.0
            worst = max(worst, ratio)
            findings.append(Finding(channel, STALE, value, math.nan, math.nan, ratio))
        event = None
        # A channel gone silent has waited out its gap already: raise at once, whatever
        # raise_after asks of windows.
        track = state.alert
        for _ in range(self.alerts.raise_after):
            event = self.alerts.fold(
                track,
                state.asset,
                is_anomalous=True,
                at=at,
                score=math.nan,
                threshold=self.threshold.value,
                severity=worst,
                kind=STALE,
                findings=tuple(findings),
            )
            if event is not None or track.is_firing:
                break
        return event

    def new_state(self, asset: str) -> AssetState:
        """A fresh state for ``asset``: its baseline seeded from calibration, a row of checks."""
        adapt = self.settings.adaptation
        state = _seeded_state(adapt) if adapt else AssetState()
        state.asset = asset
        if self.monitor is not None:
            state.row = self.monitor.open()
        return state

    def export_state(self, state: AssetState) -> dict[str, Any]:
        """``state`` as plain JSON, for :meth:`import_state` in a later process serving the
        same model (a clean restart goes on where the stop left off)."""
        return {
            "smoothed": state.smoothed,
            "normals": state.normals().tolist(),
            "in_alert": [] if state.in_alert is None else list(state.in_alert),
            "alert_windows": state.alert_windows,
            "dropped": state.dropped,
            "floor": state.floor,
            "alert": state.alert.to_json(),
            "checks": None
            if self.monitor is None or state.row < 0
            else self.monitor.export_row(state.row),
        }

    def import_state(self, asset: str, saved: dict[str, Any]) -> AssetState:
        """A state for ``asset`` from what :meth:`export_state` gave (a row of checks
        taken here).

        Raises:
            ValueError: ``saved`` is not such a state, or its checks do not fit this
                model's.
        """
        try:
            smoothed = saved["smoothed"]
            normals = [float(v) for v in saved["normals"]]
            in_alert = [float(v) for v in saved["in_alert"]]
            state = AssetState(
                asset=asset,
                smoothed=None if smoothed is None else float(smoothed),
                alert_windows=int(saved["alert_windows"]),
                dropped=bool(saved["dropped"]),
                floor=float(saved["floor"]),
                alert=AlertTrack.from_json(saved["alert"]),
            )
            checks = saved["checks"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a detector state: {err}") from err
        adapt = self.settings.adaptation
        if adapt is not None:
            for value in normals[-adapt.depth :]:
                state.learn(value, adapt.depth)
        for value in in_alert:
            state.note_alert(value)
        if self.monitor is not None:
            if checks is None:
                raise ValueError("the saved state has no channel statistics; this model checks")
            state.row = self.monitor.open()
            try:
                self.monitor.import_row(state.row, checks)
            except ValueError:
                self.monitor.close(state.row)
                raise
        return state

    def resumed_state(self, alert: OpenAlert) -> AssetState:
        """A fresh state whose alert is one an earlier process left open (as
        :meth:`AlertState.restore` resumes it)."""
        state = self.new_state(alert.asset)
        state.alert = AlertTrack.resumed(alert)
        return state

    def adopt(self, state: AssetState, previous: Detector) -> None:
        """Serve ``state`` from now on, ``previous`` having served it (a reload replaced the
        model): its smoothing, baseline and alert carry over as they are, so an open alert
        stays open under its id; its checks' row moves over when the channels agree and
        starts afresh otherwise."""
        if previous is self:
            return
        if previous.monitor is not None and state.row >= 0:
            if self.monitor is not None:
                state.row = self.monitor.adopt(state.row, previous.monitor)
                return
            previous.monitor.close(state.row)
        state.row = self.monitor.open() if self.monitor is not None else -1

    def release(self, state: AssetState) -> None:
        """Give back what ``state`` holds here (its checks' row): its asset is gone."""
        if self.monitor is not None and state.row >= 0:
            self.monitor.close(state.row)
        state.row = -1

    def _state(self, asset: str) -> AssetState:
        state = self._named.get(asset)
        if state is None:
            state = self._named[asset] = self.new_state(asset)
        return state


_MAX_FINDINGS = 4
STALE = "stale"  # a channel stopped reporting while the asset's others go on


@dataclass(frozen=True, slots=True)
class _Checked:
    """The channel checks' outcome for one call: ``worst`` ``(n,)`` ratio, ``is_over``."""

    observed: Observation | None
    worst: npt.NDArray[np.float64]
    is_over: npt.NDArray[np.bool_]
    checks: ChannelChecks | None = None

    def outside_envelope(self) -> int:
        """Windows with a new reading outside the training envelope."""
        if self.observed is None or not len(self.observed.ratios):
            return 0
        return int((self.observed.ratios[:, RANGE].max(axis=1) >= 1.0).sum())

    def findings(
        self,
        i: int,
        ae_ratio: float,
        channel_errors: npt.NDArray[np.float32],
        channels: tuple[str, ...],
    ) -> tuple[str, tuple[Finding, ...]]:
        """What window ``i``'s alert is and the channels that look wrong.

        With checks at their limit, the worst check names it and its channels are listed,
        worst first, each in its own units: a check says what a channel does wrong, so it
        names the alert even when the window error is further over its cut. Raised by the
        window error alone: the channels with the largest share of it.
        """
        observed, checks = self.observed, self.checks
        if observed is None or checks is None:
            return RECONSTRUCTION, ()
        ratios = observed.ratios[i]  # (kinds, c)
        by_channel = ratios.max(axis=0)
        if by_channel.max() < 1.0:
            kind = RECONSTRUCTION
            picked = np.argsort(-channel_errors, kind="stable")[:_MAX_FINDINGS]
            picked = picked[channel_errors[picked] > 0] if ae_ratio > 0 else picked[:0]
        else:
            kind = CHECK_KINDS[int(np.unravel_index(int(ratios.argmax()), ratios.shape)[0])]
            picked = np.argsort(-by_channel, kind="stable")[:_MAX_FINDINGS]
            picked = picked[by_channel[picked] >= 1.0]
        out = []
        for j in picked.tolist():
            check = int(ratios[:, j].argmax())
            channel_kind = kind if kind == RECONSTRUCTION else CHECK_KINDS[check]
            out.append(
                _finding(
                    observed,
                    checks,
                    i,
                    j,
                    channel=channels[j],
                    kind=channel_kind,
                    ratio=float(ratios[check, j]),
                )
            )
        return kind, tuple(out)


def _finding(
    observed: Observation,
    checks: ChannelChecks,
    i: int,
    j: int,
    *,
    channel: str,
    kind: str,
    ratio: float,
) -> Finding:
    measured = float(observed.measured[i, j])
    expected = float(observed.expected[i, j])
    noise = float(checks.model.noise[j])
    if kind == CHECK_KINDS[RANGE]:
        expected = float(np.clip(measured, checks.low[j], checks.high[j]))
    elif kind == CHECK_KINDS[SPIKES]:  # the latest spike and the mean of its neighbours
        measured = float(observed.spike[i, j])
        expected = float(observed.spike_expected[i, j])
    if kind == "shift":
        levels = float(observed.level[i, j])
        expected = measured - levels * noise  # the reading less the mean residual
    elif kind == "noise":
        levels = float(observed.spread[i, j])
    else:
        levels = (measured - expected) / noise
    return Finding(channel, kind, measured, expected, levels, ratio)


def _seeded_state(adapt: Adaptation) -> AssetState:
    state = AssetState()
    for value in adapt.seed[-adapt.depth :]:
        state.learn(value, adapt.depth)
    state.floor = adapt.floor * state.baseline() if adapt.seed else 0.0
    return state


def smooth(errors: npt.ArrayLike, halflife: float) -> npt.NDArray[np.float64]:
    """EWMA of ``errors`` ``(n,)`` with a half-life in windows, as the detector smooths."""
    alpha = DecisionSettings(smoothing_halflife=halflife).alpha
    return ewma_from(np.asarray(errors, dtype=np.float64), alpha, None)


def decision_statistic(
    errors: npt.ArrayLike, settings: DecisionSettings
) -> tuple[DecisionSettings, npt.NDArray[np.float64]]:
    """Return ``settings`` seeded from ``errors`` and the statistic a threshold is calibrated on.

    ``errors`` ``(n,)`` are held-out normal window errors in time order. They are smoothed as
    the detector smooths them; with adaptation, the newest ``depth`` smoothed errors become
    the drift baseline's seed and the statistic ``(n,)`` is the smoothed error over the
    seed's mean, as a fresh asset is judged. Without adaptation it is the smoothed error.

    >>> settings = DecisionSettings(adaptation=Adaptation(depth=2))
    >>> seeded, statistic = decision_statistic([1.0, 2.0, 4.0], settings)
    >>> seeded.adaptation.seed, statistic.tolist()
    ((2.0, 4.0), [0.3333333333333333, 0.6666666666666666, 1.3333333333333333])
    """
    smoothed = smooth(errors, settings.smoothing_halflife)
    adapt = settings.adaptation
    if adapt is None:
        return settings, smoothed
    seed = smoothed[-adapt.depth :]
    seeded = replace(settings, adaptation=replace(adapt, seed=tuple(float(v) for v in seed)))
    return seeded, smoothed / float(np.mean(seed))
