"""``aewatch check-config``: validate a configuration file, exit 0 (valid) or 2 (invalid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aewatch.config import load_config
from aewatch.errors import ConfigError
from aewatch.redaction import redact

__all__ = ["EXIT_INVALID", "register", "run"]

EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-config`` verb."""
    p = sub.add_parser(
        "check-config",
        help="validate a daemon configuration file",
        description="Validate FILE as `aewatch run` would, secrets included (they are read, "
        "never printed). Exit 0 when valid; otherwise print every problem with its line and "
        "exit 2. Model bundles and TLS files are not opened.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print ``FILE: ok`` and a summary and return 0, or print the errors and return 2."""
    try:
        config = load_config(args.file)
    except ConfigError as err:
        print(redact(str(err)), file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.file}: ok")
    summary = (
        f"  inputs: {len(config.inputs)}, models: {len(config.models)}, "
        f"broker: {config.broker.display_url}"
    )
    print(redact(summary))
    return 0
