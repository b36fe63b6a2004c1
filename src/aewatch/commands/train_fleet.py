"""``aewatch train --per-asset``: one model per asset, from a folder of exports or one
export that holds a fleet.

Each CSV or Parquet file in the ``--data`` folder is one asset's normal history, named
after the file (``well-3.csv`` is asset ``well-3``); or, with ``--asset-column NAME``,
``--data`` is one file and each asset that column names is one history (its rows alone,
as ``--asset`` reads them). Each is trained exactly as ``aewatch train --data FILE``
trains it, with the same options, into ``OUT/ASSET.aew`` and its report
``OUT/ASSET.aew.report/``: the folder a ``models: - dir: OUT`` entry serves. An asset that
fails is named with its reason and the others are still trained; the summary table at
the end shows each asset's result.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aewatch.commands.read_options import read_options
from aewatch.config import BUNDLE_SUFFIX
from aewatch.errors import AewatchError
from aewatch.model.tables import ReadOptions, asset_names, fleet_raw
from aewatch.readable import duration

__all__ = [
    "EXPORT_SUFFIXES",
    "TrainedAsset",
    "asset_files",
    "fleet_assets",
    "run_per_asset",
    "summary_of",
]

EXPORT_SUFFIXES = (".csv", ".parquet", ".pq")
EXIT_SOME_FAILED = 1


@dataclass(frozen=True, slots=True)
class TrainedAsset:
    """One asset's training: its bundle, or why there is none."""

    asset: str
    source: Path
    bundle: Path
    seconds: float
    error: str | None = None
    summary: str = ""  # the train summary's model line


def asset_files(folder: Path) -> list[tuple[str, Path]]:
    """``(asset, file)`` of each export in ``folder``, by asset name.

    Raises:
        AewatchError: ``folder`` is no folder, holds no export, or two files name one asset.
    """
    if not folder.is_dir():
        raise AewatchError(
            f"--per-asset: {folder} is not a folder; give --data a folder holding one export "
            "per asset (well-3.csv trains well-3)"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in EXPORT_SUFFIXES:
            continue
        asset = path.stem
        if asset in found:
            raise AewatchError(
                f"--per-asset: {found[asset].name} and {path.name} both name asset {asset!r}; "
                "keep one"
            )
        found[asset] = path
    if not found:
        raise AewatchError(
            f"--per-asset: {folder} holds no {', '.join(EXPORT_SUFFIXES)} file; put one "
            "export per asset there"
        )
    return sorted(found.items())


def fleet_assets(path: Path, column: str, options: ReadOptions) -> list[tuple[str, Path]]:
    """``(asset, path)`` for each asset ``column`` of the export ``path`` names, sorted.

    Raises:
        AewatchError: ``path`` is a folder, unreadable, or its column names no asset.
    """
    if path.is_dir():
        raise AewatchError(
            f"--per-asset --asset-column {column}: {path} is a folder; give the one export "
            "that holds every asset (or leave out --asset-column for a file per asset)"
        )
    raw = fleet_raw(path, source=str(path), options=options)
    return [(asset, path) for asset in asset_names(raw, column)]


def run_per_asset(args: argparse.Namespace, train_one: Callable[[argparse.Namespace], int]) -> int:
    """Train every asset of ``args.data`` (one folder, or one file with ``--asset-column``)
    with ``train_one`` into ``args.out``.

    Returns 0 when every asset trained, 1 when some failed (each named), and raises
    :class:`AewatchError` when none could be (the reasons named).
    """
    if len(args.data) != 1:
        raise AewatchError(
            "--per-asset takes one --data: the folder holding one export per asset, or with "
            "--asset-column the one export that holds them all"
        )
    if args.name is not None:
        raise AewatchError("--per-asset names each model after its asset; leave out --name")
    if args.asset is not None:
        raise AewatchError(
            "--per-asset trains every asset --asset-column names; leave out --asset (or "
            "--per-asset, to train that one asset)"
        )
    column = args.asset_column
    files = (
        asset_files(Path(args.data[0]))
        if column is None
        else fleet_assets(Path(args.data[0]), column, _file_options(args))
    )
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise AewatchError(f"--per-asset: --out {out} is a file; give the folder to write into")
    out.mkdir(parents=True, exist_ok=True)
    print(f"training {len(files)} assets from {args.data[0]} into {out}/", flush=True)
    results = []
    for n, (asset, source) in enumerate(files, start=1):
        result = _train(args, asset, source, out / f"{asset}{BUNDLE_SUFFIX}", train_one)
        status = "ok" if result.error is None else f"FAILED: {result.error}"
        print(f"[{n}/{len(files)}] {asset}: {status} ({duration(result.seconds)})", flush=True)
        results.append(result)
    print("\n".join(summary_table(results)))
    failed = [r for r in results if r.error is not None]
    if len(failed) == len(results):
        raise AewatchError(f"--per-asset: no asset could be trained ({len(failed)} failed)")
    if failed:
        print(
            f"{len(failed)} of {len(results)} assets failed: "
            f"{', '.join(r.asset for r in failed)}; the others are in {out}/"
        )
        return EXIT_SOME_FAILED
    print(f"serve them with a models entry `- dir: {out}`")
    return 0


def _file_options(args: argparse.Namespace) -> ReadOptions:
    """How to read the fleet's export as a whole, to list its assets."""
    whole = argparse.Namespace(**{**vars(args), "asset_column": None, "asset": None})
    return replace(read_options(whole), show_progress=False)


def summary_table(results: list[TrainedAsset]) -> list[str]:
    """One line per asset: its bundle and model, or why it failed."""
    width = max(len(r.asset) for r in results)
    lines = [f"{'asset':<{width}}  result"]
    for r in results:
        outcome = r.summary if r.error is None else f"failed: {r.error}"
        lines.append(f"{r.asset:<{width}}  {outcome}")
    return lines


def _train(
    args: argparse.Namespace,
    asset: str,
    source: Path,
    bundle: Path,
    train_one: Callable[[argparse.Namespace], int],
) -> TrainedAsset:
    """Train one asset with ``args`` for that file alone; its printout is kept back."""
    one = argparse.Namespace(
        **{
            **vars(args),
            "data": [str(source)],
            "out": bundle,
            "name": asset,
            "asset": asset if args.asset_column is not None else None,
            "per_asset": False,
            "quiet": True,
        }
    )
    started = time.perf_counter()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = train_one(one)
    except AewatchError as err:
        return TrainedAsset(asset, source, bundle, time.perf_counter() - started, str(err))
    seconds = time.perf_counter() - started
    if code != 0:
        return TrainedAsset(asset, source, bundle, seconds, f"train exited with {code}")
    return TrainedAsset(asset, source, bundle, seconds, summary=summary_of(printed.getvalue()))


def summary_of(printed: str) -> str:
    """An asset's line of the fleet summary, from what ``aewatch train`` printed for it:
    its model line, and the shift allowance when training chose it from the data.

    >>> summary_of("model    a.aew  (pca, latent 2)\\nchosen   shift k 0.5 (raised 9 more)\\n")
    'a.aew  (pca, latent 2); shift k 0.5 chosen'
    >>> summary_of("model    a.aew  (pca, latent 2)\\n")
    'a.aew  (pca, latent 2)'
    """
    lines = printed.splitlines()
    model = next((line for line in lines if line.startswith("model ")), "")
    summary = model.removeprefix("model").strip()
    chosen = next((line for line in lines if line.startswith("chosen ")), "")
    if chosen:
        setting = chosen.removeprefix("chosen").strip().split(" (", 1)[0]
        summary = f"{summary}; {setting} chosen"
    return summary
