"""An alert message as one printed line, in the plant's units (shared by ``score`` and
``demo``)."""

from __future__ import annotations

from typing import Any

__all__ = ["alert_line"]

_TOP_CHANNELS = 3
_MIN_SHARE = 0.005  # shown as at least 1%


def alert_line(alert: dict[str, Any]) -> str:
    """One line for an alert message: data time, state, id, what looks wrong and where.

    A check's alert names its channels with the reading, what it should read and how many
    noise levels apart; an alert of the window error alone its top channels' shares.

    >>> alert_line({"at": "2026-01-08T22:23:00.000Z", "state": "raised", "alert_id": "w@t",
    ...     "peak_score": 9.5, "threshold": 6.3, "kind": "shift",
    ...     "contributions": [{"channel": "whp", "share": 0.81}],
    ...     "channels": [{"channel": "whp", "kind": "shift", "measured": 41.27,
    ...                   "expected": 40.9, "noise_levels": 2.61, "ratio": 1.4}]})
    '  2026-01-08 22:23:00  raised    w@t  shift: whp reads 41.27, expected 40.9 (+2.6 noise)'
    >>> alert_line({"at": "2026-01-08T22:23:00.000Z", "state": "raised", "alert_id": "w@t",
    ...     "peak_score": 9.5, "threshold": 6.3, "kind": "reconstruction", "channels": [],
    ...     "contributions": [{"channel": "whp", "share": 0.81}]})
    '  2026-01-08 22:23:00  raised    w@t  reconstruction: whp 81%  peak 9.5 / threshold 6.3'
    """
    at = alert["at"].replace("T", " ")[:19]
    kind = alert.get("kind") or "reconstruction"
    head = f"  {at}  {alert['state']:<8}  {alert['alert_id']}  {kind}: "
    if kind != "reconstruction" and alert.get("channels"):
        return head + "; ".join(_finding(f) for f in alert["channels"][:_TOP_CHANNELS])
    top = ", ".join(
        f"{c['channel']} {c['share']:.0%}"
        for c in alert["contributions"][:_TOP_CHANNELS]
        if c["share"] is not None and c["share"] >= _MIN_SHARE
    )
    return (
        f"{head}{top or '-'}  "
        f"peak {_number(alert['peak_score'])} / threshold {_number(alert['threshold'])}"
    )


def _finding(finding: dict[str, Any]) -> str:
    levels = finding["noise_levels"]
    apart = "" if levels is None else f" ({levels:+.1f} noise)"
    if finding["kind"] == "noise":
        apart = "" if levels is None else f" (residual {levels:.1f}x its usual spread)"
    return (
        f"{finding['channel']} reads {_reading(finding['measured'])}, "
        f"expected {_reading(finding['expected'])}{apart}"
    )


def _reading(value: float | None) -> str:
    """A reading in the plant's units: four significant digits, never an exponent."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
