"""Which detector setting suits this history: faults injected into held-out normal data
decide, within the false-alert budget (pure rule; the measuring is in ``train``).

The shift check's CUSUM allowance ``k`` (in noise levels) trades speed on large faults
against reach on small, slow ones: each sample adds ``|z| - k``, so ``k = 1`` forgets a
drift of under one noise level while ``k = 0.5`` adds it up, and pays for it with a
higher limit (both are calibrated to the same false-alert share). Which one catches more
depends on how a plant's residuals behave, which only its data says. Training calibrates
every candidate and then counts, for each, how many of the same injected faults
(``aewatch.model.detectability.caught``: every sensor fault kind on every channel, 2 and 4
noise levels, at the same quiet placements) it raises and the false alerts it raises on
held-out normal data it was not calibrated on (``FalseAlertEstimate``). The first
candidate (the shipped default) stands unless another catches at least ``MARGIN`` more of
the injected faults *and* raises no more held-out false alerts than it: differences of a
trial or two are the placements' noise, and a setting bought with false alerts is not one
an operator keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MARGIN", "Candidate", "Selection", "choose"]

MARGIN = 0.01  # share of the injected faults a candidate must catch beyond the default


@dataclass(frozen=True, slots=True)
class Candidate:
    """One setting as measured: ``raised`` of ``tried`` injected faults (median delay
    ``delay_s``), and ``false_alerts`` in ``days`` of held-out normal data (``None``:
    the held-out part is too short to estimate them)."""

    shift_k: float
    raised: int
    tried: int
    delay_s: float | None
    false_alerts: int | None
    days: float

    @property
    def share(self) -> float:
        return self.raised / self.tried if self.tried else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "shift_k": self.shift_k,
            "raised": self.raised,
            "tried": self.tried,
            "median_delay_s": self.delay_s,
            "held_out_false_alerts": self.false_alerts,
            "held_out_days": self.days,
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """The candidates, the allowance chosen and why, and the seconds the choice took."""

    candidates: tuple[Candidate, ...]
    shift_k: float
    reason: str
    seconds: float = 0.0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Selection:
        """The selection a bundle's provenance keeps (``to_json``'s form)."""
        return cls(
            tuple(
                Candidate(
                    float(c["shift_k"]),
                    int(c["raised"]),
                    int(c["tried"]),
                    None if c["median_delay_s"] is None else float(c["median_delay_s"]),
                    None if c["held_out_false_alerts"] is None else int(c["held_out_false_alerts"]),
                    float(c["held_out_days"]),
                )
                for c in obj["candidates"]
            ),
            float(obj["shift_k"]),
            str(obj["reason"]),
            float(obj.get("seconds", 0.0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "shift_k": self.shift_k,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "candidates": [c.to_json() for c in self.candidates],
        }

    def line(self) -> str:
        """One line for the train summary."""
        measured = ", ".join(
            f"k {c.shift_k:g}: {c.raised}/{c.tried}"
            + ("" if c.false_alerts is None else f", {c.false_alerts} false")
            for c in self.candidates
        )
        return f"shift k {self.shift_k:g} ({self.reason}; injected faults raised {measured})"


def choose(candidates: Sequence[Candidate]) -> tuple[float, str]:
    """The allowance to ship and why: the first candidate unless another raises at least
    ``MARGIN`` more of the injected faults and no more held-out false alerts.

    >>> a = Candidate(1.0, 50, 100, 60.0, 1, 2.0)
    >>> choose([a, Candidate(0.5, 60, 100, 90.0, 1, 2.0)])
    (0.5, 'raised 10 more of 100 injected faults, no more held-out false alerts')
    >>> choose([a, Candidate(0.5, 60, 100, 90.0, 2, 2.0)])[0]
    1.0
    """
    if not candidates:
        raise ValueError("choose: no candidates")
    default, *others = candidates
    if default.tried == 0:
        return default.shift_k, "the default: no quiet held-out stretch to inject faults into"
    if default.false_alerts is None:
        return default.shift_k, "the default: too little held-out history to count false alerts"
    best = default
    why = (
        f"the default: none raised {MARGIN * 100:g} % more of the faults with no more false alerts"
    )
    for other in others:
        if other.false_alerts is None or other.false_alerts > default.false_alerts:
            continue
        if other.share >= default.share + MARGIN and other.share > best.share:
            best = other
            why = (
                f"raised {other.raised - default.raised} more of {other.tried} injected "
                "faults, no more held-out false alerts"
            )
    return best.shift_k, why
