"""The ``aewatch`` command line: one entry point, one verb per job (shell).

Every verb turns arguments into calls of the model core and prints what a person needs;
an ``AewatchError`` is printed as it is (it already names the thing and the fix) and the
process exits 2 without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aewatch import __version__
from aewatch.errors import AewatchError

__all__ = ["main"]

EXIT_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_ERROR
    try:
        status: int = args.func(args)
    except AewatchError as err:
        print(f"aewatch {args.command}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return status


def _parser() -> argparse.ArgumentParser:
    from aewatch.commands import (  # noqa: PLC0415
        check_config,
        demo,
        evaluate,
        replay,
        run,
        score,
        train,
    )
    from aewatch.sim import cli as sim_cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="aewatch",
        description="Watch industrial sensor streams with autoencoders trained on normal data.",
    )
    parser.add_argument("--version", action="version", version=f"aewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.register(sub)
    score.register(sub)
    evaluate.register(sub)
    sim_cli.register(sub)
    replay.register(sub)
    run.register(sub)
    check_config.register(sub)
    demo.register(sub)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
