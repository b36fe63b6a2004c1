"""Waiting in tests for what another thread or process does: poll, or fail saying what."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    what: str | Callable[[], str],
    *,
    timeout_s: float,
    every_s: float = 0.05,
) -> None:
    """Poll ``condition`` every ``every_s`` until it is true; after ``timeout_s`` fail naming
    ``what`` (text, or made at the failure, so it can show the state that was waited on)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            text = what if isinstance(what, str) else what()
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {text}")
        time.sleep(every_s)
