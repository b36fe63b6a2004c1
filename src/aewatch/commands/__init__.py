"""One module per ``aewatch`` verb: arguments in, core calls, human output out (shell)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aewatch.errors import DataError

__all__ = ["parse_channels", "print_json", "report_dir_for"]


def parse_channels(text: str | None) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]``; None stays None."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise DataError("--channels is empty; give comma-separated column names")
    return names


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    print(json.dumps(obj, indent=2, default=float))


def report_dir_for(model: Path) -> Path:
    """Where the training report of ``model`` lives: ``MODEL.report/`` beside it."""
    return model.with_name(model.name + ".report")
