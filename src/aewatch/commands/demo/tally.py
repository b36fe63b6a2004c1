"""The demo's verdict: which labelled faults an alert caught, and which alerts caught none.

Pure, and by the rule of :func:`aewatch.core.evaluation.event_metrics`, so the live figures and
``aewatch evaluate``'s mean the same thing. A fault is a run of rows labelled 1. An alert is
on from the window end that raised it up to, not including, the one that resolved it (to
the end of the data when it never resolved), which is what each row's ``anomaly`` says
offline. An alert detects every fault it is on during; it is false when it detects none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Decision", "Tally", "fault_spans"]

Decision = tuple[str, str, float]  # alert id, "raised" or "resolved", at (epoch seconds)


@dataclass(frozen=True, slots=True)
class Tally:
    """Faults against alerts; all times are epoch seconds.

    ``faults`` holds the first and last labelled row of each fault; ``alerts`` maps each alert
    id to its raise time and resolve time (None while open); ``detected_by`` lists, per
    fault, the alerts that were on during it.

    >>> t = Tally.of(((100.0, 200.0), (500.0, 600.0)),
    ...              [("a", "raised", 150.0), ("a", "resolved", 250.0), ("b", "raised", 900.0)])
    >>> t.detected_by, t.false_alerts, t.line()
    ((('a',), ()), ('b',), 'detected 1 of 2 faults, 1 false alert')
    """

    faults: tuple[tuple[float, float], ...]
    alerts: dict[str, tuple[float, float | None]]
    detected_by: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, faults: Iterable[tuple[float, float]], decisions: Iterable[Decision]) -> Tally:
        """Match ``decisions`` (in time order) against ``faults``."""
        alerts: dict[str, tuple[float, float | None]] = {}
        for alert_id, state, at in decisions:
            if state == "raised":
                alerts[alert_id] = (at, None)
            elif alert_id in alerts:
                alerts[alert_id] = (alerts[alert_id][0], at)
        spans = tuple(faults)
        detected_by = tuple(
            tuple(
                a for a, (on, off) in alerts.items() if on <= last and (off is None or off > first)
            )
            for first, last in spans
        )
        return cls(spans, alerts, detected_by)

    @property
    def n_detected(self) -> int:
        """Faults that at least one alert was on during."""
        return sum(1 for ids in self.detected_by if ids)

    @property
    def false_alerts(self) -> tuple[str, ...]:
        """Alerts that were on during no fault, in the order they were raised."""
        caught = {a for ids in self.detected_by for a in ids}
        return tuple(a for a in self.alerts if a not in caught)

    def line(self) -> str:
        """``detected X of N faults, F false alerts``."""
        n_false = len(self.false_alerts)
        return (
            f"detected {self.n_detected} of {len(self.faults)} faults, "
            f"{n_false} false alert{'' if n_false == 1 else 's'}"
        )


def fault_spans(
    timestamps: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]
) -> tuple[tuple[float, float], ...]:
    """First and last timestamp of each run of 1s in ``labels``; both arrays ``(n,)``.

    >>> fault_spans(np.array([0.0, 10.0, 20.0, 30.0, 40.0]), np.array([0, 1, 1, 0, 1]))
    ((10.0, 20.0), (40.0, 40.0))
    """
    is_fault = np.concatenate(([0], np.asarray(labels, dtype=np.int8) != 0, [0])).astype(np.int8)
    edges = np.diff(is_fault)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return tuple(
        (float(timestamps[s]), float(timestamps[e])) for s, e in zip(starts, ends, strict=True)
    )
