"""Window and hop as given on the command line: samples (``60``) or a duration (``10min``).

A bare whole number counts samples, as it always did. A number with a unit (``500ms``,
``90s``, ``1.5min``, ``2h``; a space before the unit is fine) is a duration, turned into
samples with the sample period: it must land on a whole number of samples within 1 %, so
what the model scores is what was asked for. The bundle stores samples either way.
"""

from __future__ import annotations

import math
import re

from aewatch.errors import AewatchError

__all__ = ["duration_text", "parse_samples", "samples_text", "window_and_hop"]

# A duration must land this close (relative) to a whole number of samples.
WHOLE_TOLERANCE = 0.01

_UNIT_S = {
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
}
_SAMPLE_WORDS = ("sample", "samples")
_SPAN = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)")
_FORMS = "a whole number of samples (60) or a duration with a unit (500ms, 90s, 10min, 2h)"
# Units duration_text may print, largest first.
_SHOWN = (("h", 3600.0), ("min", 60.0), ("s", 1.0))


def parse_samples(
    text: str, period_s: float, *, option: str = "--window", at_least: int = 2
) -> int:
    """Return the samples ``text`` means: a whole number as it is, a duration over ``period_s``.

    ``at_least`` is the fewest samples the option takes (2 for a window, 1 for a hop).

    >>> parse_samples("60", 10.0)
    60
    >>> parse_samples("10min", 10.0), parse_samples("1.5 min", 10.0), parse_samples("500ms", 0.1)
    (60, 9, 5)
    >>> parse_samples("95s", 10.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aewatch.errors.AewatchError: --window 95s is 9.5 samples ...; use 90s (9 samples) or 100s ...

    Raises:
        AewatchError: ``text`` is neither form, or it makes fewer than ``at_least`` samples,
            or a duration is not a whole number of samples within 1 %.
    """
    number, unit = _split(text, option)
    if unit is None or unit in _SAMPLE_WORDS:
        return _whole_samples(text, number, option=option, at_least=at_least)
    if not (math.isfinite(period_s) and period_s > 0.0):
        raise AewatchError(
            f"{option} {text.strip()} needs a positive sample period to become samples, "
            f"got {period_s:g} s; pass --period S or give {option} in samples"
        )
    seconds = float(number) * _UNIT_S[unit]
    exact = seconds / period_s
    samples = math.floor(exact + 0.5)
    at = f"{_fraction(exact)} at a sample period of {period_s:g} s"
    if exact < at_least * (1.0 - WHOLE_TOLERANCE):
        least = _in_unit(at_least * period_s, unit)
        raise AewatchError(
            f"{option} {text.strip()} is {at}; it needs at least "
            f"{_count(at_least)}: {least} or more (or {option} {at_least})"
        )
    if abs(exact - samples) > WHOLE_TOLERANCE * exact:
        # Both neighbours are long enough: exact is at least 99 % of at_least here.
        nearby = (math.floor(exact), math.ceil(exact))
        ways = " or ".join(f"{_in_unit(n * period_s, unit)} ({_count(n)})" for n in nearby)
        raise AewatchError(f"{option} {text.strip()} is {at}, not a whole number; use {ways}")
    return samples


def window_and_hop(window: str, hop: str, period_s: float) -> tuple[int, int]:
    """Return ``(window_len, hop)`` in samples from the ``--window`` and ``--hop`` texts.

    >>> window_and_hop("10min", "1min", 10.0)
    (60, 6)

    Raises:
        AewatchError: either is invalid (see :func:`parse_samples`), or the hop is longer
            than the window, which would leave samples between windows never scored.
    """
    window_len = parse_samples(window, period_s, option="--window", at_least=2)
    hop_len = parse_samples(hop, period_s, option="--hop", at_least=1)
    if hop_len > window_len:
        raise AewatchError(
            f"--hop {hop.strip()} ({_count(hop_len)}) is longer than --window {window.strip()} "
            f"({_count(window_len)}), so the samples between windows would never be scored; "
            f"use a hop of at most {samples_text(window_len, period_s)}"
        )
    return window_len, hop_len


def samples_text(samples: int, period_s: float) -> str:
    """Return a sample count with the time it spans, for a summary line.

    >>> samples_text(60, 10.0), samples_text(1, 0.5)
    ('60 samples = 10 min', '1 sample = 500 ms')
    """
    return f"{_count(samples)} = {duration_text(samples * period_s)}"


def duration_text(seconds: float) -> str:
    """Return ``seconds`` in the largest unit it is a whole number of (else s, or ms below 1 s).

    >>> [duration_text(s) for s in (7200.0, 600.0, 90.0, 12.5, 0.25)]
    ['2 h', '10 min', '90 s', '12.5 s', '250 ms']
    """
    for unit, size in _SHOWN:
        value = seconds / size
        if value >= 1.0 and _is_whole(value):
            return f"{round(value)} {unit}"
    if seconds >= 1.0:
        return f"{seconds:.4g} s"
    return f"{seconds * 1000.0:.4g} ms"


def _split(text: str, option: str) -> tuple[str, str | None]:
    """``"1.5 min"`` → ``("1.5", "min")``; ``"10"`` → ``("10", None)``."""
    match = _SPAN.fullmatch(text.strip().lower())
    unit = match["unit"] if match else None
    if match is None or (unit and unit not in _UNIT_S and unit not in _SAMPLE_WORDS):
        raise AewatchError(f"{option} {text.strip()!r} is not understood; give {_FORMS}")
    return match["number"], unit or None


def _whole_samples(text: str, number: str, *, option: str, at_least: int) -> int:
    if not number.isdigit():
        raise AewatchError(
            f"{option} {text.strip()}: a sample count is a whole number; give "
            f"{option} {math.floor(float(number) + 0.5)}, or a duration with a unit "
            f"({number}s, {number}min)"
        )
    if int(number) < at_least:
        raise AewatchError(
            f"{option} {text.strip()}: it needs at least {_count(at_least)}; "
            f"give {option} {at_least} or more"
        )
    return int(number)


def _in_unit(seconds: float, unit: str) -> str:
    """``seconds`` as an option value in ``unit`` (``90s``), or in s where that is not clean."""
    value = seconds / _UNIT_S[unit]
    if _is_whole(value * 1000.0):
        return f"{round(value, 3):g}{unit}"
    return f"{round(seconds, 3):g}s"


def _fraction(samples: float) -> str:
    """``1 sample``, ``9.5 samples``: a possibly fractional count of samples."""
    return "1 sample" if f"{samples:.3g}" == "1" else f"{samples:.3g} samples"


def _count(samples: int) -> str:
    return f"{samples} sample" if samples == 1 else f"{samples} samples"


def _is_whole(value: float) -> bool:
    return abs(value - round(value)) <= 1e-9 * max(1.0, abs(value))
