"""Errors that stayed with their asset: counted by asset and stage, logged once (shell).

When one asset's message cannot be decoded, its windows cannot be scored or its outputs
cannot be published, the daemon drops that asset's part and carries on with the others.
:class:`AssetErrors` keeps the count behind ``aewatch_asset_errors_total{asset,stage}`` and
logs each asset, stage and reason the first time it happens. The label set stays bounded:
the first :data:`MAX_LABELLED_ASSETS` assets with an error get their own series, any later
one (and any name longer than :data:`MAX_LABEL_CHARS`) counts under ``asset="other"``; the
log line still names it. At most :data:`MAX_LOGGED` asset/stage/reason triples are
remembered; beyond that, new ones are only counted (one line says so). Network thread and
worker both write:
a lock guards it (errors are rare, so it costs nothing on the hot path).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

__all__ = [
    "MAX_LABELLED_ASSETS",
    "MAX_LABEL_CHARS",
    "MAX_LOGGED",
    "OTHER",
    "STAGES",
    "AssetErrors",
    "shown_asset",
]

STAGES = ("decode", "score", "publish")
MAX_LABELLED_ASSETS = 100
MAX_LABEL_CHARS = 200
MAX_LOGGED = 10_000
OTHER = "other"
_SHOWN_CHARS = 60


class AssetErrors:
    """Per-asset error counts by stage, with a bounded label set; each first error logged.

    >>> errors = AssetErrors(logging.getLogger("doctest"), max_assets=1)
    >>> errors.note("w1", "score", "ValueError", "cannot score")
    >>> errors.note("w2", "score", "ValueError", "cannot score")
    >>> errors.counts()
    [('other', 'decode', 0), ('other', 'publish', 0), ('other', 'score', 1), ('w1', 'score', 1)]
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        max_assets: int = MAX_LABELLED_ASSETS,
        max_logged: int = MAX_LOGGED,
    ) -> None:
        self.logger = logger
        self.max_assets = max_assets
        self.max_logged = max_logged
        self._counts: Counter[tuple[str, str]] = Counter()
        self._labelled: set[str] = set()
        self._logged: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def note(self, asset: str, stage: str, reason: str, detail: str) -> None:
        """Count one error of ``asset`` in ``stage``; log it if this asset and reason are new.

        ``reason`` is short and fixed (an exception type, a decode reason); ``detail`` is
        the message to log with it.
        """
        self.count(asset, stage)
        key = (asset, stage, reason)
        with self._lock:
            if key in self._logged or len(self._logged) > self.max_logged:
                return
            self._logged.add(key)
            is_last = len(self._logged) > self.max_logged
        if is_last:
            self.logger.warning(
                "%d assets and reasons had errors; later new ones are only counted "
                "(aewatch_asset_errors_total)",
                self.max_logged,
            )
            return
        self.logger.warning(
            "asset %s: %s error (%s), its part skipped, the other assets go on: %s",
            shown_asset(asset),
            stage,
            reason,
            detail,
        )

    def count(self, asset: str, stage: str) -> None:
        """Count one error of ``asset`` in ``stage``, logging nothing (the caller logs)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        with self._lock:
            self._counts[(self._label(asset), stage)] += 1

    def counts(self) -> list[tuple[str, str, int]]:
        """``(asset label, stage, errors)`` for every series, sorted.

        ``other`` is always there for each stage, 0 until used, so the series exist (and a
        rate over them works) before the first error.
        """
        with self._lock:
            counts = Counter(self._counts)
            for stage in STAGES:
                counts.setdefault((OTHER, stage), 0)
            return sorted((asset, stage, n) for (asset, stage), n in counts.items())

    def _label(self, asset: str) -> str:
        if asset in self._labelled:
            return asset
        if len(asset) > MAX_LABEL_CHARS or len(self._labelled) >= self.max_assets:
            return OTHER
        self._labelled.add(asset)
        return asset


def shown_asset(asset: str) -> str:
    """``asset`` as a log line shows it: quoted, cut to a readable length with its size.

    >>> shown_asset("w1"), shown_asset("x" * 70_000)[-27:]
    ("'w1'", "'... (70000 bytes in UTF-8)")
    """
    if len(asset) <= _SHOWN_CHARS:
        return repr(asset)
    return f"{asset[:_SHOWN_CHARS]!r}... ({len(asset.encode('utf-8', 'replace'))} bytes in UTF-8)"
