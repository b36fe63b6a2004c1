"""A calibrated cut-off on window scores (pipeline stage: Threshold).

Calibrated on held-out normal windows for a target false-alarm rate ``fpr`` (a fraction
of windows). When the calibration sample holds enough windows above the cut
(``fpr·n >= MIN_TAIL_COUNT``) the cut is the empirical quantile. For rarer rates it
extrapolates with a peaks-over-threshold fit: the excesses over a high initial quantile
follow a generalised Pareto distribution (Pickands–Balkema–de Haan), as in SPOT
(Siffer et al., KDD 2017). A sample too small for either (a few hundred windows, as in a
short commissioning run) gets the scaled chi-squared fit that process monitoring uses for
the squared prediction error: ``g·χ²_h`` with ``g``, ``h`` matched to the scores' mean and
variance (Box 1954; Nomikos & MacGregor 1995).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_TAIL_COUNT",
    "Threshold",
    "chi2_quantile",
    "min_calibration_windows",
    "pot_quantile",
]

MIN_TAIL_COUNT = 10  # windows above an empirical cut needed to trust it
_POT_INIT_LEVEL = 0.98  # SPOT's usual initial quantile for the tail fit
_MIN_PEAKS = 20
_MIN_CHI2_SCORES = 30


@dataclass(frozen=True, slots=True)
class Threshold:
    """Score above which a window counts as anomalous.

    >>> rng = np.random.default_rng(0)
    >>> t = Threshold.calibrate(rng.exponential(size=10_000), fpr=0.01)
    >>> t.method, round(t.value, 2)
    ('quantile', 4.58)
    >>> Threshold.calibrate(rng.exponential(size=10_000), fpr=1e-5).method
    'pot'
    """

    value: float
    fpr: float  # false-positive rate it was calibrated for (per window)
    n_calibration: int
    method: str  # "quantile", "pot" or "chi2"
    pot_shape: float | None = None
    pot_scale: float | None = None
    pot_init: float | None = None

    @classmethod
    def calibrate(cls, scores: npt.ArrayLike, fpr: float) -> Self:
        """Return the cut for ``fpr`` from held-out normal scores ``(n,)``.

        Raises:
            ValueError: ``fpr`` outside (0, 1), or too few scores for it.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}; typical values are 0.001-0.01")
        if fpr * len(s) >= MIN_TAIL_COUNT:
            # 'higher' puts the cut on a real score: at most a fraction fpr lies above it.
            value = float(np.quantile(s, 1.0 - fpr, method="higher"))
            return cls(value, fpr, len(s), "quantile")
        if len(s) >= math.ceil(_MIN_PEAKS / (1.0 - _POT_INIT_LEVEL)):
            value, shape, scale, init = pot_quantile(s, fpr)
            return cls(value, fpr, len(s), "pot", shape, scale, init)
        if len(s) < _MIN_CHI2_SCORES:
            need = min_calibration_windows(fpr)
            raise ValueError(
                f"fpr={fpr} needs at least {need} calibration windows, got {len(s)}; add "
                "normal history or shorten the window"
            )
        return cls(chi2_quantile(s, fpr), fpr, len(s), "chi2")

    def exceeds(self, score: float) -> bool:
        """True when ``score`` is above the cut."""
        return score > self.value

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``."""
        return cls(**obj)


def min_calibration_windows(fpr: float) -> int:
    """The fewest calibration windows ``Threshold.calibrate`` accepts for ``fpr`` in (0, 1).

    The chi-squared fit takes 30; only a rate so high that ``fpr·n >= MIN_TAIL_COUNT``
    already holds with fewer (above 1/3 per window) makes do with less.

    >>> min_calibration_windows(1e-4), min_calibration_windows(0.5)
    (30, 20)

    Raises:
        ValueError: ``fpr`` outside (0, 1).
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}; typical values are 0.001-0.01")
    n = math.ceil(MIN_TAIL_COUNT / fpr)
    while n > 1 and fpr * (n - 1) >= MIN_TAIL_COUNT:  # rounding in the division
        n -= 1
    while fpr * n < MIN_TAIL_COUNT:
        n += 1
    return min(_MIN_CHI2_SCORES, n)


def chi2_quantile(scores: npt.NDArray[np.float64], fpr: float) -> float:
    """Return the ``1 − fpr`` quantile of ``g·χ²_h`` moment-matched to ``scores``.

    ``g = var / (2·mean)`` and ``h = 2·mean² / var``; never below the largest score's
    ``1 − fpr`` empirical quantile.
    """
    mean, var = float(np.mean(scores)), float(np.var(scores, ddof=1))
    empirical = float(np.quantile(scores, 1.0 - fpr, method="higher"))
    if mean <= 0.0 or var <= 0.0:
        return empirical
    g, h = var / (2.0 * mean), 2.0 * mean * mean / var
    return max(float(g * _stats().chi2.ppf(1.0 - fpr, h)), empirical)


def pot_quantile(
    scores: npt.NDArray[np.float64], fpr: float, init_level: float = _POT_INIT_LEVEL
) -> tuple[float, float, float, float]:
    """Return ``(cut, shape γ, scale σ, initial threshold t)`` of a GPD tail fit.

    ``cut = t + σ/γ·((fpr·n/N_t)^(−γ) − 1)``, or ``t − σ·ln(fpr·n/N_t)`` when γ≈0,
    where ``N_t`` scores exceed ``t``, the ``init_level`` quantile.
    """
    t = float(np.quantile(scores, init_level))
    peaks = scores[scores > t] - t
    if len(peaks) < 3 or float(peaks.max()) <= 0.0:
        return float(scores.max()), 0.0, 0.0, t
    shape, _, scale = _stats().genpareto.fit(peaks, floc=0.0)
    ratio = fpr * len(scores) / len(peaks)
    if abs(shape) < 1e-6:
        cut = t - scale * math.log(ratio)
    else:
        cut = t + scale / shape * (ratio ** (-shape) - 1.0)
    return float(cut), float(shape), float(scale), t


def _stats() -> Any:  # scipy has no type stubs
    """``scipy.stats``, imported on first use: the daemon never calibrates a threshold,
    and importing it at start would cost the daemon about 60 MB of memory."""
    from scipy import stats  # noqa: PLC0415

    return stats
