"""``aewatch demo``: the whole offline loop on this machine in a couple of minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` verb."""
    p = sub.add_parser("demo", help="simulate, train, evaluate: the whole loop")
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Placeholder until the simulator lands."""
    raise NotImplementedError
