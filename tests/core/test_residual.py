"""The residual model's bands: what a narrow curve between two channels leaves to them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from aewatch.core.residual import Bands, ResidualModel
from aewatch.core.window import sliding_windows

RESONANCE_RPM, WIDTH_RPM = 1280.0, 45.0  # in the simulated pump too


def _pump(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Speed held at levels spread over 1050-1470 rpm; vibration rises with it and has a
    resonance 45 rpm wide at 1280 rpm (0.7 mm/s, seven noise levels); current goes with
    its cube."""
    levels = rng.uniform(1050.0, 1470.0, n // 300 + 1)
    setpoint = np.repeat(levels, 300)[:n]
    speed = np.empty(n)
    speed[0] = setpoint[0]
    for t in range(1, n):  # a first-order lag, a few samples
        speed[t] = speed[t - 1] + 0.3 * (setpoint[t] - speed[t - 1])
    s = speed / 1480.0
    vibration = 1.0 + 1.5 * s**2 + 0.7 * np.exp(-(((speed - RESONANCE_RPM) / WIDTH_RPM) ** 2))
    current = 45.0 + 380.0 * s**3
    clean = np.column_stack((speed, vibration, current))
    return clean + rng.normal(0.0, 1.0, clean.shape) * np.array([1.5, 0.1, 1.5])


def _fitted(rows: npt.NDArray[np.float64]) -> ResidualModel:
    return ResidualModel.fit([rows[:30_000]]).with_noise_from([rows[30_000:]])


def _worst_bias_near_resonance(model: ResidualModel, rows: npt.NDArray[np.float64]) -> float:
    """The vibration residual's largest mean, in noise levels, over the 20-rpm bands of
    speed from 1180 to 1380 rpm (those holding 200 samples or more)."""
    z = model.residuals([rows])[:, 1] / model.noise[1]
    speed = rows[model.lags :, 0]
    means = [
        z[(speed >= low) & (speed < low + 20.0)].mean()
        for low in np.arange(1180.0, 1380.0, 20.0)
        if ((speed >= low) & (speed < low + 20.0)).sum() >= 200
    ]
    return float(np.abs(means).max())


@pytest.fixture(scope="module")
def rows() -> npt.NDArray[np.float64]:
    return _pump(np.random.default_rng(4), 40_000)


def test_a_narrow_resonance_gets_bands_and_its_bias_goes(rows: npt.NDArray[np.float64]) -> None:
    held_out = _pump(np.random.default_rng(5), 20_000)
    with_bands = _fitted(rows)
    without = replace(with_bands, bands=None).with_noise_from([rows[30_000:]])
    assert with_bands.bands is not None and with_bands.bands.source[1] in (0, 2)
    before = _worst_bias_near_resonance(without, held_out)
    assert before > 0.4
    assert _worst_bias_near_resonance(with_bands, held_out) < before / 3.0


def test_a_plant_the_bends_follow_gets_no_bands() -> None:
    rng = np.random.default_rng(6)
    process = np.repeat(rng.normal(0.0, 1.0, 41), 1000)[:40_000]
    process = np.convolve(process, np.ones(200) / 200, mode="same") + 50.0
    clean = np.column_stack((process, 2.0 * process - 40.0, 0.5 * process + 10.0))
    model = _fitted(clean + rng.normal(0.0, 0.1, clean.shape))
    assert model.bands is None


def test_predictions_with_bands_match_the_rows_and_survive_json(
    rows: npt.NDArray[np.float64],
) -> None:
    model = _fitted(rows)
    assert model.bands is not None
    again = ResidualModel.from_json(model.to_json())
    assert again.bands is not None
    assert np.array_equal(again.bands.offset, model.bands.offset)
    part = rows[:5_000].astype(np.float32)
    windows = sliding_windows(part, 10, 1)
    expected = again.expected(windows, 1)[:, -1]
    residual = model.residuals([part])
    tolerance = 1e-4 * model.scale
    assert np.allclose(part[9:] - expected, residual[9 - model.lags :], atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("source", [0, 5, -1]),
        ("edges", [[0.0, 1.0]]),
        ("offset", [[0.0]] * 3),
        ("offset", [[float("nan")] * 32] * 3),
        ("edges", [list(range(31, 0, -1))] * 3),
    ],
)
def test_bands_that_do_not_fit_the_model_are_refused(
    rows: npt.NDArray[np.float64], key: str, value: object
) -> None:
    saved = _fitted(rows).to_json()
    saved["bands"][key] = value
    with pytest.raises(ValueError, match="bands"):
        ResidualModel.from_json(saved)


def test_a_bundle_from_before_the_bands_reads_without_them(
    rows: npt.NDArray[np.float64],
) -> None:
    saved = _fitted(rows).to_json()
    del saved["bands"]
    assert ResidualModel.from_json(saved).bands is None
    assert isinstance(Bands.from_json(_fitted(rows).to_json()["bands"], 3), Bands)
