"""Fit a network on normal windows (shell: training loop, progress bar, devices).

Dense, convolutional and variational autoencoders are trained with Adam on minibatches,
denoising by default (Gaussian noise on the input, the clean window as the target), with
early stopping on a time-ordered validation split and the best epoch's weights restored.
PCA is fitted in closed form. Fixed seeds give bit-identical weights on the same machine.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from aewatch.model.networks import (
    ArchSpec,
    LinearAutoencoder,
    VariationalAutoencoder,
    build,
)

__all__ = ["FitResult", "FitSettings", "auto_latent", "fit_network"]


@dataclass(frozen=True, slots=True)
class FitSettings:
    """How to fit a network; lengths in epochs, noise in scaled units (robust std)."""

    epochs: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-5
    noise_std: float = 0.2  # denoising: input noise; 0 trains a plain autoencoder
    patience: int = 20  # epochs without validation improvement before stopping
    min_windows_per_epoch: int = 2_048
    max_windows_per_epoch: int = 20_000
    kl_weight: float = 1.0  # VAE only: β of the β-VAE loss
    seed: int = 0
    device: str = "cpu"
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class FitResult:
    """The fitted network and its learning curves (per epoch, scaled MSE)."""

    network: nn.Module
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def auto_latent(windows: npt.NDArray[np.float32], *, cap: int = 64) -> int:
    """Principal components of the windows whose variance is above the sensors' noise.

    The noise level is half the variance of sample-to-sample differences, averaged over
    the channels (the white part of a reading; a smooth process adds little to it). A
    component with more variance than that carries process behaviour the model should
    reproduce; the rest is noise, left to the window error. ``windows`` are scaled
    ``(n, channels, length)``; the result is in ``[1, min(cap, D)]``.
    """
    w = windows.astype(np.float64)
    noise = float(np.mean(np.diff(w, axis=2).var(axis=(0, 2)))) / 2.0
    x = w.reshape(len(w), -1)
    x = x - x.mean(axis=0)
    spread = np.linalg.eigvalsh(x.T @ x) / max(len(x), 1)
    k = int(np.count_nonzero(spread > noise))
    return max(1, min(k, cap, int(x.shape[1])))


def fit_network(
    spec: ArchSpec,
    train: npt.NDArray[np.float32],
    val: npt.NDArray[np.float32],
    settings: FitSettings,
    *,
    train_target: npt.NDArray[np.float32] | None = None,
) -> FitResult:
    """Fit ``spec`` on scaled windows ``(n, channels, length)``; ``val`` drives early stopping.

    ``train_target`` (same shape as ``train``) gives clean targets when the inputs are
    already noisy; by default the target is the input itself.
    """
    torch.manual_seed(settings.seed)
    network = build(spec)
    x = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
    if isinstance(network, LinearAutoencoder):
        target = x if train_target is None else torch.from_numpy(train_target)
        network.fit(target)
        return FitResult(network.eval())
    y = x if train_target is None else torch.from_numpy(np.ascontiguousarray(train_target))
    if len(val) > settings.max_windows_per_epoch:
        # Early stopping needs a stable estimate, not every window: an even subsample.
        val = val[np.linspace(0, len(val) - 1, settings.max_windows_per_epoch).astype(int)]
    return _fit_gradient(network, x, y, torch.from_numpy(np.ascontiguousarray(val)), settings)


def _fit_gradient(
    network: nn.Module, x: torch.Tensor, y: torch.Tensor, val: torch.Tensor, settings: FitSettings
) -> FitResult:
    device = torch.device(settings.device)
    network.to(device)
    optimiser = torch.optim.Adam(
        network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    train_curve: list[float] = []
    val_curve: list[float] = []
    best, best_state, best_epoch, stale = math.inf, copy.deepcopy(network.state_dict()), 0, 0
    epochs = tqdm(
        range(settings.epochs),
        desc="training",
        unit="epoch",
        leave=False,
        disable=not settings.show_progress,
    )
    for epoch in epochs:
        train_loss = _epoch(network, optimiser, x=x, y=y, generator=generator, settings=settings)
        val_loss = _evaluate(network, val if len(val) else x, device)
        train_curve.append(train_loss)
        val_curve.append(val_loss)
        epochs.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
        if val_loss < best * (1 - 1e-4):
            best, best_state, best_epoch, stale = (
                val_loss,
                copy.deepcopy(network.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
            if stale >= settings.patience:
                break
    network.load_state_dict(best_state)
    network.to("cpu").eval()
    return FitResult(network, train_curve, val_curve, best_epoch)


def _epoch(
    network: nn.Module,
    optimiser: torch.optim.Optimizer,
    *,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    settings: FitSettings,
) -> float:
    network.train()
    device = next(network.parameters()).device
    # An epoch sees between min_ and max_windows_per_epoch windows: a small history is
    # repeated (with fresh denoising noise each time), a large one sampled.
    size = min(max(len(x), settings.min_windows_per_epoch), settings.max_windows_per_epoch)
    repeats = -(-size // len(x))
    order = torch.cat([torch.randperm(len(x), generator=generator) for _ in range(repeats)])
    order = order[:size]
    total, seen = 0.0, 0
    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        clean = y[idx].to(device)
        noisy = x[idx]
        if settings.noise_std > 0:
            noisy = noisy + settings.noise_std * torch.randn(noisy.shape, generator=generator)
        noisy = noisy.to(device)
        recon = network(noisy)
        loss = (recon - clean).pow(2).mean()
        if isinstance(network, VariationalAutoencoder):
            loss = loss + settings.kl_weight * network.kl(noisy).mean() / clean[0].numel()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


def _evaluate(network: nn.Module, val: torch.Tensor, device: torch.device) -> float:
    network.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(val), 4096):
            batch = val[start : start + 4096].to(device)
            total += float((network(batch) - batch).pow(2).mean()) * len(batch)
    return total / max(len(val), 1)
