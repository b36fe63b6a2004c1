"""The detectability table: per fault kind and channel, the smallest fault a model raised
and how soon, with the plain sentences, the terminal grid and the JSON that show it (shell:
what ``aewatch.model.detectability`` measures, as the report and the CLI present it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["Detectability", "DetectabilityRow", "Trial"]


@dataclass(frozen=True, slots=True)
class Trial:
    """One size of one fault kind on one channel, injected at every placement.

    ``size`` is in noise levels (``None``: a kind without a size, ``stuck``); ``raised``
    of ``placements`` had an alert on during the fault or up to the grace after it;
    ``delay_s`` is the median, over those, of the first alert's raise time minus the
    fault's start (``None`` when none raised).
    """

    size: float | None
    raised: int
    placements: int
    delay_s: float | None

    @property
    def is_raised(self) -> bool:
        """Whether at least half the placements raised it: what the table counts."""
        return self.raised > 0 and 2 * self.raised >= self.placements


@dataclass(frozen=True, slots=True)
class DetectabilityRow:
    """What the model makes of one fault kind on one channel.

    ``noise`` is the channel's noise level and ``level`` its median absolute reading,
    both in the channel's units; ``trials`` are in the order tried. ``is_complete`` is
    False when the time budget stopped the search, so the smallest size raised is an upper
    bound.
    """

    kind: str
    channel: str
    noise: float
    level: float
    span_s: float
    trials: tuple[Trial, ...]
    is_complete: bool = True

    @property
    def smallest(self) -> Trial | None:
        """The smallest size raised, or ``None`` when none was."""
        raised = [t for t in self.trials if t.is_raised]
        return min(raised, key=lambda t: t.size or 0.0, default=None)

    @property
    def largest(self) -> float | None:
        """The largest size tried (noise levels), or ``None``."""
        return max((t.size for t in self.trials if t.size is not None), default=None)

    def amount(self, size: float) -> str:
        """A fault of ``size`` noise levels of this row's kind, in the channel's units.

        >>> row = DetectabilityRow("drift", "whp_bar", 0.05, 20.0, 1800.0, ())
        >>> row.amount(2.0)
        'reaching 0.1 in 30 min, 0.2 per hour'
        """
        value = size * self.noise
        if self.kind == "drift":
            per_hour = value * 3600.0 / self.span_s
            return f"reaching {value:.2g} in {_duration(self.span_s)}, {per_hour:.2g} per hour"
        if self.kind == "gain":
            return f"a gain error of {100.0 * value / max(self.level, self.noise):.2g} %"
        phrases = {
            "step": "a step of {}",
            "spikes": "spikes of {}",
            "noise": "extra noise of sd {}",
        }
        return phrases.get(self.kind, "a swing of ±{}").format(f"{value:.2g}")

    def sentence(self) -> str:
        """The row in one plain sentence.

        >>> trial = Trial(2.0, 5, 5, 170.0)
        >>> DetectabilityRow("step", "whp_bar", 0.046, 20.0, 1800.0, (trial,)).sentence()
        'step on whp_bar: raised from 2 noise levels (a step of 0.092), in about 3 min'
        """
        head = f"{self.kind} on {self.channel}"
        if not self.trials:
            return f"{head}: not measured (the time budget ran out first)"
        best = self.smallest
        if best is None:
            if self.largest is None:
                return f"{head}: not seen within {_duration(self.span_s)}"
            largest = self.largest
            return f"{head}: not seen up to {largest:g} noise levels ({self.amount(largest)})"
        delay = f"in about {_duration(best.delay_s or 0.0)}"
        if best.size is None:
            return f"{head}: raised {delay}"
        bound = "" if self.is_complete else "at most "
        levels = "noise level" if best.size == 1.0 else "noise levels"
        return (
            f"{head}: raised from {bound}{best.size:g} {levels} ({self.amount(best.size)}), {delay}"
        )

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready values, its sentence included."""
        best = self.smallest
        return {
            "kind": self.kind,
            "channel": self.channel,
            "noise": self.noise,
            "level": self.level,
            "span_s": self.span_s,
            "is_complete": self.is_complete,
            "smallest_noise_levels": None if best is None else best.size,
            "median_delay_s": None if best is None else best.delay_s,
            "is_seen": best is not None,
            "trials": [
                {
                    "size": t.size,
                    "raised": t.raised,
                    "placements": t.placements,
                    "delay_s": t.delay_s,
                }
                for t in self.trials
            ],
            "sentence": self.sentence(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """The row :meth:`to_json` wrote."""
        trials = tuple(
            Trial(t["size"], int(t["raised"]), int(t["placements"]), t["delay_s"])
            for t in obj["trials"]
        )
        return cls(
            obj["kind"],
            obj["channel"],
            float(obj["noise"]),
            float(obj["level"]),
            float(obj["span_s"]),
            trials,
            bool(obj["is_complete"]),
        )


@dataclass(frozen=True, slots=True)
class Detectability:
    """The detectability table of one model: a row per (fault kind, channel).

    ``sizes`` is the ladder tried (noise levels), ``placements`` how many stretches of
    held-out history each fault went into, ``noise_source`` where the noise levels came
    from, ``note`` why rows are missing or unfinished (empty when none are) and
    ``seconds`` how long the measurement took (not compared).
    """

    rows: tuple[DetectabilityRow, ...]
    sizes: tuple[float, ...]
    placements: int
    span_s: float
    grace_s: float
    noise_source: str
    seed: int
    note: str = ""
    seconds: float = field(default=0.0, compare=False)

    def sentences(self) -> list[str]:
        """One plain sentence per row, channel by channel."""
        return [row.sentence() for row in self.rows]

    def grid(self) -> list[str]:
        """A few lines for a terminal: channels down, kinds across, each cell the smallest
        size raised (noise levels) and its median delay, ``-`` not seen, ``?`` not measured.
        """
        if not self.rows:
            return [f"not measured: {self.note}"]
        kinds = list(dict.fromkeys(r.kind for r in self.rows))
        channels = list(dict.fromkeys(r.channel for r in self.rows))
        cells = {(r.kind, r.channel): _cell(r) for r in self.rows}
        name_w = max(len(c) for c in channels)
        widths = [max(len(k), *(len(cells.get((k, c), "")) for c in channels)) for k in kinds]
        lines = [
            "  ".join([" " * name_w, *(k.ljust(w) for k, w in zip(kinds, widths, strict=True))])
        ]
        for channel in channels:
            row = [cells.get((k, channel), "").ljust(w) for k, w in zip(kinds, widths, strict=True)]
            lines.append("  ".join([channel.ljust(name_w), *row]).rstrip())
        return [line.rstrip() for line in lines]

    def to_json(self) -> dict[str, Any]:
        """The table as JSON-ready values (what the report's ``summary.json`` keeps)."""
        return {
            "sizes_noise_levels": list(self.sizes),
            "placements": self.placements,
            "span_s": self.span_s,
            "grace_s": self.grace_s,
            "noise_source": self.noise_source,
            "seed": self.seed,
            "note": self.note,
            "seconds": self.seconds,
            "rows": [row.to_json() for row in self.rows],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """The table :meth:`to_json` wrote."""
        return cls(
            tuple(DetectabilityRow.from_json(r) for r in obj["rows"]),
            tuple(float(s) for s in obj["sizes_noise_levels"]),
            int(obj["placements"]),
            float(obj["span_s"]),
            float(obj["grace_s"]),
            str(obj["noise_source"]),
            int(obj["seed"]),
            str(obj.get("note", "")),
            float(obj.get("seconds", 0.0)),
        )


def _cell(row: DetectabilityRow) -> str:
    if not row.trials:
        return "?"
    best = row.smallest
    if best is None:
        return "-"
    delay = _duration(best.delay_s or 0.0, compact=True)
    size = "yes" if best.size is None else f"{'≤' if not row.is_complete else ''}{best.size:g}"
    return f"{size} {delay}"


def _duration(seconds: float, *, compact: bool = False) -> str:
    """``40 s`` or ``3 min`` (``40s``, ``3m`` compact): seconds under 90 s, else minutes."""
    if seconds < 90.0:
        return f"{seconds:.0f}s" if compact else f"{seconds:.0f} s"
    minutes = seconds / 60.0
    return f"{minutes:.0f}m" if compact else f"{minutes:.0f} min"
