"""One self-describing model file: safetensors weights plus JSON metadata (shell: files).

The metadata lives in the safetensors header under the key ``aewatch``, so a bundle is a
single file any safetensors reader can open, and loading never unpickles anything. A new
file is written next to the target and renamed over it, so a daemon reloading the path
never sees half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aewatch.core.threshold import Threshold
from aewatch.errors import BundleError
from aewatch.model.networks import ArchSpec, build
from aewatch.model.scaler import RobustScaler
from aewatch.model.scorer import Scorer

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelBundle"]

FORMAT = "aewatch-bundle"
FORMAT_VERSION = 1
_META_KEY = "aewatch"


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
            save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)})
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a bundle; raise ``BundleError`` naming the file and the fix if it is unusable."""
        source = Path(path)
        if not source.is_file():
            raise BundleError(
                f"model bundle {source} does not exist; train one with "
                "`aewatch train --data FILE --out MODEL.aew`"
            )
        meta = _read_meta(source)
        try:
            arch = ArchSpec.from_json(meta["arch"])
            network = build(arch)
            network.load_state_dict(load_file(str(source)))
            return cls(
                name=meta["name"],
                arch=arch,
                network=network.eval(),
                scaler=RobustScaler.from_json(meta["scaler"]),
                threshold=Threshold.from_json(meta["threshold"]),
                channels=tuple(meta["channels"]),
                window_len=int(meta["window"]["length"]),
                hop=int(meta["window"]["hop"]),
                period_s=float(meta["period_s"]),
                max_gap_periods=float(meta["max_gap_periods"]),
                score_kind=meta["score_kind"],
                decision=dict(meta.get("decision", {})),
                provenance=dict(meta.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as err:
            raise BundleError(
                f"model bundle {source} is damaged or incomplete ({type(err).__name__}: {err}); "
                "retrain it or restore the file from a backup"
            ) from err

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


def _read_meta(source: Path) -> dict[str, Any]:
    try:
        with source.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if not 0 < header_len <= 100_000_000:
                raise ValueError(f"header length {header_len}")
            header = json.loads(fh.read(header_len))
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BundleError(
            f"{source} is not an aewatch model bundle (unreadable header: {err}); "
            "pass a file written by `aewatch train`"
        ) from err
    if meta.get("format") != FORMAT:
        raise BundleError(
            f"{source} is not an aewatch model bundle (format "
            f"{meta.get('format')!r}); pass a file written by `aewatch train`"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {source} has format version {meta.get('format_version')}, this "
            f"aewatch {_aewatch_version()} reads version {FORMAT_VERSION}; retrain it with "
            "this version or run the aewatch version that wrote it"
        )
    return dict(meta)


def _aewatch_version() -> str:
    from aewatch import __version__  # noqa: PLC0415  (avoids an import cycle at load)

    return __version__
