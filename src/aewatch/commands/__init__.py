"""One module per ``aewatch`` verb: arguments in, core calls, human output out (shell)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from aewatch.errors import AewatchError, DataError

__all__ = [
    "parse_channels",
    "parse_fpr",
    "parse_lags",
    "parse_limits",
    "print_json",
    "report_dir_for",
]


def parse_channels(text: str | None) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]``; None stays None."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise DataError("--channels is empty; give comma-separated column names")
    return names


def parse_fpr(text: str) -> float:
    """``--fpr``'s value: a false-alarm rate per window, strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} must be between 0 and 1 (exclusive); typical values are 0.0001-0.01"
        )
    return value


def parse_lags(text: str) -> int:
    """``--lags``' value: a whole number of samples, at least 1.

    >>> parse_lags("9")
    9
    >>> parse_lags("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: 0 must be at least 1 sample
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of samples") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1 sample")
    return value


def parse_limits(text: str | None) -> tuple[tuple[str, float | None, float | None], ...]:
    """``"whp_bar=0:60,flow_kg_s=0:"`` → ``(("whp_bar", 0.0, 60.0), ("flow_kg_s", 0.0, None))``.

    A side left empty keeps the training envelope's.

    >>> parse_limits("whp_bar=0:60, flow_kg_s=:120")
    (('whp_bar', 0.0, 60.0), ('flow_kg_s', None, 120.0))

    Raises:
        AewatchError: an item that is not CHANNEL=LOW:HIGH, a bound that is not a
            number, or LOW above HIGH.
    """
    if text is None or not text.strip():
        return ()
    out = []
    for item in text.split(","):
        name, equals, bounds = item.strip().partition("=")
        low_text, colon, high_text = bounds.partition(":")
        if not (name.strip() and equals and colon):
            raise AewatchError(
                f"--limits item {item.strip()!r}: write CHANNEL=LOW:HIGH, e.g. whp_bar=0:60 "
                "(leave a side empty to keep the training envelope's: flow_kg_s=0:)"
            )
        low, high = (_bound(t, item) for t in (low_text, high_text))
        if low is not None and high is not None and low > high:
            raise AewatchError(
                f"--limits item {item.strip()!r}: LOW {low:g} is above HIGH {high:g}"
            )
        out.append((name.strip(), low, high))
    return tuple(out)


def _bound(text: str, item: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AewatchError(f"--limits item {item.strip()!r}: {text.strip()!r} is not a number")
    return value


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    print(json.dumps(obj, indent=2, default=float))


def report_dir_for(model: Path) -> Path:
    """Where the training report of ``model`` lives: ``MODEL.aew.report/`` beside it
    (``well.aew`` → ``well.aew.report/``)."""
    return model.with_name(model.name + ".report")
