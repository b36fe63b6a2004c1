"""The ``aewatch`` command line: one entry point, one verb per job (shell).

Every verb turns arguments into calls of the model core and prints what a person needs;
an ``AewatchError`` is printed as it is (it already names the thing and the fix), with any
URL's password redacted, and the process exits 2 without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aewatch import __version__
from aewatch.errors import AewatchError
from aewatch.redaction import redact

__all__ = ["main"]

EXIT_ERROR = 2


# Verb -> module with its register(); a verb's module is imported only when needed, so
# `aewatch run` does not pay for plotting and table libraries it never uses.
_VERBS = {
    "train": "aewatch.commands.train",
    "calibrate": "aewatch.commands.calibrate",
    "score": "aewatch.commands.score",
    "evaluate": "aewatch.commands.evaluate",
    "report": "aewatch.commands.report",
    "simulate": "aewatch.sim.cli",
    "replay": "aewatch.commands.replay",
    "run": "aewatch.commands.run",
    "check-config": "aewatch.commands.check_config",
    "demo": "aewatch.commands.demo",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(words[0] if words and words[0] in _VERBS else None)
    args = parser.parse_args(words)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_ERROR
    try:
        status: int = args.func(args)
    except AewatchError as err:
        print(redact(f"aewatch {args.command}: {err}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return status


def _parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser with every verb, or with only ``verb`` (what parsing its line needs)."""
    parser = argparse.ArgumentParser(
        prog="aewatch",
        description="Watch industrial sensor streams with autoencoders trained on normal data.",
    )
    parser.add_argument("--version", action="version", version=f"aewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [verb] if verb else _VERBS:
        importlib.import_module(_VERBS[name]).register(sub)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
