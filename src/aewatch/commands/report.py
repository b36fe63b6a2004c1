"""``aewatch report``: what a trained model will and will not catch, before it goes live.

With ``--data``, the detectability table is measured afresh on the held-out part of the
given normal history, cut as training cuts it; without, the table training stored in the
report folder ``MODEL.aew.report/summary.json`` is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aewatch.commands import print_json, report_dir_for
from aewatch.commands.read_options import add_read_options, read_options
from aewatch.commands.score import missing_channel_fix
from aewatch.errors import AewatchError, DataError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import read_tables
from aewatch.model.detectability import Detectability, detectability
from aewatch.model.selection import Selection
from aewatch.model.train import TrainSettings, held_out_blocks

__all__ = ["register", "run"]

_D = TrainSettings()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` verb."""
    p = sub.add_parser(
        "report",
        help="print what a model catches: the smallest fault of each kind and channel it "
        "raises, and how soon",
        description="Print a model's detectability table: for each fault kind (step, drift, "
        "spikes, noise, oscillation, gain, stuck) and channel, the smallest fault, in the "
        "channel's noise levels, that the model raises an alert for, and the median delay. "
        "With --data it is measured on the held-out (newest) part of that normal history, "
        "cut as training cuts it; without, the table training wrote to MODEL.aew.report/ "
        "is printed.",
    )
    p.add_argument("model", type=Path, metavar="MODEL.aew")
    p.add_argument(
        "--data",
        action="append",
        metavar="FILE",
        help="the normal history the model was trained on, CSV or Parquet (repeatable); "
        "rows labelled 1 are left out",
    )
    p.add_argument(
        "--label-column",
        help="0/1 column; rows marked 1 are left out (default: 'anomaly' if present)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="where faults go and their signs (default 0)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    add_read_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure or load the table, then print it."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise AewatchError(
            f"--device {args.device}: no CUDA device is available here; use --device cpu"
        )
    bundle = ModelBundle.load(args.model) if args.data else None
    table = _stored(args.model) if bundle is None else _measured(args, bundle)
    if args.json:
        print_json(table.to_json())
        return 0
    print(
        f"model    {args.model}: smallest fault raised (noise levels) and median delay; "
        f"- not seen up to {max(table.sizes, default=0):g}"
    )
    print("\n".join(f"         {line}" for line in table.grid()))
    print()
    print("\n".join(table.sentences()))
    print()
    print(
        f"Faults of known sizes in {table.placements} stretches of held-out normal history, "
        f"{table.span_s / 60:g} min each; raised means an alert in at least half of them, "
        f"during the fault or up to {table.grace_s / 60:g} min after. Noise levels from "
        f"{table.noise_source}. Seed {table.seed}; took {table.seconds:g} s."
    )
    if table.note:
        print(f"note: {table.note}")
    chosen = (bundle or ModelBundle.load(args.model)).provenance.get("selection")
    if chosen:
        print(f"chosen   {Selection.from_json(chosen).line()}")
    return 0


def _measured(args: argparse.Namespace, bundle: ModelBundle) -> Detectability:
    """The table of ``bundle`` (``args.model``) measured on the held-out part of
    ``args.data``."""
    tables = read_tables(
        args.data,
        channels=list(bundle.channels),
        label_column=args.label_column,
        options=read_options(args),
        channels_fix=missing_channel_fix(bundle),
    )
    held_out = held_out_blocks(tables, _settings(bundle), period_s=bundle.period_s)
    if not held_out:
        raise DataError(
            f"{', '.join(args.data)}: no normal rows left to hold out; give the normal "
            "history the model was trained on"
        )
    return detectability(bundle, held_out, seed=args.seed, device=args.device)


def _settings(bundle: ModelBundle) -> TrainSettings:
    """The settings that decide where training's held-out part starts, from provenance."""
    chosen = bundle.provenance.get("settings", {})
    return TrainSettings(
        arch=bundle.arch.kind,
        max_gap_periods=bundle.max_gap_periods,
        val_fraction=float(chosen.get("val_fraction", _D.val_fraction)),
        calibration_fraction=float(chosen.get("calibration_fraction", _D.calibration_fraction)),
    )


def _stored(model: Path) -> Detectability:
    """The table training wrote to the model's report folder."""
    summary = report_dir_for(model) / "summary.json"
    fix = (
        f"measure it with `aewatch report {model} --data HISTORY.csv` (the normal history "
        "the model was trained on)"
    )
    try:
        stored = json.loads(summary.read_text()).get("detectability")
    except FileNotFoundError:
        raise AewatchError(f"{summary} does not exist; {fix}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise AewatchError(f"{summary}: cannot be read ({err}); {fix}") from err
    if not stored:
        raise AewatchError(
            f"{summary} holds no detectability table (trained with --no-detectability, or "
            f"by an older aewatch); {fix}"
        )
    return Detectability.from_json(stored)
