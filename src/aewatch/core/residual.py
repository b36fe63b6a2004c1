"""Each channel predicted from the others and its own recent past (pipeline stage: Detector).

A ``ResidualModel`` is a ridge regression per channel: channel ``j`` at sample ``t`` from
the other channels at ``t`` (straight and bent at three knots, a piecewise-linear curve)
and every channel at ``t-1 .. t-lags``. Fitted on normal
rows, its residual (reading minus prediction) is small and nearly white however far the
set-point moves, because the moves are explained by the other channels and the recent
past; a sensor that steps, drifts, sticks or gets noisier leaves a residual that is many
times its usual size. Each channel's noise level is the robust spread of its residual on
held-out normal rows, so residuals of different channels are compared in noise levels.

Pure numpy: no torch, no I/O. Predictions come straight from a raw window, so the
detector needs no state beyond what its checks accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_LAGS", "ResidualModel", "robust_sd"]

# expected()'s float32 weights per model, built once (a model is immutable). Keyed by
# id() with the model kept alive beside them, so an id is never reused while cached.
_FLOAT32_WEIGHTS: dict[
    int, tuple[ResidualModel, npt.NDArray[np.float32], npt.NDArray[np.float32]]
] = {}
_CACHE_SIZE = 64

DEFAULT_LAGS = 6
_KNOTS = (-1.0, 0.0, 1.0)  # where the bends sit, in the standardised units (centre 0)
_KNOTS_32 = np.array(_KNOTS, dtype=np.float32)
_RIDGE = 1e-3  # relative to the mean diagonal of the normal equations
_MAD_TO_SD = 1.4826
_MIN_NOISE = 1e-6  # noise floor relative to the channel's scale


@dataclass(frozen=True, slots=True)
class ResidualModel:
    """Per-channel linear predictor and noise level, in the channels' own units.

    ``center``, ``scale`` ``(c,)``: the inputs are standardised with them first.
    ``weights`` ``(c, c * (lags + 1 + len(_KNOTS)))``: row ``j`` weighs the standardised
    features ``[x_t, x_{t-1}, ..., x_{t-lags}, bends(x_t)]`` (channel-major inside each
    block; ``bends`` is ``max(0, x_t - knot)`` per knot), with ``x_t[j]`` and its bends
    always weighted 0. The bends let a channel follow another along a curve (a pump's
    power goes with the cube of its speed, its vibration peaks at a resonance), so the
    residual does not wander with the operating point. ``bias`` ``(c,)``. ``noise``
    ``(c,)``: the residual's noise level per channel, in the channel's units.
    """

    lags: int
    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    bias: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]

    @property
    def channels(self) -> int:
        return len(self.center)

    @classmethod
    def fit(
        cls,
        blocks: list[npt.NDArray[np.floating]],
        lags: int = DEFAULT_LAGS,
        *,
        own_past: bool = True,
    ) -> Self:
        """Fit on contiguous blocks of normal rows ``(m, c)``, oldest first.

        With ``own_past`` False a channel is predicted from the other channels alone (now
        and ``lags`` samples back): its residual then holds a sensor's offset for as long
        as it lasts, where with its own past it shows mostly the offset's onset.

        The noise level is taken from the same rows; call :meth:`with_noise_from` with
        held-out rows for an honest one.

        Raises:
            ValueError: fewer usable rows than twice the number of features.
        """
        if lags < 1:
            raise ValueError(f"lags must be >= 1, got {lags}")
        rows = np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])
        c = rows.shape[1]
        center, scale = _center_scale(rows)
        features, targets = _stacked(blocks, center, scale, lags)
        n_features = c * (lags + 1 + len(_KNOTS))
        if len(features) < 2 * n_features:
            raise ValueError(
                f"the residual model needs at least {2 * n_features} consecutive-row samples, "
                f"got {len(features)}"
            )
        mean_x, mean_y = features.mean(axis=0), targets.mean(axis=0)
        xc, yc = features - mean_x, targets - mean_y
        gram = xc.T @ xc
        ridge = _RIDGE * max(float(np.trace(gram)) / n_features, 1e-12)
        cross = xc.T @ yc
        weights = np.zeros((c, n_features))
        for j in range(c):
            keep = np.ones(n_features, dtype=bool)
            keep[j] = False  # x_t[j] is what is predicted
            keep[c * (lags + 1) + j :: c] = False  # and so are its bends
            if not own_past:
                keep[j::c] = False
            g = gram[np.ix_(keep, keep)] + ridge * np.eye(int(keep.sum()))
            weights[j, keep] = np.linalg.solve(g, cross[keep, j])
        bias = mean_y - weights @ mean_x
        model = cls(lags, center, scale, weights, bias, np.ones(c))
        return model.with_noise_from(blocks)

    @classmethod
    def level(cls, blocks: list[npt.NDArray[np.floating]]) -> Self:
        """Each channel predicted by its history's median alone (no other channel, no
        past): the stand-in where the history is too short to fit predictions, for the
        checks that need none (a stuck transmitter). Its noise level is the channel's
        sample-to-sample spread (the robust spread of its first differences over √2).

        Raises:
            ValueError: no block with two rows or more.
        """
        rows = [np.asarray(b, dtype=np.float64) for b in blocks]
        moves = [np.diff(b, axis=0) for b in rows if len(b) > 1]
        if not moves:
            raise ValueError("the level model needs a block of two rows or more")
        every = np.concatenate(rows)
        c = every.shape[1]
        center, scale = _center_scale(every)
        noise = robust_sd(np.concatenate(moves)) / np.sqrt(2.0)
        noise = np.maximum(noise, _MIN_NOISE * scale)
        weights = np.zeros((c, c * (2 + len(_KNOTS))))
        return cls(1, center, scale, weights, np.zeros(c), noise)

    def with_noise_from(self, blocks: list[npt.NDArray[np.floating]]) -> Self:
        """The same predictor with each channel's noise level measured on ``blocks``."""
        residuals = self.residuals(blocks)
        if len(residuals) == 0:
            return self
        noise = np.maximum(robust_sd(residuals), _MIN_NOISE * self.scale)
        return type(self)(self.lags, self.center, self.scale, self.weights, self.bias, noise)

    def residuals(self, blocks: list[npt.NDArray[np.floating]]) -> npt.NDArray[np.float64]:
        """Reading minus prediction ``(n, c)`` for every row of ``blocks`` past the lags."""
        features, targets = _stacked(blocks, self.center, self.scale, self.lags)
        if len(features) == 0:
            return np.empty((0, self.channels))
        return (targets - (features @ self.weights.T + self.bias)) * self.scale

    def expected(self, windows: npt.NDArray[np.floating], hop: int) -> npt.NDArray[np.float64]:
        """Predictions ``(n, h, c)`` for the newest ``h`` samples of windows ``(n, c, L)``.

        ``h`` is ``min(hop, L - lags)``: the samples a window adds to the stream, as far
        as the window holds their lags. Computed in float32 (the daemon's hot path): a
        prediction agrees with :meth:`residuals`' to about 1e-6 of the channel's scale.
        """
        n, c, length = np.shape(windows)
        h = max(0, min(hop, length - self.lags))
        out = np.empty((n, h, c))
        if n == 0 or h == 0:
            return out
        lag_weights, bend_weights = self._float32_weights()  # lag weights over the scale
        center = self.center.astype(np.float32)[:, None]
        scale = self.scale.astype(np.float32)
        part = np.empty((n, c, self.lags + 1), dtype=np.float32)
        flat = part.reshape(n, -1)  # a view: the weights' layout, channel-major, oldest first
        for i in range(h):
            t = length - h + i
            # One pass, no temporary: the window's samples less the centre (the division by
            # the scale is in the weights).
            np.subtract(windows[:, :, t - self.lags : t + 1], center, out=part)
            now = part[:, :, -1] / scale
            bends = np.maximum(now[:, None, :] - _KNOTS_32[None, :, None], 0.0).reshape(n, -1)
            out[:, i, :] = flat @ lag_weights + bends @ bend_weights
        return (out + self.bias) * self.scale + self.center

    def _float32_weights(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The weights as :meth:`expected` applies them: ``(c * (lags + 1), c)`` for the
        window's samples channel-major, oldest first (divided by their channel's scale, so
        they take the samples less the centre), and ``(c * knots, c)`` for the bends.
        """
        cached = _FLOAT32_WEIGHTS.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1], cached[2]
        c, lags = self.channels, self.lags
        by_lag = self.weights[:, : c * (lags + 1)].reshape(c, lags + 1, c)  # (out, lag, in)
        oldest_first = by_lag[:, ::-1, :].transpose(2, 1, 0).reshape(c * (lags + 1), c)
        bends = self.weights[:, c * (lags + 1) :].T
        per_row = np.repeat(self.scale, lags + 1)[:, None]  # each input's own scale
        lag_weights = np.ascontiguousarray(oldest_first / per_row, dtype=np.float32)
        bend_weights = np.ascontiguousarray(bends, dtype=np.float32)
        if len(_FLOAT32_WEIGHTS) > _CACHE_SIZE:
            _FLOAT32_WEIGHTS.clear()
        _FLOAT32_WEIGHTS[id(self)] = (self, lag_weights, bend_weights)
        return lag_weights, bend_weights

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the bundle's metadata."""
        return {
            "lags": self.lags,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "noise": self.noise.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Inverse of ``to_json``.

        Raises:
            ValueError: shapes that do not agree, or values that are not finite.
        """
        lags = int(obj["lags"])
        arrays = [
            np.asarray(obj[key], dtype=np.float64)
            for key in ("center", "scale", "weights", "bias", "noise")
        ]
        center, scale, weights, bias, noise = arrays
        c = len(center)
        if lags < 1 or c < 1:
            raise ValueError(f"residual model: lags {lags} and channels {c} must be >= 1")
        shapes = {"scale": scale.shape, "bias": bias.shape, "noise": noise.shape}
        if any(shape != (c,) for shape in shapes.values()) or weights.shape != (
            c,
            c * (lags + 1 + len(_KNOTS)),
        ):
            raise ValueError(f"residual model: shapes disagree with {c} channels, {lags} lags")
        is_finite = all(np.isfinite(a).all() for a in arrays)
        if not is_finite or (scale <= 0).any() or (noise <= 0).any():
            raise ValueError("residual model: values must be finite, scale and noise positive")
        # The hot path predicts in float32, with each lag weight over its input's scale.
        per_input = np.repeat(scale, lags + 1)[None, :]
        applied = [center, scale, weights[:, : c * (lags + 1)] / per_input, weights, bias]
        if any(np.abs(a).max() >= _FLOAT32_MAX for a in applied):
            raise ValueError("residual model: values too large for float32 predictions")
        return cls(lags, center, scale, weights, bias, noise)


_FLOAT32_MAX = float(np.finfo(np.float32).max) / 1e6  # room for the sums of products


def robust_sd(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each column's spread ``(c,)`` as a normal sd: its median absolute deviation, or its
    sd where that is 0 (a quantised channel, whose MAD is 0 while it does vary). NaN are
    left out.

    >>> robust_sd(np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 5.0]])).round(3)
    array([1.483, 1.732])
    """
    median = np.nanmedian(values, axis=0)
    mad = np.nanmedian(np.abs(values - median), axis=0) * _MAD_TO_SD
    return np.asarray(np.where(mad > 0, mad, np.nanstd(values, axis=0)), dtype=np.float64)


def _center_scale(
    rows: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each channel's median and a quarter of its 1-99 % range (1 where that is 0): what
    the inputs are standardised with."""
    spread = np.percentile(rows, 99, axis=0) - np.percentile(rows, 1, axis=0)
    return np.median(rows, axis=0), np.where(spread > 0, spread / 4.0, 1.0)


def _stacked(
    blocks: list[npt.NDArray[np.floating]],
    center: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    lags: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Features ``(n, c * (lags + 1 + len(_KNOTS)))``, targets ``(n, c)``: rows past the lags."""
    features, targets = [], []
    for block in blocks:
        x = (np.asarray(block, dtype=np.float64) - center) / scale
        if len(x) <= lags:
            continue
        m = len(x) - lags
        now = x[lags:]
        features.append(
            np.hstack([*(x[lags - k : lags - k + m] for k in range(lags + 1)), _bends(now)])
        )
        targets.append(x[lags:])
    c = len(center)
    if not features:
        return np.empty((0, c * (lags + 1 + len(_KNOTS)))), np.empty((0, c))
    return np.concatenate(features), np.concatenate(targets)


def _bends(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``max(0, x - knot)`` for each knot, knot-major: ``(n, c * len(_KNOTS))``."""
    return np.hstack([np.maximum(x - knot, 0.0) for knot in _KNOTS])
