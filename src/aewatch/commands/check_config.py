"""``aewatch check-config``: validate a configuration file, exit 0 (valid) or 2 (invalid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aewatch.commands.durations import duration_text
from aewatch.config import Config, load_config
from aewatch.errors import BundleError, ConfigError
from aewatch.redaction import redact

__all__ = ["EXIT_INVALID", "register", "run"]

EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-config`` verb."""
    p = sub.add_parser(
        "check-config",
        help="validate a daemon configuration file",
        description="Validate FILE as `aewatch run` would, secrets included (they are read, "
        "never printed), and open every model bundle it names, checked in full as `run` "
        "loads them. Exit 0 when valid; otherwise print every problem (with its line, or "
        "the model entry and file) and exit 2. TLS files are not opened.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument(
        "--no-models",
        action="store_true",
        help="check the file alone, without opening the model bundles it names "
        "(default: open them)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print ``FILE: ok`` and a summary and return 0, or print the errors and return 2."""
    try:
        config = load_config(args.file)
    except ConfigError as err:
        print(redact(str(err)), file=sys.stderr)
        return EXIT_INVALID
    models, problems = ([], []) if args.no_models else _open_models(config)
    if problems:
        print(f"{args.file}: {len(problems)} model problem(s)", file=sys.stderr)
        for problem in problems:
            print(redact(f"  {problem}"), file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.file}: ok")
    summary = (
        f"  inputs: {len(config.inputs)}, models: {len(config.models)}, "
        f"broker: {config.broker.display_url}"
    )
    print(redact(summary))
    for line in models:
        print(f"  {line}")
    return 0


def _open_models(config: Config) -> tuple[list[str], list[str]]:
    """One summary line per configured model, and one line per model that cannot serve."""
    from aewatch.model.bundle import ModelBundle  # noqa: PLC0415  (torch: only when opened)

    lines: list[str] = []
    problems: list[str] = []
    for i, entry in enumerate(config.models):
        try:
            served = entry.bundles()
        except BundleError as err:
            problems.append(f"models[{i}]: {err}")
            continue
        if entry.dir is not None:
            lines.append(f"models[{i}] ({entry.dir}): {len(served)} bundle(s) in the folder")
        for name, pattern, path in served:
            where = f"models[{i}] ({path})"
            try:
                bundle = ModelBundle.load(path)
            except BundleError as err:
                problems.append(f"{where}: {err}")
                continue
            lines.append(
                f"{where}: {name or bundle.name} serves {pattern}; "
                f"{len(bundle.channels)} channels ({', '.join(bundle.channels)}), "
                f"period {duration_text(bundle.period_s)}, window {bundle.window_len} samples"
            )
    return lines, problems
