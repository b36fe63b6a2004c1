"""One self-describing model file: safetensors weights plus JSON metadata (shell: files).

The metadata lives in the safetensors header under the key ``aewatch``, so a bundle is a
single file any safetensors reader can open, and loading never unpickles anything. A new
file is written next to the target and renamed over it, so a daemon reloading the path
never sees half a bundle. Loading trusts nothing in the file: every field is checked
(:mod:`aewatch.model.bundle_meta`), the weights must be what the architecture needs, and
one synthetic window is scored and decided before the bundle is handed out.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aewatch.core.detector import DecisionSettings, Detector
from aewatch.core.scaler import RobustScaler
from aewatch.core.threshold import Threshold
from aewatch.errors import BundleError
from aewatch.model.bundle_meta import (
    FORMAT,
    FORMAT_VERSION,
    MAX_GAP_PERIODS,
    MAX_PERIOD_S,
    META_KEY,
    MIN_PERIOD_S,
    Fields,
    read_header,
)
from aewatch.model.networks import ArchSpec, build
from aewatch.model.scorer import SCORE_KINDS, Scorer

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelBundle"]

_SYNTHETIC_ASSET = "(load check)"
_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}


@dataclass(frozen=True)
class ModelBundle:
    """A trained network with everything needed to score and decide like at training time.

    ``decision`` holds the hysteresis and threshold-adaptation settings
    (see ``aewatch.core.detector``); ``provenance`` the training data fingerprint,
    settings, library versions and creation time.
    """

    name: str
    arch: ArchSpec
    network: nn.Module
    scaler: RobustScaler
    threshold: Threshold
    channels: tuple[str, ...]
    window_len: int
    hop: int
    period_s: float
    max_gap_periods: float
    score_kind: str = "mse"
    decision: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Same types as after a save/load round trip, so the version hash is stable.
        object.__setattr__(self, "period_s", float(self.period_s))
        object.__setattr__(self, "max_gap_periods", float(self.max_gap_periods))
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def version(self) -> str:
        """Content hash of weights and metadata: changes whenever the model does."""
        meta = self._core_meta()
        # The creation time is the one thing two trainings with the same seed differ in.
        meta["provenance"] = {k: v for k, v in self.provenance.items() if k != "created_at"}
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for key, tensor in sorted(self.network.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    def scorer(self, *, device: str = "cpu", batch_size: int = 4096) -> Scorer:
        """A ``Scorer`` running this bundle's network."""
        return Scorer(
            self.network,
            self.scaler,
            score_kind=self.score_kind,
            batch_size=batch_size,
            device=device,
        )

    def synthetic_window(self) -> npt.NDArray[np.float32]:
        """One window ``(1, channels, window_len)`` holding each channel's training centre."""
        center = self.scaler.center.astype(np.float32)
        return np.repeat(center[None, :, None], self.window_len, axis=2)

    def check_channels(self, channels: tuple[str, ...], source: str) -> None:
        """Raise ``BundleError`` unless ``channels`` are this model's, in its order."""
        if tuple(channels) == self.channels:
            return
        missing = [c for c in self.channels if c not in channels]
        extra = [c for c in channels if c not in self.channels]
        hint = (f"missing {missing}" if missing else "") + (
            f"{'; ' if missing else ''}not in the model {extra}" if extra else ""
        )
        raise BundleError(
            f"{source} has channels {list(channels)} but model {self.name!r} was trained on "
            f"{list(self.channels)} ({hint or 'different order'}); pass --channels "
            f"{','.join(self.channels)} or retrain on this data"
        )

    def save(self, path: str | Path) -> None:
        """Write the bundle atomically to ``path``."""
        target = Path(path)
        meta = {**self._core_meta(), "version": self.version}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)})
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a bundle and check it in full before handing it out.

        Every metadata field is checked for its type and range
        (:mod:`aewatch.model.bundle_meta`), the stored weights must have the shapes and
        types the architecture needs and be finite, and one synthetic window (each channel
        at its training centre) must score to a finite error and pass the decision stages.

        Raises:
            BundleError: the file is missing or unusable; the message names the file, the
                field and the fix.
        """
        source = Path(path)
        if not source.is_file():
            raise BundleError(
                f"model bundle {source} does not exist; train one with "
                "`aewatch train --data FILE --out MODEL.aew`"
            )
        stored, meta = read_header(source)
        fields = Fields(source, meta)
        arch = fields.arch()
        channels = fields.channels(arch)
        window_len, hop = fields.window(len(channels), arch)
        score_kind = fields.text("score_kind", SCORE_KINDS)
        if score_kind == "elbo" and arch.kind != "vae":
            fields.refuse("score_kind", score_kind, f"needs arch.kind vae, not {arch.kind}")
        period_fix = "retrain with `aewatch train --period SECONDS`"
        bundle = cls(
            name=fields.text("name"),
            arch=arch,
            network=_network(source, arch, stored),
            scaler=fields.scaler(len(channels)),
            threshold=fields.threshold(),
            channels=channels,
            window_len=window_len,
            hop=hop,
            period_s=fields.number("period_s", MIN_PERIOD_S, MAX_PERIOD_S, fix=period_fix),
            max_gap_periods=fields.number(
                "max_gap_periods", 1.0, MAX_GAP_PERIODS, fix="retrain with `--max-gap N` (>= 1)"
            ),
            score_kind=score_kind,
            decision=fields.mapping("decision"),
            provenance=fields.mapping("provenance"),
        )
        _score_a_window(bundle, fields.decision(len(channels)))
        return bundle

    def _core_meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "arch": self.arch.to_json(),
            "score_kind": self.score_kind,
            "channels": list(self.channels),
            "window": {"length": self.window_len, "hop": self.hop},
            "period_s": self.period_s,
            "max_gap_periods": self.max_gap_periods,
            "scaler": self.scaler.to_json(),
            "threshold": self.threshold.to_json(),
            "decision": self.decision,
            "provenance": self.provenance,
        }


def _network(source: Path, arch: ArchSpec, stored: dict[str, Any]) -> nn.Module:
    """The network of ``arch`` with the weights stored in ``source``.

    Nothing is allocated until the stored tensors are known to be the ones ``arch`` needs
    (names, types and shapes) and to fit in the file, so a header cannot make the loader
    allocate more than the file holds.
    """
    try:
        with torch.device("meta"):
            needed = {
                name: (_DTYPES.get(t.dtype, str(t.dtype)), list(t.shape))
                for name, t in build(arch).state_dict().items()
            }
    except (ValueError, RuntimeError) as err:
        raise BundleError(
            f"model bundle {source}: arch = {arch.to_json()} cannot be built ({err}); "
            "retrain it with `aewatch train`"
        ) from err
    found = {
        name: (entry.get("dtype"), entry.get("shape")) if isinstance(entry, dict) else entry
        for name, entry in stored.items()
    }
    for name in sorted(needed.keys() | found.keys()):
        if found.get(name) != needed.get(name):
            raise BundleError(
                f"model bundle {source}: weights {name!r} are {_shown(found.get(name))} in the "
                f"file, arch needs {_shown(needed.get(name))}; retrain it with `aewatch "
                "train` or restore the file from a backup"
            )
    values = sum(math.prod(shape) for _, shape in needed.values())
    if 4 * values > source.stat().st_size:  # a float32 weight takes at least 4 bytes
        raise BundleError(
            f"model bundle {source} is truncated: arch needs {values} weights; restore the "
            "file from a backup or retrain it"
        )
    network = build(arch)
    try:
        network.load_state_dict(load_file(str(source)))
    except (RuntimeError, SafetensorError) as err:
        raise BundleError(
            f"model bundle {source} is damaged ({type(err).__name__}: {err}); retrain it or "
            "restore the file from a backup"
        ) from err
    tensors = network.state_dict().items()
    broken = [name for name, t in tensors if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        raise BundleError(
            f"model bundle {source}: weights {broken[0]!r} hold NaN or infinite values; "
            "retrain it or restore the file from a backup"
        )
    return network.eval()


def _score_a_window(bundle: ModelBundle, settings: DecisionSettings) -> None:
    """Score one synthetic window (every channel at its centre) and decide it, or refuse."""
    window = bundle.synthetic_window()
    try:
        scores = bundle.scorer(batch_size=1).score(window)
        detector = Detector(bundle.threshold, bundle.channels, settings)
        end_s = bundle.window_len * bundle.period_s
        detector.decide(_SYNTHETIC_ASSET, [end_s], scores, window)
    except (ArithmeticError, LookupError, TypeError, ValueError, RuntimeError) as err:
        raise BundleError(
            f"model bundle {bundle.name!r} fails on a synthetic window ({type(err).__name__}: "
            f"{err}); retrain it with `aewatch train`"
        ) from err
    if not np.isfinite(scores.errors).all():
        raise BundleError(
            f"model bundle {bundle.name!r} scores a window of its own training centre as "
            f"{float(scores.errors[0])}; retrain it with `aewatch train`"
        )


def _shown(value: object) -> str:
    if value is None:
        return "absent"
    if isinstance(value, tuple):
        return f"{value[0]} {value[1]}"
    return repr(value)[:60]
