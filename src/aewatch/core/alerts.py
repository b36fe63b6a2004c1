"""Every asset's alert status with hysteresis (pipeline stage: AlertState).

An alert is raised after ``raise_after`` anomalous windows in a row and resolved after
``resolve_after`` normal ones in a row, so one noisy window neither raises nor clears an
alert. Each alert has a stable id made of the asset and the time its anomalous run began,
so a consumer can de-duplicate and pair a ``resolved`` with its ``raised``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "RECONSTRUCTION",
    "AlertEvent",
    "AlertState",
    "AlertTrack",
    "Finding",
    "OpenAlert",
    "alert_id",
    "iso_ms",
]

RAISED = "raised"
RESOLVED = "resolved"
RECONSTRUCTION = "reconstruction"  # the kind of an alert the autoencoder's window error raised


@dataclass(frozen=True, slots=True)
class Finding:
    """What one channel showed at an alert's peak, in the channel's own units.

    ``kind`` is the check that flagged it (``shift``, ``noise``, ``stuck``, ``range``) or
    ``reconstruction``. ``measured`` is the newest reading and ``expected`` what the
    channel should read: its prediction from the other channels and its recent past; for
    ``shift`` the reading less the residual's mean since the shift began; for ``range``
    the envelope's nearer edge. ``noise_levels`` is (measured - expected) / noise, except
    for ``noise``: the recent residual spread over its normal one.
    ``ratio`` is the check's statistic over its limit (1 = at the limit).
    """

    channel: str
    kind: str
    measured: float
    expected: float
    noise_levels: float
    ratio: float


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A raise or resolve decision for one asset; times are epoch seconds.

    ``contributions`` pairs each channel with its share of the window error at the alert's
    peak, largest first (shares sum to 1).
    """

    alert_id: str
    asset: str
    state: str  # "raised" or "resolved"
    started_at: float  # first anomalous window of the run
    at: float  # when this decision was taken (window end time)
    ended_at: float | None  # resolved only: first window of the normal run that closed it
    peak_score: float
    threshold: float
    contributions: tuple[tuple[str, float], ...]
    kind: str = RECONSTRUCTION  # what raised it, at its peak
    findings: tuple[Finding, ...] = ()  # the channels that look wrong, worst first
    severity: float = 0.0  # the peak's worst statistic over its limit (>= 1 raises)


@dataclass(slots=True)
class AlertTrack:
    """One asset's hysteresis: its current runs of anomalous and normal windows, its open
    alert (id, start) and the peak the alert reports. :class:`AlertState` folds windows
    into it; its owner (the asset's state in a :class:`~aewatch.core.detector.Detector`,
    or an :class:`AlertState` of its own) keeps it."""

    anomalous_run: int = 0
    normal_run: int = 0
    run_started_at: float = 0.0
    normal_started_at: float = 0.0
    is_firing: bool = False
    alert_id: str = ""
    started_at: float = 0.0
    peak_score: float = float("-inf")
    peak_threshold: float = 0.0
    peak_channels: dict[str, float] = field(default_factory=dict)
    peak_severity: float = float("-inf")
    peak_kind: str = RECONSTRUCTION
    peak_findings: tuple[Finding, ...] = ()

    @classmethod
    def resumed(cls, alert: OpenAlert) -> AlertTrack:
        """The track of an alert an earlier process left open: its id, start and peak (with
        its kind, severity and findings) kept, so the next normal run resolves it."""
        severity, peak, threshold = alert.severity, alert.peak_score, alert.threshold
        return cls(
            is_firing=True,
            alert_id=alert.alert_id,
            started_at=alert.started_at,
            peak_score=peak,
            peak_threshold=threshold,
            peak_channels=dict(alert.contributions),
            peak_severity=(
                severity if severity is not None else (peak / threshold if threshold > 0 else peak)
            ),
            peak_kind=alert.kind,
            peak_findings=alert.findings,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (infinities as JSON's ``Infinity``), for :meth:`from_json`."""
        out = asdict(self)
        out["peak_findings"] = [asdict(f) for f in self.peak_findings]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AlertTrack:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: ``obj`` is not such a track.
        """
        try:
            fields_ = dict(obj)
            fields_["peak_channels"] = {
                str(k): float(v) for k, v in dict(fields_["peak_channels"]).items()
            }
            fields_["peak_findings"] = tuple(Finding(**f) for f in fields_["peak_findings"])
            return cls(**fields_)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not an alert track: {err}") from err


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert an earlier process raised and did not resolve (its retained state says
    so): what :meth:`AlertState.restore` resumes."""

    asset: str
    alert_id: str
    started_at: float
    peak_score: float
    threshold: float
    contributions: Mapping[str, float]
    kind: str = RECONSTRUCTION
    severity: float | None = None
    findings: tuple[Finding, ...] = ()


class AlertState:
    """Hysteresis over per-window decisions, per asset.

    ``raise_after`` and ``resolve_after`` are the rules; an asset's runs and open alert are
    an :class:`AlertTrack`. :meth:`fold` and :meth:`fold_normal` work on a track its owner
    keeps (a :class:`~aewatch.core.detector.Detector` keeps each asset's with the rest of
    that asset's state); :meth:`update`, :meth:`note_normal` and :meth:`restore` on the
    tracks this object keeps by asset name (offline tools and tests).

    >>> s = AlertState(raise_after=2, resolve_after=2)
    >>> [e and e.state for e in (
    ...     s.update("w1", is_anomalous=True, at=1.0, score=5.0, threshold=1.0),
    ...     s.update("w1", is_anomalous=True, at=2.0, score=6.0, threshold=1.0),
    ...     s.update("w1", is_anomalous=False, at=3.0, score=0.1, threshold=1.0),
    ...     s.update("w1", is_anomalous=False, at=4.0, score=0.1, threshold=1.0))]
    [None, 'raised', None, 'resolved']
    """

    def __init__(self, raise_after: int = 1, resolve_after: int = 1) -> None:
        if raise_after < 1 or resolve_after < 1:
            raise ValueError(
                f"raise_after and resolve_after must be >= 1, got {raise_after}, {resolve_after}"
            )
        self.raise_after = raise_after
        self.resolve_after = resolve_after
        self._tracks: dict[str, AlertTrack] = {}

    def is_firing(self, asset: str) -> bool:
        """True while ``asset`` has a raised, unresolved alert."""
        track = self._tracks.get(asset)
        return track is not None and track.is_firing

    def firing(self) -> dict[str, str]:
        """Active alerts: asset → alert id."""
        return {a: t.alert_id for a, t in self._tracks.items() if t.is_firing}

    def restore(self, alert: OpenAlert) -> bool:
        """Resume an alert that an earlier process raised on its asset and did not resolve.

        The restored alert keeps its id, start and peak (with its kind, severity and
        findings), so the next anomalous window raises nothing and the next normal run
        resolves it under the same id. Does nothing and
        returns False when the asset already has state of its own (this process saw it).

        >>> s = AlertState()
        >>> s.restore(OpenAlert("w1", "w1@x", started_at=1.0, peak_score=5.0, threshold=1.0,
        ...           contributions={"flow": 1.0}))
        True
        >>> s.update("w1", is_anomalous=True, at=9.0, score=2.0, threshold=1.0) is None
        True
        >>> s.update("w1", is_anomalous=False, at=10.0, score=0.1, threshold=1.0).alert_id
        'w1@x'
        """
        if alert.asset in self._tracks:
            return False
        self._tracks[alert.asset] = AlertTrack.resumed(alert)
        return True

    def note_normal(self, asset: str, at: float, count: int = 1) -> None:
        """:meth:`update` for normal windows of an asset that does not fire (the common case).

        The same state as ``count`` calls of ``update(asset, is_anomalous=False, ...)`` for
        windows from ``at`` on, with no event possible, for less work. An asset that fires
        goes through :meth:`update` (one window at a time).
        """
        track = self._tracks.get(asset)
        if track is None:
            track = self._tracks[asset] = AlertTrack()
        self.fold_normal(track, asset, at, count)

    def fold_normal(self, track: AlertTrack, asset: str, at: float, count: int = 1) -> None:
        """:meth:`note_normal` on ``asset``'s ``track``, wherever its owner keeps it."""
        if track.is_firing:
            if count != 1:
                raise ValueError(f"{asset} fires: note its normal windows one at a time")
            self.fold(
                track,
                asset,
                is_anomalous=False,
                at=at,
                score=float("-inf"),
                threshold=0.0,
                severity=float("-inf"),
            )
            return
        if track.normal_run == 0:
            track.normal_started_at = at
        track.normal_run += count
        track.anomalous_run = 0
        if track.peak_severity != float("-inf"):
            _clear_peak(track)

    def update(
        self,
        asset: str,
        *,
        is_anomalous: bool,
        at: float,
        score: float,
        threshold: float,
        channel_errors: Mapping[str, float] | None = None,
        severity: float | None = None,
        kind: str = RECONSTRUCTION,
        findings: tuple[Finding, ...] = (),
    ) -> AlertEvent | None:
        """Fold one window's decision into ``asset``'s state; return the event it causes.

        ``severity`` ranks the windows of an alert (default ``score / threshold``): the
        worst one's score, channels, ``kind`` and ``findings`` are what the alert reports.
        """
        return self.fold(
            self._tracks.setdefault(asset, AlertTrack()),
            asset,
            is_anomalous=is_anomalous,
            at=at,
            score=score,
            threshold=threshold,
            channel_errors=channel_errors,
            severity=severity,
            kind=kind,
            findings=findings,
        )

    def fold(
        self,
        track: AlertTrack,
        asset: str,
        *,
        is_anomalous: bool,
        at: float,
        score: float,
        threshold: float,
        channel_errors: Mapping[str, float] | None = None,
        severity: float | None = None,
        kind: str = RECONSTRUCTION,
        findings: tuple[Finding, ...] = (),
    ) -> AlertEvent | None:
        """:meth:`update` on ``asset``'s ``track``, wherever its owner keeps it (changed in
        place: a resolve starts it afresh, keeping the normal run that resolved it).

        A window that ends before the open alert's anomalous run began changes nothing:
        only an alert resumed from an earlier process sees one, when readings that process
        had already decided on are replayed from its journal to rebuild the windows.
        Those windows were normal there; here, decided afresh (the channel checks start
        from zero), they would resolve the alert and raise it again under the same id.
        """
        if track.is_firing and at < track.started_at:
            return None
        if severity is None:
            severity = score / threshold if threshold > 0 else score
        if is_anomalous:
            if track.anomalous_run == 0:
                track.run_started_at = at
            track.anomalous_run += 1
            track.normal_run = 0
        else:
            if track.normal_run == 0:
                track.normal_started_at = at
            track.normal_run += 1
            track.anomalous_run = 0
        if (track.is_firing or is_anomalous) and severity > track.peak_severity:
            track.peak_severity = severity
            track.peak_score = score
            track.peak_threshold = threshold
            track.peak_channels = dict(channel_errors or {})
            track.peak_kind = kind
            track.peak_findings = findings
        if not track.is_firing and track.anomalous_run >= self.raise_after:
            track.is_firing = True
            track.started_at = track.run_started_at
            track.alert_id = alert_id(asset, track.started_at)
            return _event(asset, track, RAISED, at, None)
        if track.is_firing and track.normal_run >= self.resolve_after:
            event = _event(asset, track, RESOLVED, at, track.normal_started_at)
            _start_afresh(track)
            return event
        if not track.is_firing and not is_anomalous:
            _clear_peak(track)
        return None


def alert_id(asset: str, started_at: float) -> str:
    """Stable id of the alert on ``asset`` whose anomalous run began at ``started_at``.

    >>> alert_id("well-07", 1767225600.25)
    'well-07@2026-01-01T00:00:00.250Z'
    """
    return f"{asset}@{iso_ms(started_at)}"


def iso_ms(timestamp: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a ``Z``, as alerts and logs write it.

    >>> iso_ms(1767225600.25)
    '2026-01-01T00:00:00.250Z'
    """
    text = datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _start_afresh(track: AlertTrack) -> None:
    """``track`` as a new one, but for the normal run it is in (the one that resolved it)."""
    fresh = AlertTrack(normal_run=track.normal_run, normal_started_at=track.normal_started_at)
    for name in AlertTrack.__slots__:
        setattr(track, name, getattr(fresh, name))


def _clear_peak(track: AlertTrack) -> None:
    track.peak_score = track.peak_severity = float("-inf")
    track.peak_channels = {}
    track.peak_kind = RECONSTRUCTION
    track.peak_findings = ()


def _event(
    asset: str, track: AlertTrack, state: str, at: float, ended_at: float | None
) -> AlertEvent:
    total = sum(track.peak_channels.values())
    shares = sorted(
        ((ch, (err / total if total > 0 else 0.0)) for ch, err in track.peak_channels.items()),
        key=lambda pair: -pair[1],
    )
    return AlertEvent(
        alert_id=track.alert_id,
        asset=asset,
        state=state,
        started_at=track.started_at,
        at=at,
        ended_at=ended_at,
        peak_score=track.peak_score,
        threshold=track.peak_threshold,
        contributions=tuple(shares),
        kind=track.peak_kind,
        findings=track.peak_findings,
        severity=track.peak_severity,
    )
