"""The autoencoders a bundle can hold (pipeline stage: inside Scorer).

Every network maps scaled windows ``(n, channels, length)`` to reconstructions of the same
shape, and is rebuilt from a plain ``ArchSpec`` plus a safetensors state dict, so a bundle
never needs pickle.

- ``pca``: the linear autoencoder (Hinton & Salakhutdinov's baseline), fitted in closed
  form; the reconstruction residual is the Q statistic of process monitoring.
- ``dense``: the seed chapter's fully connected encoder/decoder.
- ``conv``: a 1-D convolutional autoencoder for longer windows.
- ``vae``: a dense variational autoencoder (reparameterisation); scored by reconstruction
  error of the posterior mean, or by the negative ELBO.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "ConvAutoencoder",
    "DenseAutoencoder",
    "LinearAutoencoder",
    "VariationalAutoencoder",
    "build",
]

ARCHITECTURES = ("pca", "dense", "conv", "vae")
_ACTIVATIONS = ("relu", "gelu", "tanh", "none")


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """Everything needed to rebuild a network before loading its weights."""

    kind: str
    channels: int
    length: int
    latent: int
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    latent_activation: str = "none"  # the seed puts a relu on the code; linear codes train better
    conv_channels: tuple[int, ...] = (32, 32)
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.kind!r}; choose one of {ARCHITECTURES}")
        for act in (self.activation, self.latent_activation):
            if act not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {act!r}; choose one of {_ACTIVATIONS}")
        if min(self.channels, self.length, self.latent) < 1:
            raise ValueError(f"channels, length and latent must be >= 1: {self}")

    @property
    def inputs(self) -> int:
        """Values in one flattened window."""
        return self.channels * self.length

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        obj = asdict(self)
        obj["hidden"] = list(self.hidden)
        obj["conv_channels"] = list(self.conv_channels)
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``."""
        obj = dict(obj)
        obj["hidden"] = tuple(obj.get("hidden", ()))
        obj["conv_channels"] = tuple(obj.get("conv_channels", (32, 32)))
        return cls(**obj)


def build(spec: ArchSpec) -> nn.Module:
    """Return an untrained network for ``spec``."""
    if spec.kind == "pca":
        return LinearAutoencoder(spec)
    if spec.kind == "dense":
        return DenseAutoencoder(spec)
    if spec.kind == "conv":
        return ConvAutoencoder(spec)
    return VariationalAutoencoder(spec)


class LinearAutoencoder(nn.Module):
    """PCA as an autoencoder: ``x̂ = μ + (x − μ) Vᵀ V`` with orthonormal rows ``V (latent, D)``."""

    mean: torch.Tensor
    components: torch.Tensor
    explained: torch.Tensor

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.zeros(spec.inputs))
        self.register_buffer("components", torch.zeros(spec.latent, spec.inputs))
        self.register_buffer("explained", torch.zeros(spec.latent))

    def fit(self, windows: torch.Tensor) -> None:
        """Fit mean and principal axes on scaled windows ``(n, channels, length)``."""
        x = windows.reshape(len(windows), -1).to(torch.float64)
        mean = x.mean(dim=0)
        cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        order = torch.argsort(eigvals, descending=True)[: self.spec.latent]
        # Fix each axis's sign so the same data always gives the same bundle.
        axes = eigvecs[:, order].T
        signs = torch.sign(axes[torch.arange(len(axes)), axes.abs().argmax(dim=1)])
        self.mean.copy_(mean.float())
        self.components.copy_((axes * signs[:, None]).float())
        total = eigvals.clamp(min=0).sum().clamp(min=1e-12)
        self.explained.copy_((eigvals[order].clamp(min=0) / total).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1) - self.mean
        recon = flat @ self.components.T @ self.components + self.mean
        return recon.reshape(x.shape)


class DenseAutoencoder(nn.Module):
    """Fully connected encoder ``D → hidden… → latent`` and mirrored decoder."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = [spec.inputs, *spec.hidden]
        self.encoder = _mlp([*widths, spec.latent], spec.activation, spec.latent_activation)
        self.decoder = _mlp([spec.latent, *reversed(widths)], spec.activation, "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x.reshape(len(x), -1))
        out: torch.Tensor = self.decoder(z)
        return out.reshape(x.shape)


class ConvAutoencoder(nn.Module):
    """1-D convolutions over time, a dense bottleneck, and upsampling convolutions back."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        chans = [spec.channels, *spec.conv_channels]
        down: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            down += [nn.Conv1d(c_in, c_out, 5, stride=2, padding=2), _activation(spec.activation)]
        self.down = nn.Sequential(*down)
        self.reduced = _conv_length(spec.length, len(spec.conv_channels))
        flat = chans[-1] * self.reduced
        self.to_code = nn.Linear(flat, spec.latent)
        self.code_act = _activation(spec.latent_activation)
        self.from_code = nn.Linear(spec.latent, flat)
        up: list[nn.Module] = []
        for c_in, c_out in zip(reversed(chans[1:]), reversed(chans[1:-1]), strict=False):
            up += [
                nn.Upsample(scale_factor=2),
                nn.Conv1d(c_in, c_out, 5, padding=2),
                _activation(spec.activation),
            ]
        up += [nn.Upsample(scale_factor=2), nn.Conv1d(chans[1], spec.channels, 5, padding=2)]
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x).reshape(len(x), -1)
        z = self.code_act(self.to_code(h))
        h = F.relu(self.from_code(z)).reshape(len(x), -1, self.reduced)
        out: torch.Tensor = self.up(h)
        # Upsampling lands on reduced·2^depth >= length; interpolate back to the grid.
        if out.shape[-1] != self.spec.length:
            out = F.interpolate(out, size=self.spec.length, mode="linear", align_corners=True)
        return out


class VariationalAutoencoder(nn.Module):
    """Dense VAE: the encoder gives ``μ, log σ²``; ``z = μ + σ ε`` while training."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = [spec.inputs, *spec.hidden]
        self.encoder = _mlp(widths, spec.activation, spec.activation)
        self.mu = nn.Linear(widths[-1], spec.latent)
        self.logvar = nn.Linear(widths[-1], spec.latent)
        self.decoder = _mlp([spec.latent, *reversed(widths)], spec.activation, "none")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``μ`` and ``log σ²``, each ``(n, latent)``."""
        h = self.encoder(x.reshape(len(x), -1))
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        out: torch.Tensor = self.decoder(z)
        return out.reshape(x.shape)

    def kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) ‖ N(0, I)) per window, ``(n,)``."""
        mu, logvar = self.encode(x)
        return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "gelu": nn.GELU(), "tanh": nn.Tanh(), "none": nn.Identity()}[name]


def _mlp(widths: list[int], activation: str, last_activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        is_last = i == len(widths) - 2
        layers.append(_activation(last_activation if is_last else activation))
    return nn.Sequential(*layers)


def _conv_length(length: int, depth: int) -> int:
    for _ in range(depth):
        length = math.floor((length + 2 * 2 - 5) / 2) + 1
    return length
