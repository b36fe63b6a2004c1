"""The seed chapter's denoising experiment (section 12.3), then the same data with our training.

Same generator as the seed: ``amp·(sin(t+φ) + ½·sin(3t+φ))`` on 64 samples of [0, 2π],
``amp ~ U(0.5, 1.5)``, ``φ ~ U(0, 2π)``; 200 signals, noise σ=0.3, an 80/20 random split,
latent size 8. The holdout MSE compares the model's output on noisy holdout signals with
the clean ones. Every clean signal lies in a 2-D subspace, so no estimator does much
better than σ²·2/64 ≈ 0.0028.

    .venv/bin/python bench/seed_denoise.py            # 3 seeds, prints a markdown table
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from aewatch.core.scaler import RobustScaler
from aewatch.model.fit import FitSettings, fit_network
from aewatch.model.networks import ArchSpec
from aewatch.model.scorer import Scorer

N_SIGNALS, LENGTH, NOISE, LATENT = 200, 64, 0.3, 8


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return noisy/clean train and test signals ``(n, 1, 64)`` as the seed builds them."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, LENGTH)
    phase = 2 * np.pi * rng.random((N_SIGNALS, 1))
    amp = 0.5 + rng.random((N_SIGNALS, 1))
    clean = amp * np.sin(t + phase) + 0.5 * amp * np.sin(3 * t + phase)
    noisy = clean + NOISE * rng.standard_normal(clean.shape)
    idx = rng.permutation(N_SIGNALS)
    tr, te = idx[: int(0.8 * N_SIGNALS)], idx[int(0.8 * N_SIGNALS) :]

    def f32(a: np.ndarray) -> np.ndarray:
        return a[:, None, :].astype(np.float32)

    return f32(noisy[tr]), f32(clean[tr]), f32(noisy[te]), f32(clean[te])


def seed_way(seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The chapter's recipe: 64→32→8 (ReLU code)→32→64, full-batch Adam 0.003, 500 epochs.

    Initialised as Lux initialises ``Dense`` (Glorot-uniform weights, zero biases).
    """
    x_tr, y_tr, _, _ = make_data(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, LATENT),
        nn.ReLU(),
        nn.Linear(LATENT, 32),
        nn.ReLU(),
        nn.Linear(32, 64),
    )
    for layer in net:
        if isinstance(layer, nn.Linear):  # Lux's Dense defaults: Glorot-uniform, zero bias
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    x, y = torch.from_numpy(x_tr[:, 0]), torch.from_numpy(y_tr[:, 0])
    for _ in range(500):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict(noisy: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(noisy[:, 0])).numpy()[:, None, :]

    return predict


def ours(seed: int, *, kind: str, pairs: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Our defaults (``aewatch train``'s FitSettings, robust scaler, denoising, early stopping).

    ``pairs``: learn noisy→clean from the seed's pairs; otherwise learn from the clean
    training signals alone, our denoising noise making the inputs. The last 20 % of the
    training signals is the validation split, as in ``aewatch train``.
    """
    x_tr, y_tr, _, _ = make_data(seed)
    inputs = x_tr if pairs else y_tr
    scaler = RobustScaler.fit(inputs.reshape(-1, 1))
    n_fit = int(0.8 * len(inputs))
    spec = ArchSpec(
        kind=kind,
        channels=1,
        length=LENGTH,
        latent=LATENT,
        hidden=() if kind == "pca" else (LENGTH // 2,),
    )
    xs, ys = scaler.transform(inputs), scaler.transform(y_tr)
    fit = fit_network(
        spec,
        xs[:n_fit],
        ys[n_fit:],
        FitSettings(seed=seed, show_progress=False),
        train_target=ys[:n_fit],
    )
    scorer = Scorer(fit.network, scaler)
    return lambda noisy: scorer.score(noisy).reconstructions


def holdout_mse(seed: int, predict: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean squared error of ``predict(noisy holdout)`` against the clean holdout."""
    _, _, x_te, y_te = make_data(seed)
    return float(np.mean((predict(x_te) - y_te) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[tuple[str, Callable[[int], Callable[[np.ndarray], np.ndarray]]]] = [
        ("noisy input left alone", lambda s: lambda noisy: noisy),
        ("seed's dense AE, seed's training (full batch, 500 epochs, ReLU code)", seed_way),
        (
            "our dense AE, our default training, clean history + denoising noise",
            lambda s: ours(s, kind="dense", pairs=False),
        ),
        (
            "our dense AE, our default training, seed's noisy→clean pairs",
            lambda s: ours(s, kind="dense", pairs=True),
        ),
        (
            "our PCA (linear AE, 8 components), clean history",
            lambda s: ours(s, kind="pca", pairs=False),
        ),
    ]
    print(f"| model | holdout MSE, mean of {args.seeds} seeds | per seed | seconds |")
    print("|---|---|---|---|")
    for name, make in rows:
        started = time.perf_counter()
        mses = [holdout_mse(s, make(s)) for s in range(args.seeds)]
        took = (time.perf_counter() - started) / args.seeds
        per = ", ".join(f"{m:.4f}" for m in mses)
        print(f"| {name} | **{statistics.mean(mses):.4f}** | {per} | {took:.1f} |", flush=True)
    print(f"| floor: σ²·2/64 | {NOISE**2 * 2 / LENGTH:.4f} | | |")


if __name__ == "__main__":
    main()
