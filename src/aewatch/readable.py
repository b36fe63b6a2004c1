"""Quantities as a reader wants them in a report, a summary line or a log."""

from __future__ import annotations

__all__ = ["duration"]


def duration(seconds: float) -> str:
    """``seconds`` to three figures in the unit that suits it: ms under a second, seconds
    under 90 s, minutes under 90 min, hours under two days, else days.

    >>> [duration(s) for s in (0.5, 10.0, 600.0, 45_310.0, 400_000.0)]
    ['500 ms', '10 s', '10 min', '12.6 h', '4.63 d']
    """
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 90.0:
        return f"{seconds:.3g} s"
    if seconds < 90.0 * 60.0:
        return f"{seconds / 60.0:.3g} min"
    if seconds < 48.0 * 3600.0:
        return f"{seconds / 3600.0:.3g} h"
    return f"{seconds / 86_400.0:.3g} d"
