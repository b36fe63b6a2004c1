"""The default code size: the principal components above the sensors' noise."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aewatch.model.fit import auto_latent

WINDOWS, LENGTH = 2000, 10


def _windows(levels: npt.NDArray[np.float64], noise: float, seed: int) -> npt.NDArray[np.float32]:
    """Windows ``(n, channels, LENGTH)`` holding each row's levels plus white noise."""
    rng = np.random.default_rng(seed)
    steady = np.repeat(levels[:, :, None], LENGTH, axis=2)
    return (steady + rng.normal(0.0, noise, steady.shape)).astype(np.float32)


def _variance_share_rule(windows: npt.NDArray[np.float32], share: float) -> int:
    """The rule it replaced: the fewest components holding ``share`` of the variance."""
    x = windows.reshape(len(windows), -1).astype(np.float64)
    spread = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    return int(np.searchsorted(np.cumsum(spread) / spread.sum(), share)) + 1


def test_a_process_that_moves_a_lot_keeps_its_small_factors() -> None:
    """One large operating change and two small ones, each well above the noise."""
    rng = np.random.default_rng(4)
    factors = rng.normal(0.0, 1.0, (WINDOWS, 3)) * np.array([20.0, 1.0, 1.0])
    mixing = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    windows = _windows(factors @ mixing, noise=0.1, seed=5)

    assert _variance_share_rule(windows, 0.8) == 1
    assert auto_latent(windows) >= 3


def test_noise_alone_keeps_at_most_about_half_its_components() -> None:
    """A component of pure noise sits at the noise level and passes about half the time."""
    windows = _windows(np.zeros((WINDOWS, 4)), noise=1.0, seed=3)
    dims = 4 * LENGTH

    assert 1 <= auto_latent(windows) <= 0.6 * dims


def test_the_cap_bounds_it() -> None:
    rng = np.random.default_rng(6)
    windows = _windows(rng.normal(0.0, 1.0, (WINDOWS, 8)), noise=0.05, seed=7)

    assert auto_latent(windows, cap=5) == 5
    assert 8 <= auto_latent(windows) <= 64
