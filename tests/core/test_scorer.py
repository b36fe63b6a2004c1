"""One contract suite run against every architecture's Scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aewatch.core.scaler import RobustScaler
from aewatch.model.fit import FitSettings, fit_network
from aewatch.model.networks import ARCHITECTURES, ArchSpec
from aewatch.model.scorer import Scorer

CHANNELS, LENGTH = 3, 16


def _normal_windows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    base = np.sin(2 * np.pi * t / LENGTH + phase)
    # Three coupled channels: the second follows the first, the third is its negative.
    x = np.concatenate([base, 0.5 * base + 1.0, -base + 5.0], axis=1)
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def scorer(request: pytest.FixtureRequest) -> Scorer:
    torch.manual_seed(0)
    train = _normal_windows(400, 0)
    scaler = RobustScaler.fit(train.transpose(0, 2, 1).reshape(-1, CHANNELS))
    spec = ArchSpec(kind=request.param, channels=CHANNELS, length=LENGTH, latent=4, hidden=(32,))
    scaled = scaler.transform(train)
    fit = fit_network(
        spec,
        scaled[:320],
        scaled[320:],
        FitSettings(epochs=25, patience=25, show_progress=False, noise_std=0.1),
    )
    return Scorer(fit.network, scaler, batch_size=64)


def test_shapes_and_dtypes(scorer: Scorer) -> None:
    scores = scorer.score(_normal_windows(130, 1))
    assert scores.reconstructions.shape == (130, CHANNELS, LENGTH)
    assert scores.errors.shape == (130,) and scores.errors.dtype == np.float32
    assert scores.channel_errors.shape == (130, CHANNELS)
    np.testing.assert_allclose(scores.errors, scores.channel_errors.mean(axis=1), rtol=1e-5)
    # Over several batches of 64, and without reconstructions: the same errors.
    bare = scorer.score(_normal_windows(130, 1), reconstruct=False)
    assert bare.reconstructions is None
    np.testing.assert_array_equal(bare.errors, scores.errors)
    np.testing.assert_array_equal(bare.channel_errors, scores.channel_errors)


def test_empty_batch(scorer: Scorer) -> None:
    assert len(scorer.score(np.empty((0, CHANNELS, LENGTH), np.float32))) == 0


def test_batching_does_not_change_results(scorer: Scorer) -> None:
    windows = _normal_windows(100, 2)
    whole = scorer.score(windows)
    one_by_one = [scorer.score(windows[i : i + 1]).errors[0] for i in range(10)]
    np.testing.assert_allclose(whole.errors[:10], one_by_one, rtol=1e-4, atol=1e-7)


def test_a_fault_scores_higher_and_names_its_channel(scorer: Scorer) -> None:
    normal = _normal_windows(50, 3)
    broken = normal.copy()
    broken[:, 2, LENGTH // 2 :] += 3.0  # a step on the third channel only
    s_normal, s_broken = scorer.score(normal), scorer.score(broken)
    assert np.median(s_broken.errors) > 5 * np.median(s_normal.errors)
    assert (s_broken.channel_errors.argmax(axis=1) == 2).mean() > 0.9


def test_reconstruction_denoises(scorer: Scorer) -> None:
    clean = _normal_windows(200, 4)
    noisy = clean + 0.3 * np.random.default_rng(5).standard_normal(clean.shape).astype(np.float32)
    recon = scorer.score(noisy).reconstructions
    assert ((recon - clean) ** 2).mean() < ((noisy - clean) ** 2).mean()
