"""The models the daemon serves and which asset each one watches (between config and pipeline).

A :class:`Fleet` is built once from the configuration's ``models`` list and never changed
afterwards: a reload builds a new one and swaps it in whole, so readers need no lock. Each
entry is a :class:`ServedModel`: a bundle, its scorer and a :class:`Detector` that holds
the alert state of every asset the entry serves. The first entry whose pattern matches an
asset serves it, as in :meth:`aewatch.config.Config.model_for`.

:func:`load_fleet` checks every entry before handing the fleet out: its scorer, on the
configured device and batch size, scores one synthetic window, a scratch detector decides
it, and the window memory one asset takes is allocated once. A fleet that comes back can
serve; one that cannot raises ``BundleError`` and nothing has changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from aewatch.config import ModelConfig
from aewatch.core.detector import DecisionSettings, Detector
from aewatch.core.window import WindowBank
from aewatch.errors import BundleError
from aewatch.model.bundle import ModelBundle
from aewatch.model.scorer import Scorer

__all__ = ["Fleet", "ServedModel", "load_fleet"]

_LOOKUP_CACHE = 65536  # asset names remembered per fleet; the cache is cleared beyond it
_CHECK_ASSET = "(fleet check)"
_SERVING_ERRORS = (
    ArithmeticError,
    AssertionError,
    LookupError,
    MemoryError,
    RuntimeError,
    TypeError,
    ValueError,
)


@dataclass(eq=False)
class ServedModel:
    """One configured model: its bundle, scorer and the detector of the assets it serves."""

    name: str
    pattern: str
    path: Path
    bundle: ModelBundle
    scorer: Scorer
    detector: Detector
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.version = self.bundle.version

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        *,
        name: str | None = None,
        pattern: str = "*",
        path: Path | None = None,
        device: str = "cpu",
        batch_size: int = 4096,
    ) -> ServedModel:
        """Serve ``bundle`` with the decision settings it was trained with."""
        return cls(
            name=name or bundle.name,
            pattern=pattern,
            path=path or Path(bundle.name),
            bundle=bundle,
            scorer=bundle.scorer(device=device, batch_size=batch_size),
            detector=Detector(
                bundle.threshold, bundle.channels, DecisionSettings.from_json(bundle.decision)
            ),
        )

    def check(self) -> None:
        """Score and decide one synthetic window as this entry will, touching none of its state.

        Raises:
            BundleError: the entry cannot serve (a device without the model, a window that
                cannot be allocated, a scorer or detector that fails).
        """
        bundle = self.bundle
        window = bundle.synthetic_window()
        try:
            WindowBank(len(bundle.channels), bundle.window_len, bundle.hop).open()
            scores = self.scorer.score(window)
            scratch = Detector(bundle.threshold, bundle.channels, self.detector.settings)
            scratch.decide(_CHECK_ASSET, [bundle.window_len * bundle.period_s], scores, window)
        except _SERVING_ERRORS as err:
            raise BundleError(
                f"model {self.name!r} ({self.path}) cannot serve on device "
                f"{self.scorer.device!r}: a synthetic window failed ({type(err).__name__}: "
                f"{err}); check `aewatch run --device` or retrain the model"
            ) from err


class Fleet:
    """Ordered models; the first whose pattern matches an asset serves it.

    >>> Fleet([]).model_for("well-7") is None
    True
    """

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self.models = tuple(models)
        self._cache: dict[str, ServedModel | None] = {}

    def model_for(self, asset: str) -> ServedModel | None:
        """The model serving ``asset``, or None when no pattern matches it."""
        try:
            return self._cache[asset]
        except KeyError:
            pass
        model = next((m for m in self.models if fnmatchcase(asset, m.pattern)), None)
        if len(self._cache) >= _LOOKUP_CACHE:
            self._cache.clear()
        self._cache[asset] = model
        return model


def load_fleet(
    entries: Sequence[ModelConfig], *, device: str = "cpu", batch_size: int = 4096
) -> Fleet:
    """Load every configured bundle (a path used twice is read once); a ``dir`` entry
    gives one model per ``ASSET.aew`` in its folder, listed now.

    Each model is checked (:meth:`ServedModel.check`) before the fleet is returned.

    Raises:
        BundleError: a bundle is missing or unusable, a folder cannot be listed, or a
            model cannot serve on ``device``; the message names the file and the fix.
    """
    bundles: dict[Path, ModelBundle] = {}
    models = []
    for entry in entries:
        for name, pattern, path in entry.bundles():
            bundle = bundles.get(path)
            if bundle is None:
                bundle = bundles[path] = ModelBundle.load(path)
            try:
                model = ServedModel.from_bundle(
                    bundle,
                    name=name,
                    pattern=pattern,
                    path=path,
                    device=device,
                    batch_size=batch_size,
                )
            except _SERVING_ERRORS as err:  # torch says "not compiled with CUDA" by an assert
                raise BundleError(
                    f"model {name or bundle.name!r} ({path}) cannot be put on device "
                    f"{device!r} ({type(err).__name__}: {err}); run with `--device cpu` or a "
                    "device this machine has"
                ) from err
            model.check()
            models.append(model)
    return Fleet(models)
