"""Window scores to per-asset decisions and alert events (pipeline stages: Threshold → AlertState).

The scorer's errors arrive in batches; the detector walks each asset's windows in time
order, compares each error with the asset's current cut and feeds the result to the
``AlertState``. With ``Adaptation`` on, the cut follows slow drift: each asset keeps a
baseline of its recent scores judged normal (never anomalous ones, and not while an alert
fires), in the spirit of DSPOT (Siffer et al., KDD 2017), so a threshold learnt on a short
history is not carried unchanged over months of drifting plant.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from aewatch.model.alerts import AlertEvent, AlertState
from aewatch.model.scorer import Scores
from aewatch.model.threshold import Threshold

__all__ = ["Adaptation", "DecisionSettings", "Detector", "Verdicts"]


@dataclass(frozen=True, slots=True)
class Adaptation:
    """Drift-following cut: ``cut = threshold.value · median(recent normal) / reference``.

    ``depth`` is how many recent normal scores form the baseline; ``reference`` is the
    median calibration score, so the cut equals the calibrated one until drift moves the
    baseline. ``max_ratio`` bounds how far the cut may move either way.
    """

    depth: int = 300
    reference: float = 1.0
    max_ratio: float = 4.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """Hysteresis and adaptation, stored in the bundle next to the threshold."""

    raise_after: int = 1
    resolve_after: int = 1
    adaptation: Adaptation | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        obj: dict[str, Any] = {"raise_after": self.raise_after, "resolve_after": self.resolve_after}
        obj["adaptation"] = self.adaptation.to_json() if self.adaptation else None
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``; missing keys take their defaults."""
        adapt = obj.get("adaptation")
        return cls(
            raise_after=int(obj.get("raise_after", 1)),
            resolve_after=int(obj.get("resolve_after", 1)),
            adaptation=Adaptation(**adapt) if adapt else None,
        )


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Per-window outcome for ``k`` windows of one asset, in time order.

    ``cuts`` ``(k,)`` the threshold in force; ``is_anomalous`` ``(k,)`` score above it;
    ``is_firing`` ``(k,)`` the asset's alert state after the window; ``events`` the
    raise/resolve events those windows caused.
    """

    cuts: npt.NDArray[np.float32]
    is_anomalous: npt.NDArray[np.bool_]
    is_firing: npt.NDArray[np.bool_]
    events: list[AlertEvent] = field(default_factory=list)


@dataclass(slots=True)
class _Baseline:
    scores: deque[float]


class Detector:
    """Decides, per asset and window, whether the asset behaves abnormally."""

    def __init__(
        self, threshold: Threshold, channels: tuple[str, ...], settings: DecisionSettings
    ) -> None:
        self.threshold = threshold
        self.channels = channels
        self.settings = settings
        self.alerts = AlertState(settings.raise_after, settings.resolve_after)
        self._baselines: dict[str, _Baseline] = {}

    def decide(self, asset: str, end_timestamps: npt.ArrayLike, scores: Scores) -> Verdicts:
        """Walk ``asset``'s windows (time order) through threshold and hysteresis."""
        ends = np.asarray(end_timestamps, dtype=np.float64)
        k = len(ends)
        cuts = np.empty(k, dtype=np.float32)
        anomalous = np.zeros(k, dtype=np.bool_)
        firing = np.zeros(k, dtype=np.bool_)
        events: list[AlertEvent] = []
        for i in range(k):
            score = float(scores.errors[i])
            cut = self._cut(asset)
            cuts[i] = cut
            anomalous[i] = score > cut
            event = self.alerts.update(
                asset,
                is_anomalous=bool(anomalous[i]),
                at=float(ends[i]),
                score=score,
                threshold=cut,
                channel_errors=dict(
                    zip(self.channels, scores.channel_errors[i].tolist(), strict=True)
                ),
            )
            if event is not None:
                events.append(event)
            firing[i] = self.alerts.is_firing(asset)
            if not anomalous[i] and not firing[i]:
                self._learn(asset, score)
        return Verdicts(cuts, anomalous, firing, events)

    def forget(self, asset: str) -> None:
        """Drop everything known about ``asset``."""
        self.alerts.forget(asset)
        self._baselines.pop(asset, None)

    def _cut(self, asset: str) -> float:
        adapt = self.settings.adaptation
        baseline = self._baselines.get(asset)
        if adapt is None or baseline is None or len(baseline.scores) < adapt.depth // 4:
            return self.threshold.value
        ratio = float(np.median(baseline.scores)) / max(adapt.reference, 1e-12)
        ratio = min(max(ratio, 1.0 / adapt.max_ratio), adapt.max_ratio)
        return self.threshold.value * ratio

    def _learn(self, asset: str, score: float) -> None:
        adapt = self.settings.adaptation
        if adapt is None:
            return
        baseline = self._baselines.setdefault(asset, _Baseline(deque(maxlen=adapt.depth)))
        baseline.scores.append(score)
