"""Counters kept as typed fields: the base of the stages' and the service's counts.

A subclass is a ``dataclass(slots=True)`` of ``int`` fields, and of ``dict`` fields that
count a closed set of reasons; such a field names its prefix in ``metadata["flat"]``
(``decode_errors`` counts as ``decode_error:REASON``). One thread writes each field; a
reader in another thread takes :meth:`Counts.copy`.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Self

__all__ = ["Counts"]


class Counts:
    """What every count class shares: a copy for a scrape, and the flat names."""

    __slots__ = ()

    def copy(self) -> Self:
        """A copy that later counting does not change (its reason dicts copied too)."""
        me: Any = self
        reasons = {f.name: dict(getattr(me, f.name)) for f in fields(me) if f.metadata.get("flat")}
        copied: Self = replace(me, **reasons)
        return copied

    def as_dict(self) -> dict[str, int]:
        """Name -> count, a reason counted as ``PREFIX:REASON`` (the names the docs use)."""
        me: Any = self
        flat: dict[str, int] = {}
        for f in fields(me):
            value = getattr(me, f.name)
            if prefix := f.metadata.get("flat"):
                flat.update({f"{prefix}:{reason}": n for reason, n in value.items()})
            else:
                flat[f.name] = value
        return flat
