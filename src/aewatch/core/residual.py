"""Each channel predicted from the others and its own recent past (pipeline stage: Detector).

A ``ResidualModel`` is a ridge regression per channel: channel ``j`` at sample ``t`` from
the other channels at ``t`` (straight and bent at three knots, a piecewise-linear curve)
and every channel at ``t-1 .. t-lags``, plus, where a curve is too narrow for the bends,
what the fit still misses in each band of one other channel's values (``Bands``). Fitted
on normal rows, its residual (reading minus prediction) is small and nearly white however far the
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
# Bands of one input channel's values, each a 32nd of the fitted rows (at most 256: the
# fit keeps a band's index in a byte).
_BAND_COUNT = 32
_BAND_MIN_SHARE = 0.01  # of a channel's residual variance the bands must explain to be kept
_BAND_CLIP = 2.0  # noise levels: a residual counts at most this much (a move's samples)
_BAND_MIN_ROWS = 50  # a band holding fewer fitted rows keeps no offset


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
    ``(c,)``: the residual's noise level per channel, in the channel's units. ``bands``:
    what the prediction adds in narrow bands of another channel (None: nothing, as in
    bundles from before them).
    """

    lags: int
    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    bias: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    bands: Bands | None = None

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
        bands = Bands.fit(features[:, :c], targets - (features @ weights.T + bias))
        model = cls(lags, center, scale, weights, bias, np.ones(c), bands)
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
        return type(self)(
            self.lags, self.center, self.scale, self.weights, self.bias, noise, self.bands
        )

    def residuals(self, blocks: list[npt.NDArray[np.floating]]) -> npt.NDArray[np.float64]:
        """Reading minus prediction ``(n, c)`` for every row of ``blocks`` past the lags."""
        features, targets = _stacked(blocks, self.center, self.scale, self.lags)
        if len(features) == 0:
            return np.empty((0, self.channels))
        predicted = features @ self.weights.T + self.bias
        if self.bands is not None:
            predicted += self.bands.offsets(features[:, : self.channels].astype(np.float32))
        return (targets - predicted) * self.scale

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
            if self.bands is not None:
                out[:, i, :] += self.bands.offsets(now)
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
        out = {
            "lags": self.lags,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "noise": self.noise.tolist(),
        }
        if self.bands is not None:
            out["bands"] = self.bands.to_json()
        return out

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
        bands = None if obj.get("bands") is None else Bands.from_json(obj["bands"], c)
        return cls(lags, center, scale, weights, bias, noise, bands)


_FLOAT32_MAX = float(np.finfo(np.float32).max) / 1e6  # room for the sums of products


@dataclass(frozen=True, slots=True)
class Bands:
    """What a channel's prediction still misses in narrow bands of one other channel.

    A resonance 45 rpm wide in a pump's vibration is too narrow for the bends, which sit a
    quarter of the speed's range apart: the prediction then misses by most of a noise level
    for as long as the speed stays there, and the shift check holds an alert for hours on
    a healthy pump. ``edges[i]`` cut channel ``i``'s standardised values into
    ``_BAND_COUNT`` bands of as many fitted rows each. Per channel ``j``, ``source[j]`` is
    the channel whose current sample picks the band, and the prediction adds ``offset[j]``
    of that band (standardised units): the mean residual of the fitted rows in it, each
    counted at most ``_BAND_CLIP`` noise levels from the median (so a set-point move's few
    large residuals do not make a band). A channel gets bands only where they explain
    ``_BAND_MIN_SHARE`` of its residual's variance; the others have ``source`` -1 and add
    nothing.
    """

    source: npt.NDArray[np.int64]  # (c,)
    edges: npt.NDArray[np.float32]  # (c, _BAND_COUNT - 1), increasing
    offset: npt.NDArray[np.float64]  # (c, _BAND_COUNT)

    @classmethod
    def fit(cls, now: npt.NDArray[np.float64], residual: npt.NDArray[np.float64]) -> Bands | None:
        """From the fitted rows' standardised current samples and residuals ``(n, c)``;
        None where no channel gains from bands."""
        n, c = now.shape
        if n < _BAND_COUNT * _BAND_MIN_ROWS:
            return None
        quantiles = np.linspace(0.0, 1.0, _BAND_COUNT + 1)[1:-1]
        edges = np.quantile(now, quantiles, axis=0).T.astype(np.float32)  # (c, B - 1)
        at = np.empty((c, n), dtype=np.uint8)  # each row's band of each input channel
        for i in range(c):
            at[i] = np.searchsorted(edges[i], now[:, i].astype(np.float32), side="right")
        source = np.full(c, -1, dtype=np.int64)
        offset = np.zeros((c, _BAND_COUNT))
        for j in range(c):
            r = residual[:, j] - np.median(residual[:, j])
            spread = float(robust_sd(r[:, None])[0])
            r = np.clip(r, -_BAND_CLIP * spread, _BAND_CLIP * spread)
            r -= r.mean()
            total = float(r @ r)
            best = _BAND_MIN_SHARE * total
            for i in range(c):
                if i == j:
                    continue
                counts = np.bincount(at[i], minlength=_BAND_COUNT)
                sums = np.bincount(at[i], weights=r, minlength=_BAND_COUNT)
                means = np.where(counts >= _BAND_MIN_ROWS, sums / np.maximum(counts, 1), 0.0)
                explained = float(counts @ means**2)
                if explained > best:
                    best, source[j], offset[j] = explained, i, means
        if (source < 0).all():
            return None
        return cls(source, edges, offset)

    def offsets(self, now: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Each channel's offset ``(n, c)`` for standardised current samples ``(n, c)``."""
        out = np.zeros((len(now), len(self.source)))
        for j in np.flatnonzero(self.source >= 0).tolist():
            i = int(self.source[j])
            out[:, j] = self.offset[j][np.searchsorted(self.edges[i], now[:, i], side="right")]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.tolist(),
            "edges": self.edges.tolist(),
            "offset": self.offset.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], channels: int) -> Bands:
        source = np.asarray(obj["source"], dtype=np.int64)
        edges = np.asarray(obj["edges"], dtype=np.float32)
        offset = np.asarray(obj["offset"], dtype=np.float64)
        if (
            source.shape != (channels,)
            or edges.ndim != 2
            or edges.shape[0] != channels
            or offset.shape != (channels, edges.shape[1] + 1)
            or not ((source >= -1) & (source < channels)).all()
            or edges.shape[1] + 1 > 256
        ):
            raise ValueError(f"residual model: bands disagree with {channels} channels")
        if not (np.isfinite(edges).all() and np.isfinite(offset).all()):
            raise ValueError("residual model: bands must be finite")
        if (np.diff(edges, axis=1) < 0).any():
            raise ValueError("residual model: bands' edges must not decrease")
        return cls(source, edges, offset)


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
