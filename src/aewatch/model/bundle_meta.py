"""What a bundle file says about itself, checked before anything is built from it (shell: files).

A bundle is untrusted input: anyone who can write the model path can hand the daemon a file.
:func:`read_header` reads the safetensors header (at most :data:`MAX_HEADER_BYTES`, nested
at most :data:`MAX_JSON_DEPTH` deep) and the ``aewatch`` metadata in it; :class:`Fields`
then reads each field with its type and range. Every refusal is a :class:`BundleError`
naming the file, the field, the value it had and the fix, so a command exits 2 with that
line and a reloading daemon keeps its old model.

The ranges: ``period_s`` in [:data:`MIN_PERIOD_S`, :data:`MAX_PERIOD_S`], ``1 <= hop <=
window``, at least one channel, a window of at most :data:`MAX_WINDOW_VALUES` values
(channels × samples), a finite threshold, and a drift baseline of at most
:data:`MAX_ADAPT_DEPTH` windows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from aewatch.core.detector import DecisionSettings
from aewatch.core.scaler import RobustScaler
from aewatch.core.threshold import Threshold
from aewatch.errors import BundleError
from aewatch.model.networks import ARCHITECTURES, ArchSpec

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_ADAPT_DEPTH",
    "MAX_GAP_PERIODS",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PERIOD_S",
    "MAX_WINDOW_VALUES",
    "META_KEY",
    "MIN_PERIOD_S",
    "Fields",
    "read_header",
]

FORMAT = "aewatch-bundle"
FORMAT_VERSION = 1
META_KEY = "aewatch"
MAX_HEADER_BYTES = 16 * 1024 * 1024  # the safetensors header, metadata included
MAX_JSON_DEPTH = 32  # a real bundle's metadata nests 6 deep
MAX_WINDOW_VALUES = 1 << 20  # channels × samples of one window: 4 MiB of float32
MIN_PERIOD_S = 1e-6  # a 1 MHz grid
MAX_PERIOD_S = 366 * 86_400.0
MAX_GAP_PERIODS = 1e6
MAX_ADAPT_DEPTH = 100_000  # windows in the drift baseline: 800 kB per asset
MAX_DECISION_WINDOWS = 1_000_000  # raise_after, resolve_after, min_alert, smoothing
MAX_NAME_CHARS = 256
MAX_ARCH_WIDTH = 1 << 24  # latent, hidden and conv widths (the weights must match anyway)

_RETRAIN = "retrain it with `aewatch train` or restore the file from a backup"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SHOWN_CHARS = 60


def read_header(source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The safetensors header's tensor entries and the ``aewatch`` metadata of ``source``.

    Raises:
        BundleError: not a bundle, a header too large or nested too deep, or a format
            version this aewatch does not read.
    """
    header = _parse_json(source, "header", _header_bytes(source))
    if not isinstance(header, dict):
        _not_a_bundle(source, f"its header is a JSON {_kind(header)}, not an object")
    extra = header.pop("__metadata__", None)
    text = extra.get(META_KEY) if isinstance(extra, dict) else None
    if not isinstance(text, str):
        _not_a_bundle(source, f"its header has no {META_KEY!r} metadata")
    meta = _parse_json(source, "metadata", text.encode())
    if not isinstance(meta, dict):
        _not_a_bundle(source, f"its metadata is a JSON {_kind(meta)}, not an object")
    if meta.get("format") != FORMAT:
        _not_a_bundle(source, f"format {_shown(meta.get('format'))}")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {source} has format version {_shown(version)}, this aewatch "
            f"{_aewatch_version()} reads version {FORMAT_VERSION}; retrain it with this "
            "version or run the aewatch version that wrote it"
        )
    return header, meta


class Fields:
    """Typed reads of one bundle's metadata; each refusal names the field and the fix.

    A field is named by its dotted path in the metadata (``window.hop``).
    """

    def __init__(self, source: Path, meta: dict[str, Any]) -> None:
        self.source = source
        self.meta = meta

    def refuse(self, field: str, value: object, problem: str, fix: str = _RETRAIN) -> NoReturn:
        """Raise the ``BundleError`` for ``field``: its value, what is wrong, the fix."""
        raise BundleError(f"model bundle {self.source}: {field} = {_shown(value)} {problem}; {fix}")

    def get(self, field: str, default: object = ...) -> Any:
        """The value at ``field``; a missing field is refused unless it has a ``default``."""
        node: Any = self.meta
        for part in field.split("."):
            if not isinstance(node, dict):
                self.refuse(field.rpartition(".")[0], node, "must be a JSON object")
            if part not in node:
                if default is not ...:
                    return default
                raise BundleError(f"model bundle {self.source} has no {field}; {_RETRAIN}")
            node = node[part]
        return node

    def integer(self, field: str, low: int, high: int, *, fix: str = _RETRAIN) -> int:
        """A whole number in [low, high] (a JSON true or 2.0 is refused)."""
        value = self.get(field)
        if type(value) is not int:
            self.refuse(field, value, "must be a whole number", fix)
        if not low <= value <= high:
            self.refuse(field, value, f"must be between {low} and {high}", fix)
        return int(value)

    def number(
        self, field: str, low: float, high: float, *, fix: str = _RETRAIN, default: object = ...
    ) -> float:
        """A finite number in [low, high]."""
        value = self.get(field, default)
        if type(value) not in (int, float) or not math.isfinite(value):
            self.refuse(field, value, "must be a finite number", fix)
        if not low <= value <= high:
            self.refuse(field, value, f"must be between {low:g} and {high:g}", fix)
        return float(value)

    def text(
        self, field: str, choices: Sequence[str] | None = None, *, default: object = ...
    ) -> str:
        """A non-empty string of at most ``MAX_NAME_CHARS`` characters, or one of ``choices``."""
        value = self.get(field, default)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
            self.refuse(field, value, f"must be a string of 1 to {MAX_NAME_CHARS} characters")
        if choices is not None and value not in choices:
            self.refuse(field, value, f"must be one of {list(choices)}")
        return value

    def mapping(self, field: str) -> dict[str, Any]:
        """A JSON object (missing or null: empty)."""
        value = self.get(field, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.refuse(field, value, "must be a JSON object")
        return dict(value)

    def numbers(
        self, field: str, count: int, *, low: float = -_FLOAT32_MAX, high: float = _FLOAT32_MAX
    ) -> npt.NDArray[np.float64]:
        """Exactly ``count`` finite numbers in [low, high], as float64 ``(count,)``."""
        value = self.get(field)
        if not isinstance(value, list) or len(value) != count:
            self.refuse(field, value, f"must be a list of {count} numbers")
        if not all(type(v) in (int, float) and math.isfinite(v) for v in value):
            self.refuse(field, value, "must hold finite numbers only")
        array = np.asarray(value, dtype=np.float64)
        if not ((array >= low) & (array <= high)).all():
            self.refuse(field, value, f"must hold numbers between {low:g} and {high:g}")
        return array

    # -- sections -------------------------------------------------------------------------

    def arch(self) -> ArchSpec:
        """The network's shape (``arch``), before any weight is read."""
        channels = self.integer("arch.channels", 1, MAX_WINDOW_VALUES)
        length = self.integer("arch.length", 1, MAX_WINDOW_VALUES)
        latent = self.integer("arch.latent", 1, MAX_ARCH_WIDTH)
        hidden = self._widths("arch.hidden", [])
        conv_channels = self._widths("arch.conv_channels", [32, 32])
        extra = self.mapping("arch.extra")
        if not all(type(v) in (int, float) and math.isfinite(v) for v in extra.values()):
            self.refuse("arch.extra", extra, "must map names to finite numbers")
        try:
            return ArchSpec(
                self.text("arch.kind", ARCHITECTURES),
                channels,
                length,
                latent,
                hidden,
                activation=self.text("arch.activation", default="relu"),
                latent_activation=self.text("arch.latent_activation", default="none"),
                conv_channels=conv_channels,
                extra=extra,
            )
        except ValueError as err:
            self.refuse("arch", self.get("arch"), f"is not a network aewatch builds ({err})")

    def window(self, channels: int, arch: ArchSpec) -> tuple[int, int]:
        """``(window_len, hop)``: a window that fits ``MAX_WINDOW_VALUES`` and the network."""
        fix = "retrain with `aewatch train --window N --hop M` (1 <= M <= N)"
        length = self.integer("window.length", 1, MAX_WINDOW_VALUES, fix=fix)
        if channels * length > MAX_WINDOW_VALUES:
            self.refuse(
                "window.length",
                length,
                f"with {channels} channels makes a window of {channels * length} values, "
                f"more than the {MAX_WINDOW_VALUES} (4 MiB) a window may hold",
                fix,
            )
        if length != arch.length:
            self.refuse("window.length", length, f"differs from arch.length = {arch.length}")
        hop = self.integer("window.hop", 1, length, fix=fix)
        return length, hop

    def channels(self, arch: ArchSpec) -> tuple[str, ...]:
        """The channel names: at least one, distinct, as many as the network takes."""
        value = self.get("channels")
        fix = "retrain it with `aewatch train --channels A,B,...`"
        if not isinstance(value, list) or not value:
            self.refuse("channels", value, "must be a list of at least one channel name", fix)
        if not all(isinstance(c, str) and 0 < len(c) <= MAX_NAME_CHARS for c in value):
            self.refuse("channels", value, "must hold non-empty strings only", fix)
        if len(set(value)) != len(value):
            self.refuse("channels", value, "names a channel twice", fix)
        if len(value) != arch.channels:
            self.refuse("channels", value, f"has {len(value)}, arch.channels = {arch.channels}")
        return tuple(value)

    def scaler(self, channels: int) -> RobustScaler:
        """The per-channel scaling: finite centres, positive scales."""
        center = self.numbers("scaler.center", channels)
        scale = self.numbers("scaler.scale", channels, low=1e-30)
        return RobustScaler(center, scale)

    def threshold(self) -> Threshold:
        """The calibrated cut: a finite value, a false-alarm rate in (0, 1)."""
        fix = "recalibrate it with `aewatch calibrate` or retrain it"
        known = {"value", "fpr", "n_calibration", "method", "pot_shape", "pot_scale", "pot_init"}
        unknown = set(self.mapping("threshold")) - known
        if unknown:
            self.refuse("threshold", sorted(unknown), "holds fields this aewatch does not know")
        value = self.number("threshold.value", 0.0, _FLOAT32_MAX, fix=fix)
        fpr = self.number("threshold.fpr", 0.0, 1.0, fix=fix)
        if not 0.0 < fpr < 1.0:
            self.refuse("threshold.fpr", fpr, "must be between 0 and 1 (exclusive)", fix)
        pot = {
            name: None
            if self.get(f"threshold.{name}", None) is None
            else self.number(f"threshold.{name}", -_FLOAT32_MAX, _FLOAT32_MAX, fix=fix)
            for name in ("pot_shape", "pot_scale", "pot_init")
        }
        return Threshold(
            value,
            fpr,
            self.integer("threshold.n_calibration", 0, 2**62, fix=fix),
            self.text("threshold.method"),
            **pot,
        )

    def decision(self, channels: int) -> DecisionSettings:
        """Smoothing, hysteresis, drift baseline and channel checks (``decision``)."""
        decision = self.mapping("decision")
        for name in ("raise_after", "resolve_after"):
            if name in decision:
                self.integer(f"decision.{name}", 1, MAX_DECISION_WINDOWS)
        if "smoothing_halflife" in decision:
            self.number("decision.smoothing_halflife", 0.0, MAX_DECISION_WINDOWS)
        adaptation = self.mapping("decision.adaptation")
        if adaptation:
            self.integer("decision.adaptation.depth", 1, MAX_ADAPT_DEPTH)
            self.integer("decision.adaptation.min_alert", 0, MAX_DECISION_WINDOWS)
            for name in ("drop", "floor"):
                self.number(f"decision.adaptation.{name}", 0.0, _FLOAT32_MAX, default=0.0)
            seed = self.get("decision.adaptation.seed", [])
            if not isinstance(seed, list):
                self.refuse("decision.adaptation.seed", seed, "must be a list of numbers")
            self.numbers("decision.adaptation.seed", len(seed))
        checks = self.mapping("decision.checks")
        for value in _numbers_in(decision):
            if isinstance(value, float) and math.isnan(value):
                self.refuse("decision", value, "must hold no NaN")
        # The residual model predicts in float32: a finite number beyond it would overflow.
        # (Elsewhere a huge finite number is fine: 1e300 is the limit of a check turned off.)
        for value in _numbers_in(checks.get("model")):
            if abs(value) != math.inf and abs(value) > _FLOAT32_MAX:
                self.refuse("decision.checks.model", value, "must hold float32 numbers")
        try:
            settings = DecisionSettings.from_json(decision)
        except (LookupError, TypeError, ValueError, OverflowError) as err:
            self.refuse("decision", "{...}", f"cannot be used ({type(err).__name__}: {err})")
        if settings.checks is not None and settings.checks.model.channels != channels:
            self.refuse(
                "decision.checks",
                f"{{{settings.checks.model.channels} channels}}",
                f"watches other channels than the model's {channels}",
            )
        if checks and settings.checks is None:
            self.refuse("decision.checks", checks, "could not be read")
        return settings

    def _widths(self, field: str, default: list[int]) -> tuple[int, ...]:
        value = self.get(field, default)
        if not isinstance(value, list) or len(value) > 64:
            self.refuse(field, value, "must be a list of at most 64 layer widths")
        if not all(type(v) is int and 1 <= v <= MAX_ARCH_WIDTH for v in value):
            self.refuse(field, value, f"must hold whole numbers between 1 and {MAX_ARCH_WIDTH}")
        return tuple(value)


def _numbers_in(node: object) -> Iterator[int | float]:
    """Every number in a JSON tree (nested at most ``MAX_JSON_DEPTH`` deep)."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from _numbers_in(item)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield node


def _header_bytes(source: Path) -> bytes:
    try:
        size = source.stat().st_size
        with source.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if not 0 < header_len <= MAX_HEADER_BYTES:
                _not_a_bundle(
                    source,
                    f"its header claims {header_len} bytes; a bundle's header holds 1 to "
                    f"{MAX_HEADER_BYTES} bytes",
                )
            if header_len > size - 8:
                raise BundleError(
                    f"model bundle {source} is truncated: its header claims {header_len} "
                    f"bytes, the whole file holds {size}; restore the file from a backup or "
                    "retrain it"
                )
            return fh.read(header_len)
    except OSError as err:
        raise BundleError(
            f"cannot read model bundle {source}: {err.strerror or err}; check the path and "
            "its permissions"
        ) from err


def _parse_json(source: Path, part: str, raw: bytes) -> Any:
    """``raw`` parsed, after checking it nests no deeper than ``MAX_JSON_DEPTH``."""
    depth = _nesting(raw)
    if depth > MAX_JSON_DEPTH:
        _not_a_bundle(source, f"its {part} nests {depth} levels deep, more than {MAX_JSON_DEPTH}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BundleError(
            f"{source} is not an aewatch model bundle (its {part} is not JSON: {err}); pass a "
            "file written by `aewatch train`"
        ) from err


def _nesting(raw: bytes) -> int:
    """How deep the arrays and objects of JSON text ``raw`` nest (strings skipped).

    >>> _nesting(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    code = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = np.isin(code, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(code, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _not_a_bundle(source: Path, why: str) -> NoReturn:
    raise BundleError(
        f"{source} is not an aewatch model bundle ({why}); pass a file written by `aewatch train`"
    )


def _kind(value: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number"}.get(type(value), "value")


def _shown(value: object) -> str:
    """``value`` as JSON, cut to a readable length."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _aewatch_version() -> str:
    from aewatch import __version__  # noqa: PLC0415  (avoids an import cycle at load)

    return __version__
