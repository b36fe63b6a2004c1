"""Reconstruct windows and measure how far each is from normal (pipeline stage: Scorer).

Torch stays inside this module: windows in data units go in as numpy, are scaled, passed
through the network in eval mode under ``torch.inference_mode()`` in batches, and come
back as numpy reconstructions (the denoised signal, in data units) with per-window and
per-channel errors measured in scaled units, so every channel weighs the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aewatch.core.scaler import RobustScaler
from aewatch.model.networks import VariationalAutoencoder

__all__ = ["SCORE_KINDS", "Scorer", "Scores", "set_inference_threads"]

SCORE_KINDS = ("mse", "elbo")
DEFAULT_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Scores:
    """What the scorer says about ``n`` windows of ``channels × length``.

    ``reconstructions`` ``(n, channels, length)`` float32 in data units (None when not
    asked for);
    ``errors`` ``(n,)`` float32, the window's anomaly score; ``channel_errors``
    ``(n, channels)`` float32, mean squared scaled residual per channel.
    """

    reconstructions: npt.NDArray[np.float32] | None
    errors: npt.NDArray[np.float32]
    channel_errors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.errors)


class Scorer:
    """Scale, reconstruct and measure windows with one trained network.

    ``score_kind`` is ``"mse"`` (mean squared scaled residual over the window) or, for a
    VAE, ``"elbo"`` (the negative evidence lower bound per value: residual plus KL).
    """

    def __init__(
        self,
        network: nn.Module,
        scaler: RobustScaler,
        *,
        score_kind: str = "mse",
        batch_size: int = DEFAULT_BATCH,
        device: str = "cpu",
    ) -> None:
        if score_kind not in SCORE_KINDS:
            raise ValueError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
        if score_kind == "elbo" and not isinstance(network, VariationalAutoencoder):
            raise ValueError("score_kind='elbo' needs a VAE; use 'mse' for other networks")
        self.network = network.to(device).eval()
        self.scaler = scaler
        self.score_kind = score_kind
        self.batch_size = batch_size
        self.device = device

    def score(self, windows: npt.ArrayLike, *, reconstruct: bool = True) -> Scores:
        """Score windows ``(n, channels, length)`` in data units; ``n`` may be 0.

        ``reconstruct=False`` leaves the reconstructions out (None), which spares putting
        them back in data units when only the errors are wanted.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != len(self.scaler.center):
            raise ValueError(
                f"windows must be (n, {len(self.scaler.center)}, length), got {x.shape}"
            )
        parts = [
            self._score_batch(x[i : i + self.batch_size], reconstruct=reconstruct)
            for i in range(0, len(x), self.batch_size)
        ]
        if not parts:
            empty = np.empty((0,), dtype=np.float32)
            recon = x.copy() if reconstruct else None
            return Scores(recon, empty, np.empty((0, x.shape[1]), dtype=np.float32))
        if len(parts) == 1:
            return parts[0]
        return Scores(
            np.concatenate([p.reconstructions for p in parts if p.reconstructions is not None])
            if reconstruct
            else None,
            np.concatenate([p.errors for p in parts]),
            np.concatenate([p.channel_errors for p in parts]),
        )

    def _score_batch(self, raw: npt.NDArray[np.float32], *, reconstruct: bool) -> Scores:
        with np.errstate(over="ignore", invalid="ignore"):  # a huge value: the detector caps it
            scaled = torch.from_numpy(self.scaler.transform(raw)).to(self.device)
        with torch.inference_mode():
            recon = self.network(scaled)
            sq = (recon - scaled).pow(2)
            channel_errors = sq.mean(dim=2)
            errors = channel_errors.mean(dim=1)
            if self.score_kind == "elbo":
                assert isinstance(self.network, VariationalAutoencoder)
                errors = errors + self.network.kl(scaled) / scaled[0].numel()
        return Scores(
            self.scaler.inverse(recon.cpu().numpy()) if reconstruct else None,
            errors.cpu().numpy().astype(np.float32),
            channel_errors.cpu().numpy().astype(np.float32),
        )


def set_inference_threads(threads: int) -> None:
    """Let the forward passes of the calling thread use ``threads`` threads (torch's
    intra-op pool).

    Call it in the thread that scores: torch keeps the count in the OpenMP runtime, which
    keeps it per thread, so a thread that never set it runs its passes on every core and
    the pool's threads spin between them (a third of a core, in the daemon under load).
    """
    if threads < 1:
        raise ValueError(f"inference threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
